"""train.compile: plain training steps through torch.compile (TorchInductor), probe steps and
evaluation through the model as written, and a compile that fails leaves the run eager."""
from __future__ import annotations

import shutil

import pytest
import torch

from core.config import RunConfig
from core.train import Callback, Trainer, load_checkpoint

TINY = {"data.source": "hapt", "data.max_examples": 96, "train.epochs": 1, "train.batch_size": 16,
        "model.name": "resnet1d", "model.hparams.base_channels": 8, "model.hparams.num_stages": 1,
        "model.hparams.blocks_per_stage": 1, "train.probes.every_n_steps": 2,
        "train.probes.histogram_every_n_steps": 0, "train.compile": True}


def _config(**overrides) -> RunConfig:
    return RunConfig().with_overrides({**TINY, **overrides}, explicit=False)


@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                    reason="TorchInductor compiles C++ on CPU and no C++ compiler is installed (apt-get install g++)")
def test_plain_steps_run_compiled_probe_steps_eager_and_the_checkpoint_is_the_model(tmp_path):
    import torch._dynamo

    torch._dynamo.reset()
    kinds: dict[int, str] = {}

    class Which(Callback):
        def on_step_start(self, trainer, step: int) -> None:  # after the probes hooked their layers
            hooked = any(m._forward_hooks for m in trainer.model.modules())
            kinds[step] = "eager" if hooked else "compiled"

    trainer = Trainer(_config(), callbacks=[Which()], run_dir=tmp_path, device="cpu")
    result = trainer.fit()
    assert result.status == "completed"
    assert trainer.compiled is not None and trainer._compiled_once, "the compiled module ran the plain steps"
    assert kinds[1] == "eager" and kinds[2] == "compiled", kinds  # probe steps are 1, 3, 5, ...
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 1
    probe_steps = {row["step"] for row in trainer.recorder.probe_rows}
    assert 1 in probe_steps and 2 not in probe_steps, "the probes still see their steps"
    # the checkpoint is the model's own state: no `_orig_mod.` prefixes, loads as any run does
    model = load_checkpoint(tmp_path).model
    assert not any(k.startswith("_orig_mod.") for k in model.state_dict())
    for a, b in zip(model.state_dict().values(), trainer.model.state_dict().values()):
        assert torch.equal(a, b)


def test_a_compile_that_fails_leaves_the_run_eager_with_a_warning(monkeypatch):
    def broken_compile(module, *args, **kwargs):
        def fail(*a, **k):
            raise RuntimeError("InductorError: C++ compile failed\ncc1plus: not found")
        return fail

    monkeypatch.setattr(torch, "compile", broken_compile)
    trainer = Trainer(_config(), device="cpu")
    result = trainer.fit()
    assert result.status == "completed" and trainer.compiled is None
    events = [e for e in trainer.recorder.event_rows if "train.compile" in e["message"]]
    assert len(events) == 1 and events[0]["level"] == "warning"
    assert "RuntimeError: InductorError: C++ compile failed" in events[0]["message"]
    assert "training continues without it" in events[0]["message"]
