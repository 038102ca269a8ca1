"""The CPU training path: malloc tuning at start-up, dropout layers that vanish when p is
effectively zero, and bench/throughput.py's report (seconds of CPU)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
import torch
from torch import nn

from core.errors import ConfigError
from core.models import create
from core.models.blocks import dropout as dropout_module
from core.models.blocks.dropout import EFFECTIVELY_ZERO, dropout_layer, effective_p

ROOT = Path(__file__).resolve().parents[1]


def _in_fresh_process(code: str, base_env: dict | None = None, **env: str) -> dict:
    """The last JSON line `code` prints in a fresh interpreter, started with `base_env` (default
    this process's environment) plus `env`."""
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**(os.environ if base_env is None else base_env), **env})
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_tune_malloc_says_what_it_set_and_a_second_call_changes_nothing():
    # in a fresh process: mallopt is process-wide, the test process must not be tuned behind others' backs
    out = _in_fresh_process("import json; from core.runtime import tune_malloc; a = tune_malloc(); b = tune_malloc(); "
                            "a['x'] = 1; print(json.dumps([a, b, tune_malloc()]))")
    first, second, third = out
    assert second == third and "x" not in second, "later calls return the first answer, not a shared dict"
    if first["applied"]:
        assert second["settings"] == {"M_MMAP_MAX": 0, "M_TRIM_THRESHOLD": 2**31 - 1, "M_TOP_PAD": 64 * 2**20}
    else:  # not glibc here: a reason a person can read
        assert second["reason"]


def test_tune_malloc_can_be_switched_off_and_says_why():
    out = _in_fresh_process("import json; from core.runtime import tune_malloc; print(json.dumps(tune_malloc()))",
                            SIGSCOPE_MALLOC="default")
    assert out["applied"] is False and "SIGSCOPE_MALLOC=default" in out["reason"]


def test_the_cli_tunes_malloc_at_start_up():
    with mock.patch("core.runtime.tune_malloc", return_value={"applied": False, "reason": "test"}) as tune:
        from core.__main__ import main
        with pytest.raises(SystemExit):
            main(["--help"])
    tune.assert_called_once()


def test_dropout_layer_is_identity_when_p_is_effectively_zero():
    assert isinstance(dropout_layer(0.0), nn.Identity)
    assert isinstance(dropout_layer(EFFECTIVELY_ZERO / 10), nn.Identity)
    layer = dropout_layer(0.1)
    assert type(layer) is nn.Dropout and layer.p == 0.1
    assert type(dropout_layer(0.2, nn.Dropout2d)) is nn.Dropout2d
    assert type(dropout_layer(0.01)) is nn.Dropout, "the har_transformer preset's 0.01 is real regularisation"
    assert effective_p(1e-5) == 0.0 and effective_p(0.3) == 0.3
    with pytest.raises(ConfigError, match="p=1.5"):
        dropout_layer(1.5)


def _dropout_modules(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]


def test_a_model_with_dropout_zero_has_no_dropout_kernels_and_trains_the_same():
    # drop_path > 0 keeps other randomness in the forward pass: if the layers that replace dropout
    # drew from the RNG (or skipped a draw nn.Dropout makes), the outputs would part
    hp = {"dropout": 0.0, "drop_path": 0.2, "lstm_layers": 2}
    torch.manual_seed(0)
    fast = create("imu_se_convnext_lstm", (6, 64), 4, **hp)
    with mock.patch.object(dropout_module, "EFFECTIVELY_ZERO", 0.0):
        torch.manual_seed(0)
        reference = create("imu_se_convnext_lstm", (6, 64), 4, **hp)  # nn.Dropout(0.0) everywhere
    assert not _dropout_modules(fast) and _dropout_modules(reference)
    assert fast.state_dict().keys() == reference.state_dict().keys(), "old checkpoints still load"
    fast.load_state_dict(reference.state_dict())
    fast.train(), reference.train()
    x = torch.randn(8, 6, 64)
    torch.manual_seed(1)
    a = fast(x)
    torch.manual_seed(1)
    b = reference(x)
    torch.manual_seed(1)
    c = fast(x)
    assert torch.equal(a, b) and torch.equal(a, c)
    with mock.patch.object(dropout_module, "EFFECTIVELY_ZERO", 0.0):
        noisy = create("imu_se_convnext_lstm", (6, 64), 4, dropout=1e-4, drop_path=0.2)
    assert _dropout_modules(noisy), "below the threshold only because of it: nn.Dropout(1e-4) is a kernel"


def test_a_tiny_attention_dropout_is_no_dropout():
    model = create("har_transformer", (6, 128), 6, dropout=1e-4, emb_dropout=0.0)
    assert not _dropout_modules(model)
    assert all(m.attn_dropout == 0.0 for m in model.modules() if hasattr(m, "attn_dropout"))
    kept = create("har_transformer", (6, 128), 6, dropout=0.01)
    assert _dropout_modules(kept), "0.01 stays a dropout"


def test_the_bundled_demo_model_loads_with_the_new_layers():
    from core.demo import install_bundled
    from core.infer import load_run
    from core.store import Store

    predictor = load_run(install_bundled(Store(), "demo-imu"))
    x = torch.randn(2, *predictor.input_shape)
    with torch.no_grad():
        assert predictor.model.eval()(x).shape == (2, len(predictor.class_names))


def test_throughput_bench_reports_its_documented_keys():
    done = subprocess.run([sys.executable, "bench/throughput.py", "--models", "resnet1d", "--steps", "3", "--rounds",
                           "1", "--no-peak", "--json"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    for key in ("torch", "threads", "batch_size", "input_shape", "malloc", "peak_gflops", "peak_source", "cadence",
                "models"):
        assert key in result
    assert result["threads"] == 1
    m = result["models"]["resnet1d"]
    for key in ("hparams", "train_flops_per_step", "bare", "trainer_plain", "trainer_probe", "trainer_histogram",
                "trainer_amortized", "ratio_plain", "ratio_amortized", "achieved_gflops", "mfu"):
        assert key in m
    assert m["bare"]["n"] == 3 and m["bare"]["cpu_ms"] > 0 and m["bare"]["user_ms"] >= 0 and m["bare"]["minflt"] >= 0
    assert m["trainer_plain"]["n"] + m["trainer_probe"]["n"] + m["trainer_histogram"]["n"] == 3
    assert m["train_flops_per_step"] > 0 and m["ratio_plain"] > 0


class _SlowDataset:
    """A dataset whose examples take `delay` seconds each to make (module level: a loader worker
    started by spawn would need to import it)."""

    def __init__(self, inner, delay: float = 0.005) -> None:
        self.inner, self.delay = inner, delay

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, i):
        import time

        time.sleep(self.delay)
        return self.inner[i]


def _tiny_hapt(**overrides):
    """A one-stage ResNet1D on 64 windows of the bundled HAPT sample, no probes."""
    from core.config import RunConfig

    return RunConfig().with_overrides({"data.source": "hapt", "data.max_examples": 64, "train.batch_size": 16,
                                       "model.name": "resnet1d", "model.hparams.base_channels": 8,
                                       "model.hparams.num_stages": 1, "model.hparams.blocks_per_stage": 1,
                                       "train.probes.enabled": False, **overrides}, explicit=False)


def test_data_wait_share_is_the_time_steps_wait_for_their_batch():
    """train_data_wait_share: near 0 for in-memory windows, and most of the epoch when the
    dataset is slow (a loader that makes the model wait shows up in the run's numbers)."""
    from core.data import load
    from core.train import Trainer

    cfg = _tiny_hapt(**{"train.epochs": 1})

    shares = {}
    for label in ("in memory", "slow"):  # one epoch: auto workers have no next epoch to change
        bundle = load(cfg.data)
        if label == "slow":
            bundle.train = _SlowDataset(bundle.train, delay=0.01)
        trainer = Trainer(cfg, bundle=bundle, device="cpu")
        trainer.fit()
        rows = [r for r in trainer.recorder.metric_rows if r["key"] == "data_wait_share" and r["split"] == "train"]
        assert len(rows) == 1 and 0.0 <= rows[0]["value"] < 1.0
        shares[label] = rows[0]["value"]
    # the slow loader sleeps 10 ms per example, 160 ms per batch: far more than a step of this tiny
    # model, so the steps wait most of the epoch; in memory, collating is of the order of a step here
    assert shares["slow"] > 0.6 and shares["slow"] > shares["in memory"] + 0.2, shares


def test_throughput_bench_compares_conv_layouts():
    done = subprocess.run([sys.executable, "bench/throughput.py", "--compare", "layout", "--steps", "2", "--rounds",
                           "1", "--warmup", "1", "--batch-size", "8", "--no-peak", "--json"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    layout = json.loads(done.stdout)["compare"]["layout"]
    assert set(layout) == {"length 128", "length 512"}
    for rows in layout.values():
        assert set(rows) == {"conv1d", "conv2d_h1", "conv2d_h1_channels_last"}
        assert all(t["n"] == 2 and t["cpu_ms"] > 0 for t in rows.values())



@pytest.mark.parametrize("workers,threads", [(None, 2), (0, 2), (None, 1)])
def test_auto_loader_workers_move_a_slow_data_path_beside_the_steps(workers, threads, monkeypatch):
    """train.num_workers None (auto): an epoch that waited for data makes the next epochs load in
    one worker process on one of the run's threads, said in an event; an explicit 0 is kept, and a
    run on one thread has no thread to give."""
    from core.data import load
    from core.train import Trainer

    cfg = _tiny_hapt(**{"train.epochs": 2, "train.num_workers": workers})
    bundle = load(cfg.data)
    bundle.train = _SlowDataset(bundle.train)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        trainer = Trainer(cfg, bundle=bundle, device="cpu")
        result = trainer.fit()
        threads_after = torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)
    assert result.status == "completed" and result.epochs_completed == 2
    events = [e["message"] for e in trainer.recorder.event_rows if "worker process" in e["message"]]
    if workers is None and threads == 2:
        assert trainer.loader_workers == 1 and trainer.train_loader.num_workers == 1 and threads_after == 1
        assert len(events) == 1 and "of epoch 1 for their batches" in events[0] and "from epoch 2" in events[0]
        assert "on one of the run's 2 threads" in events[0]
    else:
        assert trainer.loader_workers == 0 and trainer.train_loader.num_workers == 0 and not events
        assert threads_after == threads
    steps = [r["step"] for r in trainer.recorder.metric_rows if r["split"] == "step" and r["key"] == "loss"]
    assert steps == list(range(1, len(steps) + 1)) and len(steps) == 2 * trainer.steps_per_epoch


def _allocator_of(env: dict) -> dict:
    return _in_fresh_process("import json; from core.runtime import allocator, tune_malloc; "
                             "print(json.dumps({'allocator': allocator(), 'tuned': tune_malloc()}))", base_env=env)


def test_run_processes_start_on_jemalloc_where_the_machine_has_it(monkeypatch):
    from core import launch
    from core.runtime import jemalloc_library, run_allocator

    if jemalloc_library() is None:
        pytest.skip("libjemalloc2 is not installed (make system-deps installs it): run processes keep tuned glibc")
    monkeypatch.delenv("SIGSCOPE_MALLOC", raising=False)
    monkeypatch.delenv("MALLOC_CONF", raising=False)
    out = _allocator_of(launch.child_env(1))
    assert out["allocator"] == "jemalloc" and run_allocator() == "jemalloc"
    assert out["tuned"]["allocator"] == "jemalloc"
    assert out["tuned"]["settings"]["MALLOC_CONF"] == "dirty_decay_ms:-1,muzzy_decay_ms:-1,oversize_threshold:0"
    monkeypatch.setenv("SIGSCOPE_MALLOC", "glibc")  # the way back to tuned glibc
    out = _allocator_of(launch.child_env(1))
    assert out["allocator"] == "glibc" and run_allocator() == "glibc"
    assert out["tuned"]["settings"]["M_MMAP_MAX"] == 0


def test_the_memory_estimate_holds_against_a_run_process_rss():
    """The profiler's estimate, with its allocator's overhead (core.runtime.resident_bytes), against
    the peak RSS growth of a fresh process running three real training steps on the allocator run
    processes get (bench/profile_accuracy.py --rss)."""
    from bench.profile_accuracy import measured_rss_growth
    from core.profile import profile_model
    from core.runtime import resident_bytes, run_allocator

    if run_allocator() != "jemalloc":
        pytest.skip("on tuned glibc the heap fragments and RSS is 1.2-1.9x the estimate (libjemalloc2 absent)")
    for name in ("resnet1d", "meg_basic_cnn"):  # the smallest two: the fixed overhead weighs most there
        estimate = profile_model(name, batch_size=32, measure_latency=False, cross_check=False).memory["total"]
        growth = measured_rss_growth(name, 32, "off", False)
        assert growth is not None and abs(resident_bytes(estimate) / growth - 1) <= 0.15, (name, estimate, growth)
