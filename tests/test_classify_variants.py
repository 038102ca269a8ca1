"""Classify with an exported variant: the demo IMU run exported to ONNX (fp32 and dynamic int8)
answers a real HAPT recording through ONNX Runtime with the run's own pipeline — fp32 as the
PyTorch model does, int8 with a finite distribution — from Python, the CLI and the page, saying
which variant answered and that explanations need the PyTorch model."""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest
from onnx import numpy_helper
from streamlit.testing.v1 import AppTest

from core.errors import ConfigError, DataError
from core.infer import classify_file, load_run, window_attention
from core.infer.predict import run_windows
from core.infer.variants import (EXPLANATIONS_NEED_PYTORCH, PYTORCH, OnnxModel, list_variants, load_variant,
                                 run_folder)

ROOT = Path(__file__).resolve().parents[1]
HAPT = ROOT / "data" / "hapt" / "hapt_subjects01-04.csv.gz"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The demo IMU run in a store of its own, exported with an fp32 and a dynamic int8 ONNX model."""
    from core.demo import install_bundled
    from core.deploy.export import export_run
    from core.deploy.measure import MeasureSettings
    from core.store import Store
    from dashboard.engine import shutdown_engines

    folder = tmp_path_factory.mktemp("variants")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SIGSCOPE_RUNS_DIR", str(folder / "runs"))
        run_id = install_bundled(Store(), "demo-imu")
        export_run(run_id, formats=["onnx"], quantize=["dynamic"],
                   settings=MeasureSettings(repeats=1, warmup=0, memory=False))
        yield run_id
        shutdown_engines()


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:
    """Two minutes of a real HAPT recording (subject 4, the rows as the sensor wrote them)."""
    frame = pd.read_csv(HAPT)
    path = tmp_path_factory.mktemp("hapt") / "subject4.csv"
    frame[frame["subject"] == 4].iloc[:6000].to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def pytorch(exported):
    return load_run(exported)


def test_a_runs_exported_variants_are_listed_with_their_test_scores(pytorch):
    variants = {v.name: v for v in list_variants(run_folder(pytorch))}
    assert list(variants) == ["fp32-onnx", "int8-dynamic"]
    fp32, int8 = variants["fp32-onnx"], variants["int8-dynamic"]
    assert fp32.path.name == "model.onnx" and fp32.present and fp32.size_bytes == fp32.path.stat().st_size
    assert fp32.accuracy == pytest.approx(0.908, abs=0.01) and fp32.agreement == 1.0
    assert 0.8 < int8.accuracy <= 1 and 0.9 < int8.agreement <= 1 and int8.size_bytes < fp32.size_bytes
    assert "test acc" in int8.describe() and "agrees with PyTorch" in int8.describe()


def test_fp32_onnx_answers_a_real_recording_as_pytorch_does_and_int8_finitely(pytorch, recording):
    reference = classify_file(pytorch, recording, explain="none")
    fp32 = load_variant(pytorch, "fp32-onnx")
    assert isinstance(fp32.model, OnnxModel) and not fp32.has_attention
    assert fp32.variant.startswith("fp32-onnx") and fp32.class_names == pytorch.class_names
    pred = classify_file(fp32, recording)
    assert pred.label == reference.label and len(pred.starts) == len(reference.starts) > 50
    assert np.abs(pred.window_probs - reference.window_probs).max() < 1e-4
    for name, p in reference.probabilities.items():
        assert pred.probabilities[name] == pytest.approx(p, abs=1e-4)
    assert pred.variant == fp32.variant and pred.to_json()["variant"] == fp32.variant
    assert not pred.attention and not pred.saliency and EXPLANATIONS_NEED_PYTORCH in pred.notes
    assert pred.window_accuracy == pytest.approx(reference.window_accuracy)

    int8 = classify_file(load_variant(pytorch, "int8-dynamic"), recording)
    assert np.isfinite(int8.window_probs).all() and np.allclose(int8.window_probs.sum(axis=1), 1, atol=1e-5)
    assert sum(int8.probabilities.values()) == pytest.approx(1.0, abs=1e-6)
    assert int8.window_accuracy > 0.5 and int8.variant.startswith("int8-dynamic")
    assert load_variant(pytorch, PYTORCH) is pytorch


def test_explanations_of_a_variant_are_refused_by_name_not_crashed(pytorch, recording):
    fp32 = load_variant(pytorch, "fp32-onnx")
    pred = classify_file(fp32, recording, explain="all")
    assert not pred.attention and not pred.saliency and EXPLANATIONS_NEED_PYTORCH in pred.notes
    assert EXPLANATIONS_NEED_PYTORCH not in classify_file(fp32, recording, explain="none").notes
    with pytest.raises(ConfigError, match="explanations need the PyTorch model"):
        window_attention(fp32, pred, 0)
    with pytest.raises(ConfigError, match="explanations need the PyTorch model"):
        run_windows(fp32, pred.signal, pred.starts[:2], len(pred.signal), "saliency")


@pytest.fixture
def copied(pytorch, tmp_path):
    """The run's predictor pointing at a copy of its folder, whose deploy/ a test may damage."""
    source = run_folder(pytorch)
    target = tmp_path / source.name
    shutil.copytree(source / "deploy", target / "deploy")
    return dataclasses.replace(pytorch, checkpoint=target / "checkpoints" / "best.pt"), target / "deploy"


def test_unknown_missing_and_damaged_variants_are_one_line_errors(copied):
    predictor, deploy = copied
    with pytest.raises(ConfigError, match="its variants are: pytorch, fp32-onnx, int8-dynamic"):
        load_variant(predictor, "int8-static")
    (deploy / "model.int8-dynamic.onnx").write_bytes(b"\x08\x07not a model")
    with pytest.raises(ConfigError, match="ONNX Runtime cannot load") as damaged:
        load_variant(predictor, "int8-dynamic")
    (deploy / "model.int8-dynamic.onnx").unlink()
    with pytest.raises(ConfigError, match="is missing") as missing:
        load_variant(predictor, "int8-dynamic")
    assert all("\n" not in str(e.value) and "export the run again" in str(e.value) for e in (damaged, missing))
    (deploy / "report.json").write_text("{ cut off")
    with pytest.raises(ConfigError, match="report.json cannot be read"):
        list_variants(deploy.parent)


def test_a_variant_with_nan_weights_is_refused_not_shown_as_probabilities(copied, recording):
    predictor, deploy = copied
    model = onnx.load(str(deploy / "model.onnx"))
    weights = max((t for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT),
                  key=lambda t: int(np.prod(t.dims)))
    values = numpy_helper.to_array(weights).copy()
    values.flat[0] = np.nan
    weights.CopyFrom(numpy_helper.from_array(values, weights.name))
    onnx.save(model, str(deploy / "model.onnx"))
    with pytest.raises(DataError, match=f"non-finite logits; its file's weights hold NaN/inf \\({weights.name}"):
        classify_file(load_variant(predictor, "fp32-onnx"), recording)


def test_the_cli_classifies_with_a_variant_and_names_the_ones_there_are(exported, recording, capsys):
    from core.__main__ import main

    assert main(["predict", "--run", exported, "--variant", "int8-dynamic", str(recording), "--json"]) == 0
    (out,) = json.loads(capsys.readouterr().out)
    assert out["variant"].startswith("int8-dynamic") and np.isfinite(list(out["probabilities"].values())).all()
    assert main(["predict", "--run", exported, "--variant", "fp32-onnx", str(recording)]) == 0
    assert "answered by fp32-onnx" in capsys.readouterr().out
    assert main(["predict", "--run", exported, "--variant", "int9", str(recording)]) == 2
    err = capsys.readouterr().err
    assert "no variant 'int9'" in err and "pytorch, fp32-onnx, int8-dynamic" in err


def test_the_classify_page_picks_a_variant_and_says_which_answered(exported, recording):
    at = AppTest.from_file(str(ROOT / "Home.py"), default_timeout=90)
    at.run()
    at.switch_page("pages/classify.py").run()
    at.selectbox(key="classify.run").set_value(exported).run()
    assert not at.exception, [e.message for e in at.exception]
    picker = at.selectbox(key=f"classify.variant.{exported}")
    assert picker.label == "Variant" and picker.value == PYTORCH
    assert picker.options[0].startswith("PyTorch model") and "int8-dynamic" in picker.options[2]
    assert "test acc" in picker.options[2] and "agrees with PyTorch" in picker.options[2]
    picker.set_value("int8-dynamic").run()
    at.file_uploader[0].set_value([("walk.csv", recording.read_bytes(), "text/csv")]).run()
    assert not at.exception, [e.message for e in at.exception]
    assert any("Answered by the exported variant int8-dynamic" in c.value for c in at.caption)
    assert any(EXPLANATIONS_NEED_PYTORCH in i.value for i in at.info)
    assert not [s for s in at.subheader if s.value == "Attention"]
    at.selectbox(key=f"classify.variant.{exported}").set_value(PYTORCH).run()  # the cache keeps them apart
    assert not at.exception, [e.message for e in at.exception]
    assert not any("Answered by the exported variant" in c.value for c in at.caption)
    assert [s for s in at.subheader if s.value == "Attention"]
