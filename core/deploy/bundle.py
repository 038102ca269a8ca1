"""The standalone deploy bundle: one zip that classifies like `python -m core predict`, without Sigscope.

    path = write_bundle(predictor, Path("model.onnx"), Path("digits.zip"))   # metrics from the store
    # unzip digits.zip; python predict.py clip.wav --json       (numpy, onnxruntime, soundfile only)

The zip holds
    model.onnx       the exported model (external weight data, as torch's dynamo exporter writes it,
                     folded in, so the file stands alone); its input name is read from the model
    classes.json     class names, in the model's output order
    pipeline.json    everything between a file and the model input: signal kind, sample rate, window
                     and hop (samples), IMU channel names in order, the feature type and all its
                     parameters, the normalization statistics as stored with the run, the aggregation
                     over windows, and the input limits predict.py enforces
    mel_filters.npy  the run's mel filter bank (n_mels, n_fft//2+1) float32, as core computed it
                     (librosa's), for spectral audio features — shipped, not re-derived
    metrics.json     the run's test metrics (and test confusion matrix) or the caller's
    predict.py       core/deploy/standalone_predict.py: the pipeline again in numpy
    README.txt       how to run it and what it needs

The zip is written to a temp file beside `out_zip` and renamed into place: a failure leaves
neither a partial zip nor the temp file behind.
"""
from __future__ import annotations

import io
import json
import math
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from core.config import DataConfig
from core.errors import ConfigError
from core.infer.loading import Predictor, softmax

PREDICT_SOURCE = Path(__file__).with_name("standalone_predict.py")
FORMAT, VERSION = "sigscope-bundle", 1
LOG_OFFSET = 1e-6  # core.data.features._logmel: ln(mel power + 1e-6)
DELTA_HALF_WIDTH = 2  # core.data.features._delta's default
ONNX_SIZE_LIMIT = 2**31 - 1  # protobuf's limit for one model.onnx


def feature_pipeline(cfg: DataConfig, sample_rate: float) -> tuple[dict, dict[str, np.ndarray]]:
    """pipeline.json's "features" entry for an audio run's data config, and the arrays it ships
    ({"mel_filters.npy": (n_mels, n_fft//2+1) float32} for every spectral feature type)."""
    from core.data.features import INPUT_KIND, _mel_filters, check_feature_config

    check_feature_config(cfg)
    if cfg.features == "raw":
        return {"type": "raw", "layout": "(1, window): the waveform"}, {}
    layouts = {"logmel": "(n_mels, frames)", "mfcc": "(n_mfcc, frames)",
               "mfcc_deltas": "(3 n_mfcc, frames): MFCC rows, then their delta, then delta-delta",
               "stack4": "(4, n_mels, frames): log-mel, MFCC (all n_mels coefficients; without c0 a zero row "
                         "is appended), delta, delta-delta planes"}
    features = {
        "type": cfg.features, "input_kind": INPUT_KIND[cfg.features], "layout": layouts[cfg.features],
        "n_fft": int(cfg.n_fft), "hop_length": int(cfg.hop_length), "n_mels": int(cfg.n_mels),
        "n_mfcc": int(cfg.n_mfcc), "mfcc_c0": bool(cfg.mfcc_c0),
        "stft": {"center": True, "pad_mode": "constant (zeros)", "pad": int(cfg.n_fft // 2),
                 "window": "hann, periodic (scipy.signal.get_window('hann', n_fft, fftbins=True))",
                 "power": "|rfft|^2, float32"},
        "mel_filters": "mel_filters.npy", "mel_filter_source": "librosa.filters.mel(sr, n_fft, n_mels), float32",
        "log_offset": LOG_OFFSET, "log": "natural",
        "dct": "orthonormal DCT-II over the mel axis (scipy.fft.dct type 2, norm='ortho')",
        "delta": "HTK regression over +-half_width frames, edges repeated; delta-delta = delta of delta",
        "delta_half_width": DELTA_HALF_WIDTH, "dtype": "float32",
    }
    mel = np.ascontiguousarray(_mel_filters(float(sample_rate), int(cfg.n_fft), int(cfg.n_mels)), dtype=np.float32)
    return features, {"mel_filters.npy": mel}


def bundle_limits() -> dict:
    """The input limits in force now (core.limits, with SIGSCOPE_* overrides), as predict.py enforces them."""
    from core.data.imu_csv import DEFAULT_OPTIONS
    from core.infer.reading import RATE_TOLERANCE, SILENCE_PEAK
    from core.limits import limits

    lim = limits()
    return {"max_audio_seconds": lim.max_audio_seconds, "max_audio_peak": lim.max_audio_peak,
            "min_clip_fraction": lim.min_clip_fraction, "max_windows": lim.max_windows, "max_rows": lim.max_rows,
            "max_abs_value": lim.max_abs_value, "max_gzip_ratio": lim.max_gzip_ratio,
            "max_nan_run": int(DEFAULT_OPTIONS["max_nan_run"]), "rate_tolerance": RATE_TOLERANCE,
            "silence_peak": SILENCE_PEAK}


def pipeline_spec(predictor: Predictor, onnx_io: dict) -> tuple[dict, dict[str, np.ndarray]]:
    """pipeline.json for a run (see the module doc) and the arrays shipped beside it."""
    cfg = predictor.config
    arrays: dict[str, np.ndarray] = {}
    if predictor.signal == "audio":
        features, arrays = feature_pipeline(cfg.data, predictor.sample_rate)
        windowing = ("a window of `window` samples every `hop` samples, plus one last window for the tail; a "
                     "window running past the end (and a recording shorter than one window) is zero-padded at "
                     "the end; recordings shorter than min_clip_fraction of a window are refused")
    else:
        features = {"type": "raw", "layout": "(channels, window): the channel columns in `channels` order"}
        windowing = ("per stream (consecutive rows of one subject/session), a full window of `window` samples "
                     "every `hop` samples; a tail shorter than a window is left out, a stream shorter than one "
                     "window is skipped")
    spec = {
        "format": FORMAT, "version": VERSION,
        "run": {"id": predictor.run_id, "name": predictor.run_name, "model": cfg.model.name,
                "source": cfg.data.source, "checkpoint": predictor.checkpoint.name if predictor.checkpoint else None,
                "epoch": predictor.epoch, "adapted": predictor.adapted or None, "config": cfg.to_dict()},
        "signal": predictor.signal,
        "source_kind": predictor.signal,  # "audio" | "imu"
        "sample_rate": float(predictor.sample_rate),
        "window": int(predictor.window), "hop": int(predictor.stride),
        "window_seconds": predictor.window_seconds, "hop_seconds": predictor.stride / predictor.sample_rate,
        "windowing": windowing,
        "channels": list(predictor.channel_names) if predictor.signal == "imu" else [],
        "features": features,
        "normalization": predictor.normalization,
        "input": {"name": onnx_io["input"], "shape": list(predictor.input_shape), "dtype": "float32",
                  "batch_axis": 0, "fixed_batch": onnx_io["batch"]},
        "output": {"name": onnx_io["output"], "kind": "logits", "classes": len(predictor.class_names),
                   "window_probabilities": "softmax over the logits of each window"},
        "aggregate": {"default": "mean",
                      "mean": "softmax of the mean over windows of log(clip(p, 1e-12, 1))",
                      "vote": "share of windows whose top class each class is, ties split by 1e-6 x mean p"},
        "audio_resampling": "refused: the recording must be at sample_rate (Sigscope resamples with soxr HQ)",
        "limits": bundle_limits(),
        "onnx_check": onnx_io["check"],
    }
    return spec, arrays


def onnx_model_bytes(onnx_path: Path) -> bytes:
    """model.onnx as one self-contained file: weights kept in external data (torch's dynamo
    exporter writes `model.onnx.data` beside it) are folded into the model."""
    import onnx

    try:
        model = onnx.load(str(onnx_path), load_external_data=False)
    except Exception as e:  # noqa: BLE001 - protobuf raises its own types for a damaged file
        raise ConfigError(f"{onnx_path}: is not an ONNX model ({type(e).__name__}); export the run again") from None
    try:  # a no-op for a model without external data
        onnx.load_external_data_for_model(model, str(onnx_path.parent))
    except (OSError, ValueError) as e:
        raise ConfigError(f"{onnx_path}: its weights live in an external data file that cannot be read ({e}); keep "
                          "the .onnx and its .data file together, or export again") from None
    if model.ByteSize() > ONNX_SIZE_LIMIT:
        raise ConfigError(f"{onnx_path}: the model is over 2 GB with its weights, more than one ONNX file can hold; "
                          "a bundle needs a smaller model")
    return model.SerializeToString()


def check_onnx(model_bytes: bytes, predictor: Predictor, onnx_path: Path) -> dict:
    """The model's input/output names, checked against the run: one input of (batch, *input_shape),
    one output of (batch, classes); and how far its probabilities are from the run's on a few
    random inputs (recorded, not enforced: an int8 variant differs on purpose)."""
    import onnxruntime as ort

    try:
        options = ort.SessionOptions()
        options.log_severity_level = 3
        session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise ConfigError(f"{onnx_path}: ONNX Runtime cannot load it ({type(e).__name__}: "
                          f"{' '.join(str(e).split())[:200]}); export the run again") from None
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or len(outputs) < 1:
        raise ConfigError(f"{onnx_path}: has {len(inputs)} inputs and {len(outputs)} outputs; a bundle needs a model "
                          "of one input (the windows) and the logits as its first output")
    want_in = (None, *predictor.input_shape)
    want_out = (None, len(predictor.class_names))
    for what, shape, want in (("input", inputs[0].shape, want_in), ("output", outputs[0].shape, want_out)):
        if len(shape) != len(want) or any(isinstance(d, int) and w is not None and d != w for d, w in zip(shape, want)):
            raise ConfigError(f"{onnx_path}: its {what} has shape {list(shape)}, run {predictor.run_id} needs "
                              f"(batch, {', '.join(map(str, want[1:]))}); export this run's model")
    batch = inputs[0].shape[0]
    static = isinstance(batch, int) and batch > 0  # a model exported for a fixed batch: predict.py fills it
    n = batch if static else 2
    x = np.random.default_rng(0).standard_normal((n, *predictor.input_shape)).astype(np.float32)
    try:
        got = session.run(None, {inputs[0].name: x})[0]
    except Exception as e:  # noqa: BLE001
        raise ConfigError(f"{onnx_path}: fails on a batch of {n} windows ({type(e).__name__}: "
                          f"{' '.join(str(e).split())[:200]})") from None
    if got.shape != (n, len(predictor.class_names)):
        raise ConfigError(f"{onnx_path}: gives outputs of shape {got.shape} for {n} windows; expected ({n}, "
                          f"{len(predictor.class_names)})")
    diff = float(np.abs(softmax(got.astype(np.float32)) - softmax(predictor.logits(x))).max())
    return {"input": inputs[0].name, "output": outputs[0].name, "batch": batch if static else None,
            "check": {"max_probability_difference_vs_torch": round(diff, 8), "on": f"{n} random N(0,1) inputs"}}


def run_metrics(predictor: Predictor, metrics: dict | None = None) -> dict:
    """metrics.json: the caller's metrics, else the run's test metrics and test reports from the store."""
    out = {"run_id": predictor.run_id}
    if metrics is not None:
        return {**out, "from": "caller", "metrics": _finite(metrics)}
    from core.store import Store

    store = Store()
    run = store.get_run(predictor.run_id) if predictor.run_id else None
    if run is None:
        return {**out, "from": None, "metrics": {}, "note": "the run is not in the store; no test metrics recorded"}
    test = dict((run.get("summary") or {}).get("test_metrics") or {})
    if not test:
        test = {k: v for k, v in store.final_metrics(predictor.run_id).items() if k.startswith("test_")}
    reports = {r["key"]: r["value"] for r in store.reports(predictor.run_id, split="test")}
    return {**out, "from": f"store {store.path}", "metrics": _finite(test), "reports": _finite(reports)}


def _finite(value):
    """JSON without NaN: non-finite numbers become null."""
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def readme(predictor: Predictor, spec: dict, metrics: dict) -> str:
    rate = f"{spec['sample_rate']:g} Hz"
    what = (f"audio recordings (WAV/FLAC/OGG, mono or stereo) at {rate}" if predictor.signal == "audio"
            else f"IMU CSVs with a header row and the columns {', '.join(spec['channels'])} at "
                 f"{spec['sample_rate']:g} Hz (.csv or .csv.gz)")
    acc = (metrics.get("metrics") or {}).get("test_accuracy")
    mel = "mel_filters.npy (the mel filter bank), " if spec["features"].get("mel_filters") else ""
    return f"""Sigscope deploy bundle: {predictor.describe()}
run {predictor.run_id} ({predictor.run_name or 'unnamed'}), classes: {', '.join(predictor.class_names)}
{f'test accuracy {acc:.3f} (metrics.json)' if isinstance(acc, float) else 'test metrics: metrics.json'}

Run it (Python 3.9+ with numpy, onnxruntime and, for audio, soundfile; no Sigscope, no torch):

    pip install numpy onnxruntime soundfile
    python predict.py FILE [FILE...] [--json] [--top-k 3] [--hop SECONDS] [--aggregate mean|vote]

It classifies {what}
exactly as `python -m core predict --run {predictor.run_id} FILE` does: the same windows
({spec['window_seconds']:g} s every {spec['hop_seconds']:g} s), features, normalization and per-file
aggregation (softmax of the mean log-probability over the windows). It prints one line per
file (label, probability, top-k), or a JSON list with --json; a file it cannot read gives
one error line and exit code 1. Audio at another sample rate is refused, not resampled:
convert it first (e.g. `ffmpeg -i in.wav -ar {spec['sample_rate']:g} out.wav`).

Files: model.onnx (input "{spec['input']['name']}", shape (batch, {', '.join(map(str, spec['input']['shape']))})),
classes.json, pipeline.json (the input pipeline and its parameters),
{mel}metrics.json (test metrics), predict.py.
"""


def write_bundle(predictor: Predictor, onnx_path: Path, out_zip: Path, metrics: dict | None = None) -> Path:
    """Write the deploy zip for `predictor` with the ONNX model at `onnx_path` (see the module
    doc); metrics: what metrics.json holds (default: the run's test metrics from the store).
    Returns out_zip. Raises ConfigError (one line) before anything is written when the model
    does not fit the run; the zip appears whole or not at all."""
    if not isinstance(predictor, Predictor):
        raise ConfigError(f"write_bundle takes one run's Predictor (core.infer.load_run), not "
                          f"{type(predictor).__name__}; bundle each ensemble member on its own")
    onnx_path, out_zip = Path(onnx_path), Path(out_zip)
    if not onnx_path.is_file():
        raise ConfigError(f"{onnx_path}: no such ONNX file; export the run first")
    if not PREDICT_SOURCE.is_file():
        raise ConfigError(f"{PREDICT_SOURCE} is missing from this Sigscope install; reinstall it")
    model_bytes = onnx_model_bytes(onnx_path)
    onnx_io = check_onnx(model_bytes, predictor, onnx_path)
    spec, arrays = pipeline_spec(predictor, onnx_io)
    metrics_doc = run_metrics(predictor, metrics)
    files: dict[str, bytes] = {
        "model.onnx": model_bytes,
        "classes.json": _json(list(predictor.class_names)),
        "pipeline.json": _json(_finite(spec)),
        "metrics.json": _json(metrics_doc),
        "predict.py": PREDICT_SOURCE.read_bytes(),
        "README.txt": readme(predictor, spec, metrics_doc).encode("utf-8"),
    }
    for name, array in arrays.items():
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=False)
        files[name] = buffer.getvalue()
    out_zip.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{out_zip.name}.", suffix=".part", dir=out_zip.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED) as z:
                for name, data in files.items():
                    z.writestr(name, data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(temp, 0o644)  # mkstemp's 0600 is for the temp file, not the bundle
        os.replace(temp, out_zip)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return out_zip


def _json(value) -> bytes:
    return (json.dumps(value, indent=1, allow_nan=False) + "\n").encode("utf-8")
