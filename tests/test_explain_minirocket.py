"""What carried a MiniRocket decision (core/explain_minirocket.py): the logit split exactly over
time steps, dilations, channels and features, on a hand-made model and on a real GunPoint run
(the uea_small preset), through the CLI's classify path and on the Classify page; and Grad-CAM
on InceptionTime reading its last whole block at any depth."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from core.explain import last_conv_block
from core.explain_minirocket import explain_minirocket, explain_minirocket_batch, is_minirocket
from core.models import create

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")


def gunpoint(split: str) -> tuple[np.ndarray, np.ndarray]:
    from aeon.datasets import load_classification
    x, y = load_classification("GunPoint", split=split)
    return x.astype(np.float32), y


def csv_of(series: np.ndarray) -> bytes:
    """One series (C, T) as an IMU CSV with the UEA run's columns (dim0, ...) and a time column."""
    header = ",".join(["time"] + [f"dim{c}" for c in range(len(series))])
    rows = [",".join([str(t)] + [f"{v:.6f}" for v in series[:, t]]) for t in range(series.shape[1])]
    return ("\n".join([header] + rows) + "\n").encode()


def plotted(values) -> np.ndarray:
    """A trace's values from a figure's JSON (plotly writes arrays as base64 {dtype, bdata})."""
    if isinstance(values, dict):
        import base64
        return np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"])
    return np.asarray(values, dtype=float)


# ---- a hand-made model ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny():
    """A fitted 2-channel MiniRocket on 40-step series with a random 3-class head and a training mean."""
    torch.manual_seed(0)
    model = create("minirocket", (2, 40), 3, num_features=840).eval()
    train = torch.randn(12, 2, 40).cumsum(-1)
    model.fit_to_data(train, seed=3)
    with torch.no_grad():
        model.head.weight.normal_()
        model.head.bias.normal_()
    return model, train


def test_every_decomposition_sums_to_the_logit_minus_its_bias(tiny):
    model, train = tiny
    x = torch.randn(2, 40).cumsum(-1)
    with torch.no_grad():
        logits = model(x[None])[0]
    for target in range(3):
        e = explain_minirocket(model, x, target)
        assert e.logit == pytest.approx(float(logits[target]), abs=1e-6)
        assert e.baseline == e.bias == pytest.approx(float(model.head.bias.detach()[target]))
        expected = float(logits[target] - model.head.bias.detach()[target])
        for part in (e.by_time, e.by_dilation, e.by_channel, e.by_feature):
            assert part.sum() == pytest.approx(expected, abs=1e-4)
        assert e.residual < 1e-4
        assert e.by_time.shape == (40,) and e.by_channel.shape == (2,)
        assert np.allclose(e.by_dilation_time.sum(0), e.by_time) and np.allclose(e.by_dilation_time.sum(1),
                                                                                  e.by_dilation)
        assert e.dilations.tolist() == model.transform.dilations.tolist()


def test_feature_contributions_are_what_the_head_computes(tiny):
    """contribution_f = w[c, f] (ppv_f - mean_f) / scale_f, with ppv the model's own features."""
    model, _ = tiny
    x = torch.randn(1, 2, 40).cumsum(-1)
    with torch.no_grad():
        ppv = model.forward_features(x)[0].double()
    weight = model.head.weight.detach().double()[1] / model.feature_scale.double()
    e = explain_minirocket(model, x, 1)
    assert np.allclose(e.by_feature, (weight * (ppv - model.feature_mean.double())).numpy(), atol=1e-9)


def test_the_time_map_is_aligned_with_the_input(tiny):
    """Changing the input at one step s moves dilation d's row only at steps t with |t - s| <= 4d
    and t - s a multiple of d: the kernel taps that see step s, centred on t."""
    model, _ = tiny
    x = torch.randn(2, 40).cumsum(-1)
    bumped = x.clone()
    s = 20
    bumped[:, s] += 25.0
    before, after = explain_minirocket(model, x, 0), explain_minirocket(model, bumped, 0)
    changed = np.abs(after.by_dilation_time - before.by_dilation_time) > 1e-9
    assert changed.any()
    for row, d in zip(changed, before.dilations):
        t = np.flatnonzero(row)
        assert np.all(np.abs(t - s) <= 4 * d) and np.all((t - s) % d == 0), (d, t)


def test_a_reference_moves_the_baseline_and_the_parts_still_sum(tiny):
    model, train = tiny
    with torch.no_grad():
        reference = model.forward_features(train[:3]).mean(0)
    e = explain_minirocket(model, train[5], 2, reference=reference)
    weight = model.head.weight.detach().double()[2] / model.feature_scale.double()
    baseline = float(model.head.bias.detach()[2]) + float(weight @ (reference.double() - model.feature_mean.double()))
    assert e.baseline == pytest.approx(baseline) and e.reference == "the reference features given"
    assert e.by_time.sum() == pytest.approx(e.logit - baseline, abs=1e-4) and e.residual < 1e-4


def test_only_minirocket_is_decomposed(tiny):
    resnet = create("resnet1d", (2, 40), 3)
    assert is_minirocket(tiny[0]) and not is_minirocket(resnet)
    from core.errors import ConfigError
    with pytest.raises(ConfigError, match="minirocket runs only"):
        explain_minirocket_batch(resnet, torch.zeros(1, 2, 40), [0])
    with pytest.raises(ConfigError, match=r"windows of shape \(2, 40\)"):
        explain_minirocket(tiny[0], torch.zeros(2, 39), 0)


# ---- a real run ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def gunpoint_run() -> str:
    """The uea_small preset (MiniRocket, ridge head) on GunPoint, trained as the CLI trains it."""
    from core.jobs import run_job
    from core.presets import get
    from core.store import Store

    cfg = get("uea_small").config.with_overrides({"data.options.name": "GunPoint", "train.device": "cpu",
                                                  "name": "minirocket-explained"})
    store = Store()
    run_id = store.create_run(cfg.to_dict(), name="minirocket-explained")
    assert run_job(store, run_id, cfg, device="cpu") == "completed", store.get_run(run_id)["error"]
    return run_id


def test_a_gunpoint_runs_decomposition_sums_to_its_logits(gunpoint_run):
    from core.infer import load_run

    predictor = load_run(gunpoint_run)
    x_test, _ = gunpoint("test")
    windows = predictor.inputs(np.concatenate(list(x_test[:4]), axis=1).T, np.arange(4) * 150)
    with torch.no_grad():
        logits = predictor.model(torch.from_numpy(windows)).numpy()
    targets = logits.argmax(1)
    for e, row in zip(explain_minirocket_batch(predictor.model, windows, targets), logits):
        assert e.logit == pytest.approx(float(row[e.target]), abs=1e-5)
        assert e.by_time.sum() == pytest.approx(e.logit - e.bias, abs=1e-3)
        assert e.by_dilation.sum() == pytest.approx(e.logit - e.bias, abs=1e-3)
        assert e.by_time.shape == (150,) and len(e.by_dilation) == len(e.dilations) > 5


def test_classifying_a_file_with_the_run_explains_it_by_dilation_and_time(gunpoint_run):
    """The CLI's path (`python -m core predict --json`): one GunPoint series is one window of the run's
    150 steps, its explanation the decomposition (no Grad-CAM or input gradient: no gradient exists)."""
    from core.infer import classify_bytes, load_run

    x_test, y_test = gunpoint("test")
    pred = classify_bytes(load_run(gunpoint_run), csv_of(x_test[0]), "gunpoint.csv")
    assert pred.label == y_test[0] and len(pred.starts) == 1 and not pred.saliency
    c = pred.to_json()["contributions"]
    assert c["method"] == "minirocket_decomposition" and c["classes"] == [pred.label] and c["windows"] == 1
    assert len(c["values"]) == 150 and len(c["by_dilation"]) == len(c["dilations"])
    assert sum(c["by_dilation"]) == pytest.approx(c["logit"] - c["baseline"], abs=1e-3)
    assert sum(c["values"]) == pytest.approx(c["logit"] - c["baseline"], abs=0.01)  # values rounded to 1e-4
    assert c["max_residual"] < 1e-3 and c["by_channel"] == pytest.approx([c["logit"] - c["baseline"]], abs=1e-3)


def test_the_classify_page_shows_the_dilations_that_carried_a_minirocket_decision(gunpoint_run):
    from dashboard.engine import shutdown_engines

    x_test, _ = gunpoint("test")
    try:
        at = AppTest.from_file(str(ROOT / "Home.py"), default_timeout=120)
        at.run()
        at.switch_page("pages/classify.py").run()
        at.selectbox(key="classify.run").set_value(gunpoint_run).run()
        assert not at.exception, [e.message for e in at.exception]
        at.file_uploader[0].set_value([("gunpoint.csv", csv_of(x_test[0]), "text/csv")]).run()
        assert not at.exception, [e.message for e in at.exception]
        assert not at.error, [e.value for e in at.error]
        assert "What carried the decision: dilations and time steps" in [s.value for s in at.subheader]
        charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
        dilations = next(c for c in charts if c["layout"].get("xaxis", {}).get("title", {}).get("text")
                         == "dilation (span)")
        assert dilations["data"][0]["type"] == "bar" and dilations["data"][0]["x"][0] == "1 (9 samples)"
        overlay = [t for c in charts for t in c["data"] if t.get("name") == "contribution to the logit"]
        assert overlay and len(plotted(overlay[0]["y"])) == 150  # the time map, drawn with the signal
    finally:
        shutdown_engines()


# ---- InceptionTime's Grad-CAM ------------------------------------------------------------------------
@pytest.mark.parametrize("depth, block", [(6, "blocks.1"), (4, "blocks.1"), (2, "blocks.0")])
def test_grad_cam_reads_inception_times_last_whole_block_at_any_depth(depth, block):
    """A trailing block without a shortcut (depth not a multiple of 3) outputs 4 x filters channels,
    no single conv's width: Grad-CAM read one branch of it (its max-pool branch) before."""
    model = create("inception_time", (6, 100), 4, depth=depth).eval()
    assert last_conv_block(model, torch.randn(1, 6, 100)) == block
