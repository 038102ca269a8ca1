"""Test-time BatchNorm adaptation: a run's BN statistics re-estimated on a new speaker's (or
wearer's) unlabeled inputs, without touching its weights or the original run."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from core.config import DataConfig
from core.data.audio import decode_audio
from core.errors import ConfigError, DataError
from core.infer import (Ensemble, adapt_batchnorm, adapt_to_files, adapt_to_uploads, classify_file, has_batchnorm,
                        load_run_dir)
from tests.test_infer import FSDD, save_untrained_run

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

SHAPE = (6, 64)


def _predictor(tmp_path, model: str = "resnet1d", hparams: dict | None = None):
    folder = save_untrained_run(tmp_path / model, model, DataConfig(source="synthetic_imu"), SHAPE, ["a", "b", "c"],
                                [f"ch{i}" for i in range(SHAPE[0])], 50.0, "raw",
                                hparams=hparams or {"base_channels": 8, "num_stages": 2, "blocks_per_stage": 1})
    return load_run_dir(folder)


def _shifted(n: int = 96, seed: int = 0) -> np.ndarray:
    """A 'new device': inputs with an offset and a gain the training data never had."""
    rng = np.random.default_rng(seed)
    return (3.0 + 2.5 * rng.standard_normal((n,) + SHAPE)).astype(np.float32)


def test_adapted_statistics_are_those_of_the_new_data_and_the_original_is_untouched(tmp_path):
    predictor = _predictor(tmp_path)
    x = _shifted()
    before = {k: v.clone() for k, v in predictor.model.state_dict().items()}
    adapted = adapt_batchnorm(predictor, x)
    # the first BN after the stem convolution now holds the mean/variance of that convolution's output on x
    stem_conv = next(m for m in adapted.model.modules() if isinstance(m, nn.Conv1d))
    first_bn = next(m for m in adapted.model.modules() if isinstance(m, nn.BatchNorm1d))
    with torch.no_grad():
        z = stem_conv(torch.from_numpy(x))
    assert torch.allclose(first_bn.running_mean, z.mean(dim=(0, 2)), atol=1e-4)
    assert torch.allclose(first_bn.running_var, z.var(dim=(0, 2)), rtol=1e-3, atol=1e-4)
    assert not adapted.model.training and not first_bn.training
    # weights are shared values, statistics differ; the predictor it came from is unchanged
    after = adapted.model.state_dict()
    for key, value in before.items():
        assert torch.equal(predictor.model.state_dict()[key], value)
        if key.endswith(("weight", "bias")):
            assert torch.equal(after[key], value)
    assert not torch.allclose(after[next(k for k in after if k.endswith("running_mean"))],
                              before[next(k for k in before if k.endswith("running_mean"))])
    assert not np.allclose(adapted.logits(x), predictor.logits(x))


def test_keep_blends_the_training_statistics_back(tmp_path):
    predictor = _predictor(tmp_path)
    x = _shifted()
    assert np.allclose(adapt_batchnorm(predictor, x, keep=1.0).logits(x), predictor.logits(x), atol=1e-5)
    full, half = adapt_batchnorm(predictor, x), adapt_batchnorm(predictor, x, keep=0.5)
    key = next(k for k in full.model.state_dict() if k.endswith("running_mean"))
    expected = 0.5 * full.model.state_dict()[key] + 0.5 * predictor.model.state_dict()[key]
    assert torch.allclose(half.model.state_dict()[key], expected, atol=1e-5)


def test_batches_never_hold_a_single_example(tmp_path):
    predictor = _predictor(tmp_path)
    for n in (2, 129, 257):  # 257 = two batches of 128 and a lone one, if it were cut naively
        adapted = adapt_batchnorm(predictor, _shifted(n))
        assert np.isfinite(adapted.logits(_shifted(4))).all()


def test_models_without_batchnorm_and_too_little_data_are_refused(tmp_path):
    predictor = _predictor(tmp_path)
    with pytest.raises(ConfigError, match="at least 2 examples"):
        adapt_batchnorm(predictor, _shifted(1))
    with pytest.raises(ConfigError, match=r"keep=1.5"):
        adapt_batchnorm(predictor, _shifted(), keep=1.5)
    transformer = _predictor(tmp_path, "har_transformer", {"hidden_ch": 8, "dim": 16, "depth": 1, "heads": 2, "mlp_dim": 32})
    assert not has_batchnorm(transformer.model)
    with pytest.raises(ConfigError, match="no BatchNorm"):
        adapt_batchnorm(transformer, _shifted())


def _audio_predictor(tmp_path):
    cfg = DataConfig(source="fsdd", features="mfcc", n_mfcc=13, hop_length=64, clip_seconds=1.0,
                     normalization="per_example")
    folder = save_untrained_run(tmp_path / "audio", "resnet1d", cfg, (13, 126), list("0123456789"),
                                [f"mfcc{i}" for i in range(13)], 8000.0, "mfcc",
                                {"base_channels": 8, "num_stages": 2, "blocks_per_stage": 1},
                                normalization={"kind": "per_example"})
    return load_run_dir(folder)


def test_adapting_to_a_speakers_files_uses_every_window_and_names_the_unreadable(tmp_path):
    predictor = _audio_predictor(tmp_path)
    clips = sorted(FSDD.glob("*_jackson_*.wav"))[:8]
    bad = tmp_path / "notes.wav"
    bad.write_text("not audio")
    result = adapt_to_files(predictor, clips + [bad])
    adapted = result.model
    assert result.files == 8 and result.windows == 8  # each clip is shorter than the 1 s window
    assert len(result.skipped) == 1 and "notes.wav" in result.skipped[0]
    assert "adapted to 8 windows of 8 file(s)" in adapted.describe() and not predictor.adapted
    # the same statistics as adapting on those windows' model inputs directly
    x = np.concatenate([predictor.inputs(decode_audio(c, 8000.0, 60.0), np.array([0])) for c in clips])
    direct = adapt_batchnorm(predictor, x)
    assert np.allclose(adapted.logits(x), direct.logits(x), atol=1e-5)
    pred = classify_file(adapted, clips[0], explain="none")
    assert any("BatchNorm statistics adapted" in n for n in pred.notes)
    # uploads (bytes) go through private temp files and give the same model
    from_bytes = adapt_to_uploads(predictor, [(c.read_bytes(), c.name) for c in clips]).model
    assert np.allclose(from_bytes.logits(x), direct.logits(x), atol=1e-5)
    with pytest.raises(DataError, match="nothing to adapt to"):
        adapt_to_files(predictor, [bad])


def test_an_ensemble_adapts_every_member(tmp_path):
    one, two = _audio_predictor(tmp_path / "a"), _audio_predictor(tmp_path / "b")
    two.run_id = "second"
    clips = sorted(FSDD.glob("*_lucas_*.wav"))[:6]
    result = adapt_to_files(Ensemble([one, two]), clips)
    adapted = result.model
    assert isinstance(adapted, Ensemble) and result.windows == 6
    assert all(m.adapted for m in adapted.members) and not one.adapted and not two.adapted
