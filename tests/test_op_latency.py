"""The latency estimate from per-operator-class rates (core.profiling.op_latency): the trace, the
pricing of each class, the grid interpolation and the per-machine table. Whether the estimate
holds against measured latency is bench/latency_classes.py's question (a timing, not a test)."""
import json
import math

import pytest
import torch
from torch import nn

from core.__main__ import main
from core.profiling import op_latency as ol
from core.profiling.flops import count_flops


class Mixed(nn.Module):
    """Every class the estimate prices: conv, depthwise conv, norm, LSTM, attention, linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Conv1d(3, 16, 5, padding=2), nn.BatchNorm1d(16), nn.ReLU(),
                                  nn.Conv1d(16, 16, 7, padding=3, groups=16), nn.GELU())
        self.lstm = nn.LSTM(16, 16, batch_first=True)
        self.attention = nn.MultiheadAttention(16, 2, batch_first=True)
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        h = self.conv(x).transpose(1, 2)
        h = self.lstm(h)[0]
        h = h + self.attention(h, h, h, need_weights=False)[0]
        return self.head(h.mean(1))


def real_calls(model: nn.Module, x: torch.Tensor) -> list[ol.OpCall]:
    recorder = ol._Recorder()
    model.eval()
    with torch.no_grad(), recorder:
        model(x)
    return recorder.calls


def test_the_fake_trace_holds_the_operators_a_real_cpu_forward_runs():
    torch.manual_seed(0)
    model = Mixed()
    trace = ol.trace_forward(model, (3, 40), batch_size=4)
    real = real_calls(model, torch.randn(4, 3, 40))
    assert [(c.name, c.kind, c.coords, c.flops) for c in trace.calls] == \
           [(c.name, c.kind, c.coords, c.flops) for c in real]
    kinds = {c.kind for c in trace.calls}
    assert {"conv", "depthwise", "recurrent", "composite", "matmul", "elementwise"} <= kinds
    called = []
    hooks = [m.register_forward_pre_hook(lambda m, _: called.append(m)) for m in model.modules()]
    real_calls(model, torch.randn(4, 3, 40))
    for hook in hooks:
        hook.remove()
    assert trace.module_calls == len(called) == 10  # the attention's fast path skips its out_proj module
    model.train()
    ol.trace_forward(model, (3, 40), batch_size=4)
    assert model.training  # the trace leaves the model's mode as it was


def test_conv_and_linear_flops_match_the_flop_counter():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(6, 32, 7, padding=3), nn.ReLU(), nn.Conv1d(32, 64, 3, stride=2),
                          nn.Conv1d(64, 64, 5, padding=2, groups=64), nn.Flatten(), nn.LazyLinear(5))
    x = torch.randn(8, 6, 128)
    model(x)  # materialise the lazy layer
    priced = sum(c.flops for c in ol.trace_forward(model, (6, 128), 8).calls)
    assert priced == count_flops(model, x[:1]).total * 8


def test_the_multihead_fast_path_is_priced_as_its_projections_and_attention():
    model = nn.MultiheadAttention(32, 4, batch_first=True).eval()
    h = torch.randn(2, 10, 32)
    calls = ol.trace_forward(_SelfAttention(model), (10, 32), 2).calls
    fast = [c for c in calls if c.name == "_native_multi_head_attention"]
    assert len(fast) == 1 and fast[0].kind == "composite"
    rows, embed, heads, head = 2 * 10, 32, 4, 8
    projections = 2 * rows * embed * embed * 4  # q, k, v and the output
    attention = 4 * 2 * heads * 10 * 10 * head
    assert fast[0].flops == projections + attention
    assert {p.kind for p in fast[0].coords} == {"matmul", "attention"}
    assert h.shape == (2, 10, 32)


class _SelfAttention(nn.Module):
    def __init__(self, attention: nn.MultiheadAttention) -> None:
        super().__init__()
        self.attention = attention

    def forward(self, x):
        return self.attention(x, x, x, need_weights=False)[0]


def test_interpolation_weights_on_between_and_beyond_the_grid():
    grid = ((1, 8, 64), (3, 9))
    assert ol._weighted_corners(grid, (8, 9)) == [((8, 9), 1.0)]
    corners = ol._weighted_corners(grid, (16, 5))
    assert {c for c, _ in corners} == {(8, 3), (8, 9), (64, 3), (64, 9)}
    assert sum(w for _, w in corners) == pytest.approx(1.0)
    weights = dict(corners)
    assert weights[(8, 3)] + weights[(8, 9)] == pytest.approx(2 / 3)  # 16 is a third of the way 8 -> 64 in log
    assert ol._weighted_corners(grid, (4096, 1)) == [((64, 3), 1.0)]  # held at the ends


def test_element_time_interpolates_by_bytes_and_grows_linearly_beyond():
    points = [[1_000, 1e-6], [100_000, 1e-5], [10_000_000, 1e-3]]
    assert ol._element_seconds(points, 10) == 1e-6
    assert ol._element_seconds(points, 10_000) == pytest.approx(math.sqrt(1e-6 * 1e-5))
    assert ol._element_seconds(points, 20_000_000) == pytest.approx(2e-3)


def test_a_table_measures_only_the_points_a_model_needs_and_is_kept_on_disk(tmp_path, monkeypatch):
    monkeypatch.setattr(ol, "_MEMO", {})
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(8, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 64, 8))
    first = ol.estimate_forward_ms(model, (8, 64), batch_size=4, threads=1, cache_dir=tmp_path)
    assert first.total_ms > 0 and first.calibration_s > 0
    assert set(first.by_class) == {"conv", "elementwise", "matmul", "view", "module"}
    stored = json.loads((tmp_path / ol.CACHE_FILE).read_text())
    (table,) = stored.values()
    assert table["tables"]["conv"].keys() == {"8,3,8"}  # on the grid: one point, not the whole grid
    assert table["tables"]["matmul"].keys() == {"512,8"}
    assert table["threads"] == 1

    monkeypatch.setattr(ol, "_MEMO", {})  # another process on the same machine
    again = ol.estimate_forward_ms(model, (8, 64), batch_size=4, threads=1, cache_dir=tmp_path)
    assert again.calibration_s == 0
    assert again.total_ms == pytest.approx(first.total_ms)


def test_profile_cli_prints_the_operator_estimate(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("SIGSCOPE_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(ol, "_MEMO", {})
    assert main(["profile", "resnet1d", "--batch", "2", "--operator-latency", "--json"]) == 0
    by_operator = json.loads(capsys.readouterr().out)["latency_ms"]["by_operator"]
    assert by_operator["total_ms"] > 0 and by_operator["by_class"]["conv"] > 0
    assert by_operator["operators"] > 10
    assert main(["profile", "resnet1d", "--batch", "2", "--operator-latency"]) == 0
    assert "by operator class" in capsys.readouterr().out
