"""The live view's data shaping: what reaches the browser is small and still true."""
import math

import numpy as np
import pytest

from core.compare import config_diff
from dashboard import figures
from dashboard.series import downsample, ema, histograms_over_time, layer_grid, progress


def test_downsample_caps_points_and_keeps_the_latest():
    xs = list(range(10_000))
    dx, dy = downsample(xs, [x * 2 for x in xs], max_points=400)
    assert len(dx) <= 400 and dx[0] == 0 and dx[-1] == 9_999 and dy[-1] == 19_998
    assert downsample([1, 2], [3, 4]) == ([1, 2], [3, 4])


def test_ema_smooths_without_bias_and_skips_missing_points():
    assert ema([1.0, 1.0, 1.0], 0.9) == pytest.approx([1.0, 1.0, 1.0])  # bias-corrected: no ramp from 0
    smoothed = ema([0.0, 10.0, None, 0.0], 0.5)
    assert smoothed[2] is None and 0 < smoothed[3] < smoothed[1] < 10
    assert ema([3.0, float("nan"), 5.0], 0.0) == [3.0, None, 5.0]


def test_layer_grid_keeps_model_order_and_caps_columns():
    rows = [{"step": s, "layer": layer, "value": s * (i + 1)}
            for s in range(1, 301) for i, layer in enumerate(["stem", "block", "head"])]
    steps, layers, z = layer_grid(rows, max_steps=50)
    assert layers == ["stem", "block", "head"]
    assert len(steps) <= 50 and steps[-1] == 300
    assert z[2][-1] == 900 and all(len(row) == len(steps) for row in z)


def test_histograms_over_time_keep_each_histograms_mass():
    hists = [{"step": 1, "edges": list(np.linspace(-1, 1, 31)), "counts": [1.0] * 30},
             {"step": 51, "edges": list(np.linspace(-3, 0.5, 31)), "counts": list(range(30))},
             {"step": 101, "edges": [0.2, 0.2], "counts": [5.0]}]  # every value equal
    steps, centres, z = histograms_over_time(hists, bins=40)
    assert steps == [1, 51, 101] and len(centres) == 40
    shares = np.asarray(z).sum(axis=0)
    assert shares == pytest.approx([1.0, 1.0, 1.0])
    assert np.count_nonzero(np.asarray(z)[:, 0]) >= 10, "rebinning leaves no empty stripes"


def test_config_diff_lists_only_differing_settings():
    a = {"model": {"name": "resnet1d", "hparams": {"num_stages": 2}}, "train": {"epochs": 3}}
    b = {"model": {"name": "resnet1d", "hparams": {"num_stages": 4}}, "train": {"epochs": 3}}
    rows = config_diff({"a": a, "b": b})
    assert rows == [{"setting": "model.hparams.num_stages", "a": "2", "b": "4"}]


def test_config_diff_compares_resolved_configs_so_defaults_are_not_differences():
    """A quick-start run stores no hyperparameter at its default: `kernel_size: — vs 3` was shown."""
    stored_defaults = {"model": {"name": "resnet1d", "hparams": {}}}
    spelled_out = {"model": {"name": "resnet1d", "hparams": {"kernel_size": 3, "base_channels": 32}}}
    assert config_diff({"a": stored_defaults, "b": spelled_out}) == []
    other_model = {"model": {"name": "tcn_dilated", "hparams": {}}}
    rows = {r["setting"]: r for r in config_diff({"a": stored_defaults, "b": other_model})}
    assert rows["model.name"] == {"setting": "model.name", "a": "resnet1d", "b": "tcn_dilated"}
    assert rows["model.hparams.num_stages"]["b"] == "—"  # resnet1d's knob does not apply to the TCN


def test_progress_gives_an_eta_only_while_running():
    run = {"status": "running", "step": 25, "total_steps": 100, "started_at": 1000.0, "epoch": 1, "total_epochs": 4}
    p = progress(run, now=1010.0)
    assert p["fraction"] == 0.25 and p["eta"] == pytest.approx(30.0)
    assert progress({**run, "status": "completed", "finished_at": 1040.0}, now=2000.0)["eta"] is None
    assert progress({"status": "queued"})["fraction"] == 0.0


def test_figures_draw_empty_and_full_series():
    fig = figures.curves({}, "empty")
    assert fig.layout.annotations[0].text == "no points yet"
    fig = figures.layer_heatmap([1, 2], ["a", "b"], [[1.0, 0.0], [None, 10.0]], "g", "norm", log=True)
    z = fig.data[0].z
    assert z[0][0] == 0.0 and math.isnan(z[0][1]) and z[1][1] == 1.0  # log10, zero shown as a gap
    cm = figures.confusion_figure([[3, 1], [0, 4]], ["a", "b"], normalize=True)
    assert cm.data[0].z[0] == pytest.approx([0.75, 0.25])


def test_confusion_matrix_and_activations_label_every_class_and_layer():
    digits = [str(d) for d in range(10)]  # numeric-looking names made a numeric axis that skipped ticks
    fig = figures.confusion_figure(np.eye(10).tolist(), digits)
    assert fig.layout.xaxis.type == "category" and list(fig.layout.xaxis.tickvals) == digits
    assert list(fig.layout.yaxis.tickvals) == digits
    layers = [f"blocks.{i}.conv" for i in range(30)]
    act = figures.activation_stats_figure({name: {"act_mean": 0.1, "act_std": 0.2, "act_max": 1.0} for name in layers})
    assert list(act.layout.yaxis.tickvals) == layers and act.layout.height >= 18 * 30
