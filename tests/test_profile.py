"""The cost profiler: figures a person plans a run with must be right.

Hand-computed FLOPs use the stated convention: one multiply-add = 2 FLOPs.
"""
from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from core.errors import ConfigError
from core.models.registry import create, list_models, random_hparams, spec
from core.profile import FLOPS_CONVENTION, measure_latency_ms, profile_model, profile_module
from core.profiling.memory import StorageTimeline, unique_bytes

REPORT_KEYS = {"params", "flops", "macs", "flops_convention", "memory", "latency_ms", "layers",
               "unsupported_ops", "cross_check"}


class TinyConvLinear(nn.Module):
    """Conv1d(3->4, k=5, same) -> ReLU -> flatten -> Linear(64 -> 5) on (B, 3, 16)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(3, 4, kernel_size=5, padding=2)
        self.fc = nn.Linear(4 * 16, 5)

    def forward(self, x):
        # (B, 3, 16) -> (B, 4, 16) -> (B, 64) -> (B, 5)
        return self.fc(torch.relu(self.conv(x)).flatten(1))


class SelfAttention(nn.Module):
    """qkv projection, SDPA over `heads`, output projection: (B, S, D) -> (B, S, D)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, s, d = x.shape
        q, k, v = self.qkv(x).view(b, s, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v)  # (B, H, S, D/H)
        return self.proj(y.transpose(1, 2).reshape(b, s, d))


class AttentionModel(nn.Module):
    """(B, S, D) tokens -> attention -> mean -> Linear to 3 classes."""

    def __init__(self, dim: int = 16, heads: int = 4) -> None:
        super().__init__()
        self.attn = SelfAttention(dim, heads)
        self.head = nn.Linear(dim, 3)

    def forward(self, x):
        return self.head(self.attn(x).mean(1))


def test_tiny_conv_linear_matches_hand_computed_params_flops_and_fixed_memory():
    batch = 8
    report = profile_module(TinyConvLinear(), (3, 16), batch_size=batch, measure_latency=False)
    conv_params, fc_params = 3 * 4 * 5 + 4, 64 * 5 + 5
    assert report.params == {"total": conv_params + fc_params, "trainable": conv_params + fc_params}
    conv_flops = 2 * (4 * 16) * (3 * 5)  # 2 x output elements x multiply-adds per output
    fc_flops = 2 * 64 * 5
    assert report.flops == batch * (conv_flops + fc_flops)
    assert report.macs == report.flops // 2
    assert report.flops_convention == FLOPS_CONVENTION == "FLOPs = 2 x MACs (one multiply-add = 2 FLOPs)"
    rows = {r["name"]: r for r in report.layers}
    assert rows["conv"]["flops"] == batch * conv_flops and rows["conv"]["params"] == conv_params
    assert rows["fc"]["flops"] == batch * fc_flops and rows["fc"]["output_shape"] == [batch, 5]
    assert rows["conv"]["output_shape"] == [batch, 4, 16]
    assert rows["conv"]["share"] == pytest.approx(conv_flops / (conv_flops + fc_flops))

    mem = report.memory
    param_bytes = 4 * (conv_params + fc_params)
    assert mem["weights"] == param_bytes and mem["grads"] == param_bytes
    assert mem["optimizer"] == 2 * param_bytes + 4 * 4  # exp_avg + exp_avg_sq, a step scalar per tensor
    assert mem["total"] == mem["weights"] + mem["grads"] + mem["optimizer"] + mem["activations"]
    # held for backward: the input batch and the ReLU output (conv's and fc's inputs);
    # the few hundred bytes beyond are the logits and cross-entropy's log-softmax
    input_bytes, relu_bytes = batch * 3 * 16 * 4, batch * 4 * 16 * 4
    assert input_bytes + relu_bytes <= mem["activations_saved_for_backward"] <= input_bytes + relu_bytes + 1024


def test_optimizer_choice_sets_the_state_size():
    sizes = {opt: profile_module(TinyConvLinear(), (3, 16), 4, optimizer=opt, measure_latency=False,
                                 cross_check=False).memory["optimizer"] for opt in ("adamw", "sgd")}
    param_bytes = 4 * (3 * 4 * 5 + 4 + 64 * 5 + 5)
    assert sizes["sgd"] == param_bytes  # one momentum buffer
    assert sizes["adamw"] == 2 * param_bytes + 16


def test_attention_flops_match_the_hand_formula_and_show_in_the_layer_table():
    b, s, d, h = 2, 10, 16, 4
    report = profile_module(AttentionModel(d, h), (s, d), batch_size=b, measure_latency=False)
    sdpa = 2 * (2 * b * h * s * s * (d // h))  # QK^T and AV
    qkv, proj, head = 2 * b * s * d * 3 * d, 2 * b * s * d * d, 2 * b * d * 3
    assert report.flops == qkv + sdpa + proj + head
    rows = {r["name"]: r for r in report.layers}
    assert rows["attn"]["own_flops"] == sdpa  # the SDPA call itself, not only its Linear children
    assert rows["attn"]["flops"] == qkv + sdpa + proj
    assert report.cross_check["agree"], report.cross_check  # fvcore with the SDPA handle sees the same


def test_multihead_attention_in_eval_is_not_lost_to_the_fast_path():
    b, s, d, h = 2, 12, 16, 4
    mha = nn.MultiheadAttention(d, h, batch_first=True)

    class Wrap(nn.Module):
        def __init__(self):
            super().__init__()
            self.mha = mha

        def forward(self, x):
            return self.mha(x, x, x, need_weights=False)[0].mean(1)

    model = Wrap().eval()
    report = profile_module(model, (s, d), batch_size=b, measure_latency=False)
    expected = 2 * b * s * d * 3 * d + 2 * (2 * b * h * s * s * (d // h)) + 2 * b * s * d * d
    assert report.flops == expected
    assert not model.training  # mode restored


@pytest.mark.parametrize("layers,bidirectional", [(1, False), (2, True)])
def test_lstm_flops_match_the_hand_formula(layers, bidirectional):
    b, t, i, hidden = 3, 7, 5, 8

    class Rnn(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(i, hidden, num_layers=layers, bidirectional=bidirectional, batch_first=True)

        def forward(self, x):  # (B, T, I) -> (B, dirs * H)
            return self.lstm(x)[0][:, -1]

    report = profile_module(Rnn(), (t, i), batch_size=b, measure_latency=False)
    dirs = 2 if bidirectional else 1
    expected = 0
    for layer in range(layers):
        width_in = i if layer == 0 else hidden * dirs
        expected += dirs * 2 * b * t * (4 * hidden * width_in + 4 * hidden * hidden)
    assert report.flops == expected
    assert report.cross_check["agree"], report.cross_check


def test_norms_are_counted_and_elementwise_ops_are_listed_not_silent():
    class Normed(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln = nn.LayerNorm(8)
            self.bn = nn.BatchNorm1d(4)

        def forward(self, x):  # (B, 4, 8)
            return torch.relu(self.bn(self.ln(x))).mean(-1)

    report = profile_module(Normed(), (4, 8), batch_size=2, measure_latency=False)
    elements = 2 * 4 * 8
    rows = {r["name"]: r for r in report.layers}
    assert rows["ln"]["flops"] == 2 * 5 * elements  # affine layer norm: 5 multiply-adds per element
    assert rows["bn"]["flops"] == 2 * 2 * elements  # inference batch norm: a scale and a shift
    skipped = {(u["op"], u["counter"]) for u in report.unsupported_ops}
    assert ("aten.relu", "flop_counter") in skipped and ("aten.mean", "flop_counter") in skipped
    assert any(c == "fvcore" for _, c in skipped)


def test_profiling_leaves_the_model_as_it_was():
    model = nn.Sequential(nn.Conv1d(2, 4, 3), nn.BatchNorm1d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6, 3))
    model.eval()
    model[4].weight.grad = torch.ones_like(model[4].weight)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    profile_module(model, (2, 8), batch_size=4, measure_latency=False)
    assert not model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # BN stats untouched
    assert torch.equal(model[4].weight.grad, torch.ones_like(model[4].weight))
    assert model[0].weight.grad is None
    assert torch.equal(torch.get_rng_state(), rng)


def _measured_step_peak(model: nn.Module, shape: tuple, batch: int) -> int:
    """Peak live bytes of one real AdamW training step (after a warm-up step)."""
    x, y = torch.randn(batch, *shape), torch.randint(0, 3, (batch,))
    opt = torch.optim.AdamW(model.parameters())

    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
    model.train()
    step()
    base = list(model.parameters()) + list(model.buffers()) + [x, y] + \
        [v for st in opt.state.values() for v in st.values() if torch.is_tensor(v)]
    with StorageTimeline(base) as timeline:
        step()
    return unique_bytes(base) + timeline.peak_bytes


def test_memory_estimate_is_within_15_percent_of_a_real_training_step_at_a_larger_batch():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(4, 32, 5, padding=2), nn.BatchNorm1d(32), nn.GELU(),
                          nn.Conv1d(32, 32, 5, padding=2), nn.ReLU(), nn.AdaptiveAvgPool1d(1),
                          nn.Flatten(), nn.Linear(32, 3))
    # estimated from batches 2 and 4, checked at 24
    estimate = profile_module(model, (4, 256), batch_size=24, measure_latency=False, cross_check=False)
    measured = _measured_step_peak(model, (4, 256), 24)
    assert estimate.memory["total"] == pytest.approx(measured, rel=0.15)


def test_amp_and_checkpointing_shrink_measured_activations():
    name = "resnet1d" if "resnet1d" in list_models() else pytest.skip("resnet1d not in the zoo yet")
    base = profile_model(name, batch_size=16, measure_latency=False, cross_check=False)
    bf16 = profile_model(name, batch_size=16, amp="bf16", measure_latency=False, cross_check=False)
    ckpt = profile_model(name, batch_size=16, grad_checkpointing=True, measure_latency=False, cross_check=False)
    act = base.memory["activations"]
    assert bf16.memory["activations"] < 0.8 * act  # half-width saved tensors
    assert bf16.memory["weights"] == base.memory["weights"]  # fp32 master weights stay
    assert ckpt.memory["activations_saved_for_backward"] < 0.6 * base.memory["activations_saved_for_backward"]
    assert ckpt.flops == base.flops


def test_every_zoo_model_profiles_at_defaults_with_attention_and_lstm_counted():
    for name in list_models():
        s = spec(name)
        report = profile_model(name, measure_latency=False)
        d = report.to_dict()
        assert REPORT_KEYS <= set(d), name
        torch.manual_seed(0)
        model = create(name)
        assert d["params"]["total"] == sum(p.numel() for p in model.parameters()), name
        assert d["flops"] > 0 and d["macs"] * 2 == d["flops"]
        assert set(d["memory"]) >= {"weights", "grads", "optimizer", "activations", "total", "activations_per_example"}
        assert d["memory"]["activations"] > 0
        assert d["latency_ms"]["estimated"] > 0 and d["latency_ms"]["measured"] is None
        assert d["cross_check"]["agree"], (name, d["cross_check"])
        types = {r["type"] for r in d["layers"]}
        categories = d["cross_check"]["by_category"]
        if s.has_attention:
            assert categories.get("attention", {}).get("flop_counter", 0) > 0, name
        if "LSTM" in types:
            assert categories.get("recurrent", {}).get("flop_counter", 0) > 0, name


def test_random_hyperparameters_profile_too():
    rng = random.Random(3)
    for name in list_models()[:4]:
        hp = random_hparams(name, rng)
        report = profile_model(name, hp, batch_size=4, measure_latency=False, cross_check=False)
        assert report.flops > 0 and report.memory["total"] > report.memory["weights"]


def test_bad_input_gives_one_clear_config_error():
    name = list_models()[0]
    with pytest.raises(ConfigError, match="unknown model 'no_such_model'"):
        profile_model("no_such_model")
    number = next(h for h in spec(name).hparams if h.type in ("int", "float"))
    with pytest.raises(ConfigError, match=number.name):
        profile_model(name, {number.name: number.high * 10 + 1}, measure_latency=False)
    with pytest.raises(ConfigError, match="input shape"):
        profile_model(name, input_shape=(3,), measure_latency=False)
    with pytest.raises(ConfigError, match="optimizer"):
        profile_model(name, optimizer="lion", measure_latency=False)
    with pytest.raises(ConfigError, match="amp"):
        profile_model(name, amp="fp8", measure_latency=False)
    with pytest.raises(ConfigError, match="checkpointing"):
        profile_module(TinyConvLinear(), (3, 16), grad_checkpointing=True, measure_latency=False)


def test_latency_is_estimated_and_measured():
    report = profile_module(TinyConvLinear(), (3, 16), batch_size=4, measure_latency=True, cross_check=False)
    lat = report.latency_ms
    assert lat["measured"] > 0 and lat["estimated"] > 0 and lat["machine_flops_per_s"] > 1e8
    assert measure_latency_ms(TinyConvLinear(), (3, 16), batch_size=2, repeats=3) > 0


def test_the_memory_guard_bound_is_an_upper_bound_and_tight_where_activations_scale():
    """The guard's one-pass bound (peak at batch 2 scaled by B/2) is never below the two-pass
    estimate, and within 2 % of it for a conv net (every activation grows with the batch)."""
    from core.profile import profile_footprint

    for name, tight in (("resnet1d", True), ("imu_se_convnext_lstm", False)):
        with torch.device("meta"):
            model = create(name, (6, 128), 6)
        for batch in (4, 64):
            bound = profile_footprint(model, (6, 128), batch, bound=True)
            estimate = profile_footprint(model, (6, 128), batch)
            assert bound.total >= estimate.total * 0.999, (name, batch)
            if tight:
                assert bound.total <= 1.02 * estimate.total, (name, batch)


def test_a_loose_bound_over_the_limit_defers_to_the_estimate(monkeypatch):
    """The LSTM's bound at batch 64 (about 178 MiB) is over a 150 MiB limit, its estimate (about
    124 MiB) is not: the profile goes ahead; under 100 MiB it is refused with the estimate."""
    from core.profile import check_profile_memory

    with torch.device("meta"):
        model = create("imu_se_convnext_lstm", (6, 128), 6)
    monkeypatch.setenv("SIGSCOPE_MAX_PROFILE_MEMORY_MIB", "150")
    assert check_profile_memory(model, (6, 128), 64).total < 150 * 2**20  # the estimate let it through
    monkeypatch.setenv("SIGSCOPE_MAX_PROFILE_MEMORY_MIB", "100")
    with pytest.raises(ConfigError, match=r"needs about 12\d MiB"):
        check_profile_memory(model, (6, 128), 64)
