"""MFU on every run: training FLOPs are counted (forward + backward as they run, not 3x the
forward), the device's peak is measured once per machine, and every epoch stores achieved
FLOP/s and MFU, which the summary, Monitor, Runs and `runs show --json` carry."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from core.__main__ import main
from core.config import RunConfig
from core.models import create
from core.profiling import mfu as mfu_math
from core.profiling import peak as peak_module
from core.profiling.flops import count_flops, count_training_flops
from core.store import Store
from tests.test_pages import open_page, runs_dir  # noqa: F401 (fixture)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_a_linear_layer_counts_its_weight_gradient_and_its_input_gradient_only_when_one_is_needed():
    # FlopCounterMode: forward addmm 2*B*i*o; backward one mm of 2*B*i*o for the weight gradient
    # and one for the input gradient, which autograd computes only when the input requires a
    # gradient (not for a model's first layer, on the data); the bias gradient is a sum (uncounted)
    i, o = 12, 5
    layer = nn.Linear(i, o)
    on_data = count_training_flops(layer, torch.randn(2, i))
    assert (on_data.forward, on_data.backward, on_data.batch) == (2 * i * o, 2 * i * o, 2)
    inside = count_training_flops(layer, torch.randn(2, i, requires_grad=True))
    assert (inside.forward, inside.backward, inside.total) == (2 * i * o, 4 * i * o, 6 * i * o)


def test_a_depthwise_conv_backward_is_not_counted_as_dense():
    conv = nn.Conv1d(8, 8, 5, padding=2, groups=8)
    counted = count_training_flops(conv, torch.randn(2, 8, 32, requires_grad=True))
    assert counted.forward == 2 * 8 * 5 * 32  # per example: channels x kernel x length, 2 per multiply-add
    assert counted.backward == 2 * counted.forward  # input and weight gradient (torch alone says 9x)


def test_a_zoo_model_trains_at_about_three_times_its_forward_and_is_left_as_it_was():
    model = create("resnet1d", (6, 64), 4, base_channels=8, num_stages=2, blocks_per_stage=1)
    x = torch.randn(2, 6, 64)
    model.train()
    forward = count_flops(model, x).total / 2
    buffers = {k: v.clone() for k, v in model.state_dict().items()}
    model.eval()
    rng = torch.get_rng_state()

    counted = count_training_flops(model, x)
    assert counted.forward == forward
    assert 2.5 * forward <= counted.total <= 3.5 * forward, counted.backward_ratio
    assert not model.training, "the mode it had"
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in buffers.items()), "BatchNorm statistics untouched"
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(rng, torch.get_rng_state()), "the run's random draws are unchanged"


def test_the_peak_is_measured_once_per_machine_and_cached(tmp_path, monkeypatch):
    calls = []
    real = peak_module._cpu_rate
    monkeypatch.setattr(peak_module, "_cpu_rate", lambda *a, **k: calls.append(a) or real(*a, **k))
    monkeypatch.setattr(peak_module, "_MEMO", {})
    monkeypatch.setattr(peak_module, "load_per_core", lambda: 0.1)  # a quiet machine

    first = peak_module.device_peak("cpu", threads=1, cache_dir=tmp_path)
    measured = len(calls)
    assert measured >= 1 and first.of("fp32") > 1e8 and first.threads == 1 and first.seconds > 0
    assert peak_module.device_peak("cpu", threads=1, cache_dir=tmp_path) is first
    monkeypatch.setattr(peak_module, "_MEMO", {})  # a new process reads the file
    again = peak_module.device_peak("cpu", threads=1, cache_dir=tmp_path)
    assert len(calls) == measured and again.of("fp32") == first.of("fp32")
    entry = json.loads((tmp_path / peak_module.CACHE_FILE).read_text())[peak_module.cache_key("cpu", 1)]
    assert entry["flops"]["fp32"] == first.of("fp32") and peak_module.cpu_model() in first.key


def test_a_peak_measured_on_a_busy_machine_is_measured_again_when_it_is_quiet_keeping_the_best(tmp_path, monkeypatch):
    rates = iter([5e10, 4e10, 9e10])
    monkeypatch.setattr(peak_module, "_cpu_rate", lambda *a, **k: next(rates))
    monkeypatch.setattr(peak_module, "_MEMO", {})
    monkeypatch.setattr(peak_module, "load_per_core", lambda: 1.8)
    busy = peak_module.device_peak("cpu", threads=1, cache_dir=tmp_path)  # warm-up 5e10, timed 4e10
    assert busy.of("fp32") == 4e10 and busy.measured_busy
    monkeypatch.setattr(peak_module, "_MEMO", {})
    assert peak_module.device_peak("cpu", threads=1, cache_dir=tmp_path).of("fp32") == 4e10, "still busy: cached"
    monkeypatch.setattr(peak_module, "_MEMO", {})
    monkeypatch.setattr(peak_module, "load_per_core", lambda: 0.1)
    rates = iter([9e10, 8e10])
    quiet = peak_module.device_peak("cpu", threads=1, cache_dir=tmp_path)
    assert quiet.of("fp32") == 8e10 and not quiet.measured_busy


def test_mfu_sets_every_process_examples_against_every_process_peak():
    assert mfu_math.mfu(1e6, 100.0, 1e9) == pytest.approx(0.1)
    assert mfu_math.mfu(1e6, 200.0, 1e9, processes=2) == pytest.approx(0.1)
    assert mfu_math.mfu(None, 100.0, 1e9) is None and mfu_math.mfu(1e6, 100.0, None) is None
    assert mfu_math.format_mfu(0.2673) == "26.7 %" and mfu_math.format_mfu(None) == "—"
    assert mfu_math.format_flops(1.7e11, per_second=True) == "170 GFLOP/s"


def test_a_failed_count_never_fails_the_run(monkeypatch):
    from core.train import Trainer, utilization

    def broken(trainer):
        raise RuntimeError("no formula for this op")

    monkeypatch.setattr(utilization, "training_flops_per_example", broken)
    cfg = RunConfig().with_overrides({"data.source": "synthetic_imu", "data.max_examples": 60, "data.window": 64,
                                      "data.stride": 64, "train.epochs": 1, "train.probes.enabled": False,
                                      "model.name": "resnet1d", "model.hparams.base_channels": 8,
                                      "model.hparams.num_stages": 1}, explicit=False)
    trainer = Trainer(cfg, device="cpu")
    result = trainer.fit()
    assert result.status == "completed" and result.mfu is None and result.flops_per_example is None
    assert trainer.recorder.series("samples_per_sec", "train") and not trainer.recorder.series("mfu", "train")
    assert any("MFU not measured" in e["message"] and "no formula" in e["message"]
               for e in trainer.recorder.event_rows)


def test_a_run_stores_mfu_per_epoch_and_monitor_runs_and_the_cli_show_it(runs_dir, capsys):  # noqa: F811
    argv = ["train", "--epochs", "2", "--set", "data.options.per_class=16", "--set", "base_channels=8",
            "--set", "num_stages=1", "--set", "train.probes.enabled=false", "--json"]
    assert main(argv) == 0
    run_id = json.loads(capsys.readouterr().out)["run_id"]
    store = Store(runs_dir / "sigscope.db")

    per_epoch = [r["value"] for r in store.metric_series(run_id, keys=["mfu"], split="train")]
    assert len(per_epoch) == 2 and all(0 < m < 1.5 for m in per_epoch), per_epoch
    assert len(store.metric_series(run_id, keys=["flops_per_sec"], split="train")) == 2
    summary = store.get_run(run_id)["summary"]
    assert summary["flops_per_example"] > 0 and summary["peak_flops"] > 0 and summary["peak_dtype"] == "fp32"
    assert summary["mfu"] == pytest.approx(per_epoch[-1])
    assert summary["mfu_mean"] == pytest.approx(sum(per_epoch) / 2)
    assert any(e["message"].startswith("MFU: ") for e in store.events(run_id))

    assert main(["runs", "show", run_id, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["utilization"]["mfu"] == pytest.approx(summary["mfu"])
    assert shown["summary"]["flops_per_example"] == summary["flops_per_example"]
    assert shown["final_metrics"]["train_mfu"] == pytest.approx(per_epoch[-1])

    at = open_page("pages/monitor.py", query={"run": run_id})
    shown_mfu = next(m for m in at.metric if m.label == "MFU")
    assert shown_mfu.value == mfu_math.format_mfu(per_epoch[-1]), shown_mfu.value
    assert next(m for m in at.metric if m.label == "Samples/s").value != "—"

    at = open_page("pages/runs.py")
    table = at.dataframe[0].value
    assert table.loc[table["id"] == run_id, "mfu"].iloc[0] == pytest.approx(100 * per_epoch[-1])
