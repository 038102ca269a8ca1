"""Mixup: the blend is what the docs say, the loss follows both labels, and a mixup run on
real data is seeded, resumable and refuses a bad alpha."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from core.errors import ConfigError
from core.train import Trainer
from core.train.mixup import dominant_labels, mix_batch, mixed_loss
from tests.test_train_trainer import StopAfter, hapt_config


def test_a_blend_is_lam_times_one_example_plus_the_rest_times_its_partner():
    x = torch.arange(24, dtype=torch.float32).reshape(4, 2, 3)
    y = torch.tensor([0, 1, 2, 3])
    torch.manual_seed(5)
    mixed, y_other, lam = mix_batch(x, y, alpha=0.4)
    assert 0.0 < lam < 1.0 and sorted(y_other.tolist()) == [0, 1, 2, 3]
    partner = x[y_other]  # y is the row index here, so the partner labels name the partner rows
    assert torch.allclose(mixed, lam * x + (1 - lam) * partner)
    torch.manual_seed(5)
    again, y_again, lam_again = mix_batch(x, y, alpha=0.4)
    assert lam_again == lam and torch.equal(y_again, y_other) and torch.equal(again, mixed)


def test_the_mixed_loss_weighs_both_labels_and_the_curve_label_is_the_larger_share():
    logits = torch.tensor([[4.0, 0.0], [0.0, 4.0]])
    y, other = torch.tensor([0, 1]), torch.tensor([1, 0])
    ce = nn.CrossEntropyLoss()
    assert mixed_loss(ce, logits, y, other, 1.0) == pytest.approx(float(ce(logits, y)))
    half = mixed_loss(ce, logits, y, other, 0.5)
    assert half == pytest.approx(0.5 * float(ce(logits, y)) + 0.5 * float(ce(logits, other)))
    assert torch.equal(dominant_labels(y, other, 0.7), y) and torch.equal(dominant_labels(y, other, 0.3), other)


def test_mixup_trains_on_real_data_repeatably_and_unlike_a_plain_run(tmp_path):
    cfg = hapt_config(**{"train.mixup_alpha": 0.4, "train.probes.enabled": False, "train.epochs": 3})
    first = Trainer(cfg, device="cpu")
    assert first.fit().status == "completed"
    second = Trainer(cfg, device="cpu")
    second.fit()
    plain = Trainer(hapt_config(**{"train.probes.enabled": False, "train.epochs": 3}), device="cpu")
    plain.fit()
    losses = [v for _, v in first.recorder.series("loss", "step")]
    assert losses == pytest.approx([v for _, v in second.recorder.series("loss", "step")])
    assert losses != pytest.approx([v for _, v in plain.recorder.series("loss", "step")])
    assert losses[-1] < losses[0]
    accuracy = [v for _, v in first.recorder.series("accuracy", "train")]
    assert len(accuracy) == 3 and all(0.0 <= a <= 1.0 for a in accuracy)


def test_a_resumed_mixup_run_continues_the_same_curve(tmp_path):
    cfg = hapt_config(**{"train.mixup_alpha": 0.4, "train.probes.enabled": False, "train.epochs": 3,
                         "data.max_examples": 160})
    straight = Trainer(cfg, run_dir=tmp_path / "straight", device="cpu")
    straight.fit()
    first = Trainer(cfg, run_dir=tmp_path / "resumed", device="cpu", callbacks=[StopAfter(1)])
    assert first.fit().status == "cancelled"
    second = Trainer(cfg, run_dir=tmp_path / "resumed", device="cpu")
    assert second.fit(resume_from=tmp_path / "resumed" / "checkpoints" / "last.pt").status == "completed"
    resumed = dict(first.recorder.series("loss", "step")) | dict(second.recorder.series("loss", "step"))
    assert resumed == pytest.approx(dict(straight.recorder.series("loss", "step")), rel=1e-4)


@pytest.mark.parametrize("alpha", [-0.1, 11.0])
def test_an_alpha_outside_its_range_is_refused_with_the_range(alpha):
    with pytest.raises(ConfigError, match="mixup_alpha"):
        Trainer(hapt_config(**{"train.mixup_alpha": alpha}), device="cpu")
