"""Every zoo model, as the dashboard, the trainer and sweeps use it: built from its
registered spec at its defaults and at random points of its ranges, it runs forward on
its input kind, back-propagates into every weight, repeats itself under a seed, gives
the same gradients with checkpointing, and refuses impossible settings by name."""
from __future__ import annotations

import copy
import math
import random

import pytest
import torch

from core.errors import ConfigError
from core.models.attention import attention_layers, capture_attention
from core.models.base import ZooModel
from core.models.registry import create, list_models, random_hparams, spec

MODELS = list_models()
ATTENTION_MODELS = [n for n in MODELS if spec(n).has_attention]
CHECKPOINT_MODELS = [n for n in MODELS if spec(n).supports_checkpointing]
NUM_CLASSES = 5
BATCH = 2


def small_shape(name: str) -> tuple[int, ...]:
    """A short input of the model's kind (fast on CPU, long enough for every range)."""
    return (4, 16, 24) if spec(name).input_kind == "spectrogram" else (6, 32)


def batch_for(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    return torch.randn((BATCH, *shape), generator=torch.Generator().manual_seed(seed))


def train_step(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.train()
    logits = model(x)
    torch.nn.functional.cross_entropy(logits, torch.arange(BATCH) % NUM_CLASSES).backward()
    return logits


def assert_trains(name: str, shape: tuple[int, ...], hp: dict) -> None:
    model = create(name, shape, NUM_CLASSES, **hp)
    assert isinstance(model, ZooModel)
    x = batch_for(shape)
    logits = train_step(model, x)
    assert logits.shape == (BATCH, NUM_CLASSES), f"{name} {hp}"
    assert torch.isfinite(logits).all()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"{name} {hp}: no gradient reached {missing}"
    bad = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    assert not bad, f"{name} {hp}: non-finite gradients in {bad}"
    model.eval()
    with torch.no_grad():
        features = model.forward_features(x)
        assert features.shape == (BATCH, model.num_features)
        assert torch.allclose(model.forward_head(features), model(x), atol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_defaults_build_forward_and_backward(name):
    assert_trains(name, small_shape(name), {})


@pytest.mark.parametrize("name", MODELS)
def test_default_input_shape_runs(name):
    s = spec(name)
    model = create(name, num_classes=NUM_CLASSES).eval()
    with torch.no_grad():
        assert model(batch_for(s.default_input)).shape == (BATCH, NUM_CLASSES)


@pytest.mark.parametrize("name", MODELS)
def test_random_points_of_the_ranges_build_and_train(name):
    rng = random.Random(f"zoo-{name}")
    for _ in range(3):
        shape = small_shape(name)
        assert_trains(name, shape, random_hparams(name, rng, shape))


@pytest.mark.parametrize("name", MODELS)
def test_same_seed_same_outputs(name):
    shape = small_shape(name)
    hp = random_hparams(name, random.Random(7), shape)

    def run() -> tuple[torch.Tensor, torch.Tensor]:
        torch.manual_seed(123)
        model = create(name, shape, NUM_CLASSES, **hp)
        x = batch_for(shape)
        train_out = model.train()(x)  # dropout / drop-path draws come from the seed too
        with torch.no_grad():
            eval_out = model.eval()(x)
        return train_out.detach(), eval_out

    first, second = run(), run()
    assert torch.equal(first[0], second[0])
    assert torch.equal(first[1], second[1])
    torch.manual_seed(124)
    other = create(name, shape, NUM_CLASSES, **hp).eval()
    with torch.no_grad():
        assert not torch.equal(other(batch_for(shape)), first[1]), "a different seed should give different weights"


@pytest.mark.parametrize("name", CHECKPOINT_MODELS)
def test_gradient_checkpointing_gives_the_same_gradients(name):
    shape = small_shape(name)
    torch.manual_seed(0)
    plain = create(name, shape, NUM_CLASSES)
    ckpt = copy.deepcopy(plain)
    ckpt.set_grad_checkpointing(True)
    x = batch_for(shape)
    torch.manual_seed(1)
    out_plain = train_step(plain, x)
    torch.manual_seed(1)
    out_ckpt = train_step(ckpt, x)
    assert torch.allclose(out_plain, out_ckpt, atol=1e-6)
    for (n, p), (_, q) in zip(plain.named_parameters(), ckpt.named_parameters()):
        assert torch.allclose(p.grad, q.grad, rtol=1e-4, atol=1e-6), f"{name}: gradient of {n} differs"


def test_checkpointing_is_declared_by_every_model_that_uses_it():
    # the profiler takes checkpointing into account only for models that declare it
    for name in MODELS:
        model = create(name, small_shape(name), NUM_CLASSES)
        calls = []
        model.maybe_checkpoint = lambda stage, x, _c=calls: (_c.append(1), stage(x))[1]
        model(batch_for(small_shape(name)))
        assert bool(calls) == spec(name).supports_checkpointing, name


@pytest.mark.parametrize("name", MODELS)
def test_has_attention_matches_what_capture_returns(name):
    shape = small_shape(name)
    model = create(name, shape, NUM_CLASSES).eval()
    x = batch_for(shape)
    with torch.no_grad(), capture_attention(model) as maps:
        model(x)
    assert bool(maps) == spec(name).has_attention
    assert bool(attention_layers(model)) == spec(name).has_attention


@pytest.mark.parametrize("name", ATTENTION_MODELS)
def test_attention_maps_have_documented_shapes_and_cost_nothing_outside(name):
    shape = small_shape(name)
    model = create(name, shape, NUM_CLASSES).eval()
    x = batch_for(shape)
    with torch.no_grad():
        plain = model(x)
        with capture_attention(model) as maps:
            captured = model(x)
        model(x)  # after the context: nothing more is recorded
    assert torch.allclose(plain, captured, atol=1e-5), "capturing must not change the prediction"
    assert maps
    n_maps = len(maps)
    for m in maps:
        if m.kind == "self":
            b, h, tq, tk = m.weights.shape
            assert (b, tq) == (BATCH, tk)
            assert torch.allclose(m.weights.sum(-1), torch.ones(b, h, tq), atol=1e-5)
        else:
            assert m.kind == "pooling" and m.weights.dim() == 2 and m.weights.shape[0] == BATCH
            assert torch.allclose(m.weights.sum(-1), torch.ones(BATCH), atol=1e-5)
        assert not m.weights.requires_grad
    assert len(maps) == n_maps


def test_har_transformer_maps_per_layer_with_cls_token():
    model = create("har_transformer", (6, 32), NUM_CLASSES, depth=2, heads=4, dim=32, pool="cls").eval()
    with torch.no_grad(), capture_attention(model) as maps:
        model(batch_for((6, 32)))
    assert [m.layer for m in maps] == ["layers.0.attn", "layers.1.attn"]
    assert all(m.weights.shape == (BATCH, 4, 33, 33) and m.has_cls for m in maps)
    mean_pool = create("har_transformer", (6, 32), NUM_CLASSES, pool="mean").eval()
    with torch.no_grad(), capture_attention(mean_pool) as maps:
        mean_pool(batch_for((6, 32)))
    assert all(m.weights.shape == (BATCH, 3, 32, 32) and not m.has_cls for m in maps)


def test_audio_model_maps_follow_the_per_layer_heads():
    f, t = 16, 30
    model = create("audio_resnet_attention", (4, f, t), NUM_CLASSES, heads="8,8,4").eval()
    with torch.no_grad(), capture_attention(model) as maps:
        model(batch_for((4, f, t)))
    tokens = math.ceil(math.ceil(t / 2) / 2)
    assert [(m.kind, tuple(m.weights.shape)) for m in maps] == [
        ("self", (BATCH, 8, tokens, tokens)), ("self", (BATCH, 8, tokens, tokens)),
        ("self", (BATCH, 4, tokens, tokens)), ("pooling", (BATCH, tokens))]


def test_conformer_attention_pooling_adds_a_pooling_map():
    model = create("imu_conformer", (6, 32), NUM_CLASSES, num_blocks=2, subsample=2, pool="attention").eval()
    with torch.no_grad(), capture_attention(model) as maps:
        model(batch_for((6, 32)))
    assert [m.kind for m in maps] == ["self", "self", "pooling"]
    assert maps[0].weights.shape == (BATCH, 4, 16, 16) and maps[-1].weights.shape == (BATCH, 16)


def test_specs_are_complete_for_the_ui():
    for name in MODELS:
        s = spec(name)
        assert s.description
        assert s.default_input == ((4, 40, 126) if s.input_kind == "spectrogram" else (6, 128))
        for h in s.hparams:
            assert h.help, f"{name}.{h.name} needs help text"
            assert h.coerce(h.default) == h.default, f"{name}.{h.name}: default outside its own range"
        s.resolve()  # defaults pass the cross-checks


def test_issue_defaults_follow_the_seeds():
    assert spec("meg_resnet").defaults()["hid_dim"] == 512 and spec("meg_resnet").defaults()["dropout"] == 0.4
    har = spec("har_transformer").defaults()
    assert (har["hidden_ch"], har["depth"], har["heads"], har["mlp_dim"], har["dropout"]) == (15, 3, 3, 1024, 0.01)
    assert spec("audio_resnet_attention").defaults()["heads"] == "8,8,4"


@pytest.mark.parametrize("name,overrides,needle", [
    ("har_transformer", {"depth": 99}, "depth=99 is out of range: allowed int in [1, 8]"),
    ("meg_resnet", {"dropout": 0.9}, "dropout=0.9 is out of range"),
    ("resnet1d", {"block": "dense"}, "block='dense' is not a known choice: allowed one of 'basic', 'bottleneck'"),
    ("har_transformer", {"dim": 100, "heads": 3}, "dim=100 must be divisible by heads=3"),
    ("imu_conformer", {"dim": 30, "heads": 4}, "dim=30 must be divisible by heads=4"),
    ("resnet1d", {"block": "bottleneck", "base_channels": 10}, "base_channels=10 must be a multiple of 4"),
    ("meg_basic_cnn", {"depth": 2}, "has no hyperparameter 'depth'"),
])
def test_bad_settings_raise_a_config_error_naming_the_value(name, overrides, needle):
    with pytest.raises(ConfigError) as err:
        create(name, small_shape(name), NUM_CLASSES, **overrides)
    assert needle in str(err.value)


def test_inputs_the_model_cannot_take_are_refused():
    with pytest.raises(ConfigError, match="needs at least 8 time steps"):
        create("cnn_cbam_1d", (6, 4), NUM_CLASSES, num_stages=3)
    with pytest.raises(ConfigError, match="needs at least 16 time steps"):
        create("imu_se_convnext_lstm", (6, 8), NUM_CLASSES, num_blocks=4)
    with pytest.raises(ConfigError, match=r"input shape \(6, 128\) does not fit"):
        create("audio_resnet_attention", (6, 128), NUM_CLASSES)
    model = create("har_transformer", (6, 32), NUM_CLASSES)
    with pytest.raises(ConfigError, match="built for windows of 32 samples"):
        model(torch.randn(1, 6, 40))


def test_direct_construction_validates_too():
    from core.models.zoo.audio_resnet_attention import AudioResNetAttention
    from core.models.zoo.har_transformer import HarTransformer
    with pytest.raises(ConfigError, match="dim=100 must be divisible by heads=3"):
        HarTransformer(6, 5, 32, dim=100, heads=3)
    with pytest.raises(ConfigError, match="divisible by heads=8"):
        AudioResNetAttention(4, 5, 30, 16, d_model=36, heads="8,8,4")
    with pytest.raises(ConfigError, match="heads='8,x' must list positive head counts"):
        AudioResNetAttention(4, 5, 30, 16, heads="8,x")
    # the registry's cross-check says the same before anything is built
    problems = spec("audio_resnet_attention").constraints({"heads": "8,8,4", "d_model": 36}, (4, 16, 30))
    assert problems and "d_model=36 must be divisible by every head count" in problems[0]


@pytest.mark.parametrize("name", MODELS)
def test_cpu_mixed_precision_trains(name):
    # the trainer's AMP option on CPU runs autocast in bfloat16
    shape = small_shape(name)
    model = create(name, shape, NUM_CLASSES).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(batch_for(shape))
    assert logits.shape == (BATCH, NUM_CLASSES) and torch.isfinite(logits.float()).all()
    logits.float().sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
