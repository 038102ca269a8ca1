"""Channel / time / band importance: a model trained on data where one channel carries the class
in one time region finds that channel and that region; the bundled demo runs; bad input."""
from __future__ import annotations

import json

import numpy as np
import pytest

from core.config import RunConfig
from core.errors import ConfigError
from core.explore.importance import IMPORTANCE_METHODS, IMPORTANCE_UNITS, importance, stack4_from_logmel
from core.jobs import run_job
from core.store import Store

pytestmark = pytest.mark.usefixtures("one_thread")

CHANNELS = ["ax", "ay", "az", "gx"]
CARRIER = "az"                 # the only channel that carries the class ...
RATE, WINDOW = 50.0, 64        # ... and only in samples 16-32 of each 64-sample window: 0.32-0.64 s
REGION = slice(16, 32)


def write_csv(path, per_class: int = 120, seed: int = 0) -> None:
    """One session per window: noise everywhere, plus a class-dependent level on CARRIER in REGION."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(["still", "up", "down"], per_class)
    level = {"still": 0.0, "up": 2.5, "down": -2.5}
    lines = ["subject,session,label," + ",".join(CHANNELS)]
    for session, label in enumerate(rng.permutation(labels)):
        x = rng.normal(0.0, 1.0, size=(WINDOW, len(CHANNELS)))
        x[REGION, CHANNELS.index(CARRIER)] += level[label]
        lines += [f"s{session % 6},{session},{label}," + ",".join(f"{v:.4f}" for v in row) for row in x]
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def store():
    return Store()  # the tests' own runs folder (conftest), which the CLI also opens


@pytest.fixture(scope="module")
def synthetic_run(store, tmp_path_factory):
    """A tiny resnet1d trained in-process on the one-channel, one-region data (validation none,
    so its val split is empty)."""
    path = tmp_path_factory.mktemp("importance") / "one_channel.csv"
    write_csv(path)
    cfg = RunConfig().with_overrides({
        "data.source": "imu_csv", "data.path": str(path), "data.options": {"sample_rate": RATE},
        "data.window": WINDOW, "data.stride": WINDOW, "data.test_fraction": 0.3, "data.validation": "none",
        "model.name": "resnet1d", "model.hparams.base_channels": 8, "model.hparams.num_stages": 2,
        "model.hparams.blocks_per_stage": 1, "optim.lr": 3e-3, "train.epochs": 8, "train.batch_size": 32,
        "train.probes.enabled": False, "train.device": "cpu"}, explicit=False)
    run_id = store.create_run(cfg.to_dict(), name="importance one channel")
    assert run_job(store, run_id, cfg, device="cpu") == "completed"
    return run_id


def test_channel_permutation_puts_the_carrying_channel_first_by_a_wide_margin(store, synthetic_run):
    calls = []
    imp = importance(synthetic_run, by="channel", repeats=4, store=store,
                     progress=lambda done, total, stage: calls.append((done, total, stage)))
    assert imp.names == CHANNELS and imp.by == "channel" and imp.method == "permutation"
    assert imp.baseline_accuracy > 0.9, imp.baseline_accuracy
    first, second = imp.order[:2]
    assert imp.names[first] == CARRIER
    assert imp.drop[first] > 0.3 and imp.drop[first] > 3 * max(imp.drop[second], 0.01), imp.drop
    assert np.all(imp.low <= imp.drop + 1e-12) and np.all(imp.drop <= imp.high + 1e-12)
    assert imp.low[first] > imp.high[second]  # the intervals do not overlap
    assert imp.per_class.shape == (3, 4) and imp.drops.shape == (4, 4) and imp.repeats == 4
    assert (imp.per_class[:, first] > 0.1).sum() >= 2  # the classes lose their recall with it
    assert calls[0] == (0, 4, "baseline") and calls[-1][:2] == (4, 4) and len(calls) == 5
    # same seed, same answer; another seed, other permutations
    again = importance(synthetic_run, by="channel", repeats=4, store=store)
    np.testing.assert_array_equal(again.drops, imp.drops)
    other = importance(synthetic_run, by="channel", repeats=4, seed=1, store=store)
    assert not np.array_equal(other.drops, imp.drops) and other.names[other.order[0]] == CARRIER


def test_time_permutation_peaks_in_the_block_where_the_pattern_is(store, synthetic_run):
    imp = importance(synthetic_run, by="time", repeats=3, blocks=4, store=store)
    assert imp.names == ["0.00–0.32 s", "0.32–0.64 s", "0.64–0.96 s", "0.96–1.28 s"]
    np.testing.assert_allclose(imp.extents[1], [0.32, 0.64])
    peak = int(np.argmax(imp.drop))
    assert peak == 1, imp.drop
    others = np.delete(imp.drop, peak)
    assert imp.drop[peak] > 0.3 and imp.drop[peak] > 3 * max(others.max(), 0.01), imp.drop
    # the default cuts the window into 8 blocks; the pattern (samples 16-32) covers blocks 2 and 3
    eight = importance(synthetic_run, by="time", repeats=2, store=store)
    assert len(eight.names) == 8 and set(np.argsort(-eight.drop)[:2]) == {2, 3}, eight.drop


def test_ablation_agrees_on_the_channel_and_has_no_interval(store, synthetic_run):
    imp = importance(synthetic_run, by="channel", method="ablation", repeats=5, store=store)
    first, second = imp.order[:2]
    assert imp.names[first] == CARRIER
    assert imp.drop[first] > 0.3 and imp.drop[first] > 3 * max(imp.drop[second], 0.01), imp.drop
    assert imp.repeats == 1  # deterministic: one pass, whatever repeats asked
    np.testing.assert_array_equal(imp.low, imp.drop)
    np.testing.assert_array_equal(imp.high, imp.drop)
    assert "deterministic" in imp.interval
    blocks = importance(synthetic_run, by="time", method="ablation", blocks=4, store=store)
    assert int(np.argmax(blocks.drop)) == 1, blocks.drop


def test_bad_input_is_a_clear_config_error(store, synthetic_run):
    with pytest.raises(ConfigError, match="by='pixel' is not known; use one of channel, sensor, time, band"):
        importance(synthetic_run, by="pixel", store=store)
    with pytest.raises(ConfigError, match="method='shap' is not known"):
        importance(synthetic_run, method="shap", store=store)
    with pytest.raises(ConfigError, match="repeats=0: give at least 1"):
        importance(synthetic_run, repeats=0, store=store)
    with pytest.raises(ConfigError, match="no val windows"):  # trained with validation none
        importance(synthetic_run, split="val", store=store)
    with pytest.raises(ConfigError, match="blocks=65 exceeds the 64 time steps"):
        importance(synthetic_run, by="time", blocks=65, store=store)
    with pytest.raises(ConfigError, match="--by band does not apply .* IMU model .*use --by channel or --by sensor or --by time"):
        importance(synthetic_run, by="band", store=store)


@pytest.fixture(scope="module")
def demo_audio(store):
    from core.demo import install_bundled
    return install_bundled(store, "demo-audio")


def test_demo_audio_band_importance_is_named_by_hz(store, demo_audio):
    imp = importance(demo_audio, by="band", repeats=2, blocks=4, store=store)
    assert imp.input_kind == "spectrogram" and len(imp.names) == 4
    assert imp.baseline_accuracy == pytest.approx(0.83, abs=1e-9)  # the bundled model's stated test accuracy
    assert imp.names[0].startswith("0–") and imp.names[-1].endswith("–4000 Hz")
    assert all(name.endswith(" Hz") for name in imp.names)
    assert np.all(np.diff(imp.extents.ravel()) >= 0)  # contiguous, increasing Hz ranges
    assert imp.drop.max() > 0.1  # some band matters to a digit classifier
    assert np.all(imp.low <= imp.drop + 1e-12) and np.all(imp.drop <= imp.high + 1e-12)


def test_stack4_rebuilt_from_its_log_mel_plane_is_the_same_input(demo_audio, store):
    """Band importance perturbs the log-mel plane and derives the other planes again; unperturbed,
    that must give exactly the features the run was scored on."""
    from core.data import load
    from core.infer import load_run

    predictor = load_run(demo_audio, store)
    features = load(predictor.config.data).test.x[:16]
    np.testing.assert_allclose(stack4_from_logmel(features[:, 0], predictor.config.data), features,
                               rtol=1e-5, atol=1e-5)


def test_cli_json_and_the_band_error_on_an_imu_run(synthetic_run, capsys):
    from core.__main__ import main

    assert main(["importance", "--run", synthetic_run, "--by", "time", "--blocks", "4", "--repeats", "2",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["by"] == "time" and out["repeats"] == 2 and len(out["names"]) == 4
    assert out["ranking"][0] == "0.32–0.64 s" and len(out["per_class"]) == 3 and len(out["drops"]) == 2
    assert out["low"][1] <= out["drop"][1] <= out["high"][1]
    assert main(["importance", "--run", "importance one channel", "--repeats", "2"]) == 0  # by name, a table
    text = capsys.readouterr().out
    assert "baseline accuracy" in text and "most important: az" in text
    assert main(["importance", "--run", "demo-imu", "--by", "band"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --by band does not apply") and "IMU model (acc_x" in err


def test_choices_have_one_owner():
    assert list(IMPORTANCE_UNITS) == ["channel", "sensor", "time", "band"]
    assert list(IMPORTANCE_METHODS) == ["permutation", "ablation"]
    assert not IMPORTANCE_UNITS["band"].allows("imu") and IMPORTANCE_UNITS["band"].allows("spectrogram")
    assert IMPORTANCE_UNITS["channel"].allows("imu") and not IMPORTANCE_UNITS["channel"].allows("waveform")


def test_sensor_importance_shuffles_a_sensors_axes_together(store):
    from core.demo import install_bundled

    run_id = install_bundled(store, "demo-imu")
    by_sensor = importance(run_id, by="sensor", repeats=2, store=store)
    assert by_sensor.names == ["acc", "gyro"] and by_sensor.drops.shape == (2, 2)
    by_channel = importance(run_id, by="channel", repeats=2, store=store)
    # the whole accelerometer carries more than any one of its axes
    assert by_sensor.drop[0] > by_channel.drop[:3].max()
