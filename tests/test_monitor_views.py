"""Probes declare their views; the Monitor builds its tabs from them. A new probe is one
class (here, in this file): the Train form, validation and the Monitor pick it up with no
other change. Activation histograms are such a probe. A stopped run resumes from Monitor."""
from __future__ import annotations

import json
import os

import pytest

from core.__main__ import main
from core.config import RunConfig
from core.store import Store
from core.train.probes import PROBES, Probe, View, register_probe
from tests.test_pages import open_page, runs_dir  # noqa: F401 (fixture)


class PositiveGradShare(Probe):
    """Share of positive gradient entries per layer: a probe added in one place."""

    name = "positive_grads"
    help = "share of gradient entries above zero per layer"
    views = (View("Gradient signs", "layer_heatmap", "positive_grad_share", "Share of positive gradients per layer",
                  {"colorbar": "share", "zmin": 0, "zmax": 1}),)

    def on_after_backward(self, trainer, step: int) -> None:
        if not self.active(step):
            return
        shares = {name: float((module.weight.grad > 0).float().mean())
                  for name, module in trainer.model.named_modules()
                  if getattr(module, "weight", None) is not None and module.weight.grad is not None}
        trainer.recorder.probes(step, "positive_grad_share", shares)


@pytest.fixture
def new_probe():
    register_probe(PositiveGradShare)
    yield PositiveGradShare
    PROBES.pop(PositiveGradShare.name, None)


def tiny_run(probes: list[str] | None, epochs: int = 1) -> list[str]:
    """A one-epoch run on generated IMU data with these probes (None: probes off)."""
    argv = ["train", "--epochs", str(epochs), "--set", "data.options.per_class=16", "--set", "base_channels=8",
            "--set", "num_stages=1", "--json"]
    if probes is None:
        return argv + ["--set", "train.probes.enabled=false"]
    return argv + ["--set", "train.probes.every_n_steps=1", "--set", "train.probes.histogram_every_n_steps=2",
                   "--set", f"train.probes.probes={json.dumps(probes)}"]


def tab_labels(at) -> list[str]:
    return [t.label for t in at.tabs]


def test_a_new_probe_is_one_class_and_the_monitor_draws_its_view(runs_dir, capsys, new_probe):
    assert "positive_grads" in RunConfig().with_overrides(
        {"train.probes.probes": ["positive_grads"]}).train.probes.probes, "the spec takes it as a choice"
    assert main(tiny_run(["grad_norm", "positive_grads"])) == 0
    run_id = json.loads(capsys.readouterr().out)["run_id"]
    assert Store(runs_dir / "sigscope.db").probe_series(run_id, "positive_grad_share"), "it stored its series"
    at = open_page("pages/monitor.py", query={"run": run_id, "tab": "Gradient signs"})
    assert tab_labels(at) == ["Curves", "Gradients", "Gradient signs", "Events"]
    titles = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]
    assert any("Share of positive gradients per layer" in t for t in titles), titles


def test_activation_histograms_get_their_place_on_the_histograms_tab(runs_dir, capsys):
    assert main(tiny_run(["activations", "histograms", "activation_histograms"])) == 0
    run_id = json.loads(capsys.readouterr().out)["run_id"]
    store = Store(runs_dir / "sigscope.db")
    assert set(store.histogram_kinds(run_id)) == {"grad", "weight", "activation"}
    assert store.histogram_layers(run_id, "activation")
    at = open_page("pages/monitor.py", query={"run": run_id, "tab": "Histograms"})
    assert tab_labels(at) == ["Curves", "Activations", "Histograms", "Events"]
    kind = at.radio(key="monitor.hist_kind")
    assert kind.options == ["gradients", "weights", "activations"]
    kind.set_value("activation").run()
    assert not at.exception
    titles = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]
    assert any("Activation histogram of" in t for t in titles), titles


def test_a_run_without_probes_shows_only_curves_and_events(runs_dir, capsys):
    assert main(tiny_run(None)) == 0
    run_id = json.loads(capsys.readouterr().out)["run_id"]
    at = open_page("pages/monitor.py", query={"run": run_id})
    assert tab_labels(at) == ["Curves", "Events"]


def test_a_cancelled_run_resumes_from_monitor_for_more_epochs(runs_dir, capsys):
    from dashboard.engine import engine

    assert main(tiny_run(["grad_norm"])) == 0
    run_id = json.loads(capsys.readouterr().out)["run_id"]
    store = Store(runs_dir / "sigscope.db")
    store.update_run(run_id, status="cancelled", error="stopped on request")
    at = open_page("pages/monitor.py", query={"run": run_id})
    at.number_input(key="monitor.resume_epochs").set_value(3).run()
    at.button(key="monitor.resume").click().run()
    assert not at.exception
    assert engine().jobs.wait(run_id, timeout=120) == "completed"
    run = store.get_run(run_id)
    assert run["config"]["train"]["epochs"] == 3 and run["summary"]["epochs_completed"] == 3


def test_the_step_charts_of_a_running_run_are_rebuilt_at_most_every_chart_seconds(runs_dir, monkeypatch):
    """Between rebuilds the Monitor sends the same figure again (the browser then redraws
    nothing); new points appear once CHART_SECONDS have passed, and at once for new options."""
    import dashboard.live as live

    store = Store(runs_dir / "sigscope.db")
    run_id = store.create_run(RunConfig().to_dict(), name="live", status="running", owner_pid=os.getpid())

    def add_steps(first: int, last: int) -> None:
        with store.writer(run_id, flush_seconds=0) as writer:
            for step in range(first, last):
                writer.metrics(step, 0, "step", {"loss": 1.0 / step, "lr": 1e-3})

    def loss_points(at) -> int:
        spec = next(json.loads(c.proto.spec) for c in at.get("plotly_chart")
                    if "Training loss per step" in json.loads(c.proto.spec)["layout"]["title"]["text"])
        return len(spec["data"][0]["x"])

    clock = [1000.0]
    monkeypatch.setattr(live, "clock", lambda: clock[0])
    add_steps(1, 11)
    at = open_page("pages/monitor.py", query={"run": run_id})
    assert loss_points(at) == 10
    add_steps(11, 21)
    clock[0] += live.CHART_SECONDS / 2
    at.run()
    assert loss_points(at) == 10, "rebuilt before CHART_SECONDS had passed"
    assert "20" in [m.value for m in at.metric if m.label == "Loss points"], "the numbers follow every tick"
    clock[0] += live.CHART_SECONDS / 2
    at.run()
    assert loss_points(at) == 20
    add_steps(21, 31)
    at.slider(key="monitor.smoothing").set_value(0.0).run()
    assert loss_points(at) == 30, "a new option draws at once"
