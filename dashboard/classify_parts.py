"""Page parts for Classify: model choice (with the demo models installed from their
committed weights on first use), the batch of uploads, their classification cached by
content, the detail view of one prediction and the batch table. Classification runs in the
script run (it takes well under a second per clip); only demo training goes to the
JobManager, watched through the store."""
from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from core.compare import CONFIDENCE_FLOOR
from core.demo import DEMO_NAMES, bundle_manifest, demo_configs, demo_run, ensure_bundled
from core.errors import SigscopeError
from core.infer import (MAX_UPLOAD_BYTES, Prediction, Predictor, adapt_to_uploads, classify_bytes, display_name,
                        error_line)
from core.infer.ensemble import Ensemble, as_ensemble
from core.infer.variants import EXPLANATIONS_NEED_PYTORCH
from dashboard import classify_figures as cf
from dashboard.estimates import training_time

ADAPT_KEY = "classify.adapted"
ENSEMBLE_OPTION = "ensemble:"  # the Model picker's value for a seed ensemble: "ensemble:<tag>"
MAX_CACHED = 32  # classifications kept per server (each holds its upload's bytes and signal)


# ---- models ------------------------------------------------------------------------------
def has_checkpoint(run: dict) -> bool:
    folder = Path(run.get("run_dir") or "")
    return (folder / "checkpoints" / "best.pt").is_file() or (folder / "checkpoints" / "last.pt").is_file()


def classifiable_runs(store) -> list[dict]:
    """Completed runs with a checkpoint, newest first (demo models included)."""
    return [r for r in store.list_runs("completed") if has_checkpoint(r)]


def quality_of(store, run: dict):
    """run_quality, cached per finished run: the picker labels every run on each rerun, and
    reading each run's metrics and classes again cost ~15 ms a run (a second at 60 runs)."""
    return _quality(str(store.runs_dir), run["id"], run.get("finished_at"), run["status"])


@st.cache_data(max_entries=512, ttl=120, show_spinner=False)
def _quality(runs_dir: str, run_id: str, finished_at, status: str):
    from core import paths
    from core.compare import run_quality
    from core.store import Store

    store = Store(paths.store_path(Path(runs_dir)))
    return run_quality(store, store.get_run(run_id))


@st.cache_resource(show_spinner="Loading the model…", max_entries=4)
def _predictor(run_id: str, runs_dir: str, stamp: float) -> Predictor:
    from core import paths
    from core.infer import load_run
    from core.store import Store

    return load_run(run_id, Store(paths.store_path(Path(runs_dir))))


def predictor_for(store, run: dict) -> Predictor:
    """The run's Predictor, cached per server until its checkpoint file changes."""
    return _predictor(run["id"], str(store.runs_dir), _checkpoint(run).stat().st_mtime)


def classifiable_ensembles(store) -> list:
    """Stored seed ensembles (core.ensembles) whose completed runs, two or more, all have a checkpoint."""
    from core.ensembles import list_ensembles

    return [e for e in list_ensembles(store) if all(has_checkpoint(r) for r in e.members)]


def ensemble_for(store, ensemble) -> Ensemble:
    """The ensemble's members loaded together, cached per server until a member's checkpoint changes."""
    stamps = tuple(_checkpoint(r).stat().st_mtime for r in ensemble.members)
    return _ensemble(tuple(ensemble.run_ids), str(store.runs_dir), stamps)


@st.cache_resource(show_spinner="Loading the ensemble's models…", max_entries=2)
def _ensemble(run_ids: tuple, runs_dir: str, stamps: tuple) -> Ensemble:
    from core import paths
    from core.infer import load_ensemble
    from core.store import Store

    return load_ensemble(list(run_ids), Store(paths.store_path(Path(runs_dir))))


def ensemble_label(store, ensemble) -> str:
    """The picker's line for an ensemble: members, model, data and its own test accuracy (read
    from the cache ensemble_scores filled; never computed here)."""
    from core.ensembles import cached_score

    score = cached_score(store, ensemble)
    return ensemble.label(score) + ("" if score is not None else " · test acc not measured")


def ensemble_scores(store, ensembles: list) -> dict[str, str]:
    """Score every ensemble not scored yet on its test split (once: the result is cached under the
    runs folder); returns tag -> why it could not be scored, for those that could not."""
    from core.ensembles import cached_score, ensemble_score

    tried: dict = st.session_state.setdefault("classify.ensemble_failed", {})  # not tried again each rerun
    failed = {}
    for e in ensembles:
        key = (e.tag, tuple(e.run_ids))
        if key in tried:
            failed[e.tag] = tried[key]
        elif cached_score(store, e) is None:
            with st.spinner(f"Measuring {e.name} (ensemble of {len(e.members)}) on its test split, once…"):
                try:
                    ensemble_score(store, e, model=ensemble_for(store, e))
                except Exception as error:  # noqa: BLE001 - a run that cannot be scored is a line, not a crash
                    failed[e.tag] = tried[key] = error_line(error)
    return failed


def explainer(model: Predictor | Ensemble) -> Predictor:
    """The run whose model explains an answer: the run itself, or an ensemble's primary member."""
    return as_ensemble(model).primary


def _model_key(model: Predictor | Ensemble) -> tuple:
    """What answers, for cache keys: each member's run, checkpoint, epoch and exported variant."""
    return tuple((m.run_id, str(m.checkpoint), m.epoch, m.variant) for m in as_ensemble(model).members)


def _checkpoint(run: dict) -> Path:
    folder = Path(run["run_dir"])
    ckpt = folder / "checkpoints" / "best.pt"
    return ckpt if ckpt.is_file() else folder / "checkpoints" / "last.pt"


@st.cache_resource(show_spinner="Loading the exported variant…", max_entries=4)
def _variant_predictor(run_id: str, runs_dir: str, stamp: float, name: str, report_stamp: float) -> Predictor:
    from core.infer.variants import load_variant

    return load_variant(_predictor(run_id, runs_dir, stamp), name)


def variant_picker(store, run: dict, predictor: Predictor) -> Predictor:
    """The "Variant" picker when the run has exported variants (runs/<id>/deploy/report.json):
    the PyTorch model (default) or an ONNX Runtime variant, each with its test accuracy and
    agreement with PyTorch. Returns the Predictor that answers (cached per server until the
    checkpoint or the export changes); a variant that cannot be loaded is an error line, and
    the PyTorch model answers instead."""
    from core.infer.variants import PYTORCH, list_variants, pytorch_accuracy
    from core.paths import DEPLOY_DIR, DEPLOY_REPORT

    folder = Path(run["run_dir"])
    try:
        variants = {v.name: v for v in list_variants(folder)}
    except SigscopeError as e:
        st.warning(f"The run's exported variants cannot be listed: {e}", icon=":material/warning:")
        return predictor
    if not variants:
        return predictor
    accuracy = pytorch_accuracy(folder)

    def label(name: str) -> str:
        if name == PYTORCH:
            return ("PyTorch model (the run's checkpoint)" + (f" · test acc {accuracy:.3f}" if accuracy is not None
                                                               else "") + " · with explanations")
        return variants[name].describe()

    name = st.selectbox("Variant", [PYTORCH, *variants], format_func=label, key=f"classify.variant.{run['id']}",
                        help="the run's exported models (python -m core export): ONNX Runtime, fp32 or int8, with "
                             "their accuracy on the run's test split and how often they agree with the PyTorch "
                             "model; they answer with the run's own windowing and normalization, without "
                             "explanations (those need the PyTorch model's gradients and attention)")
    if name == PYTORCH:
        return predictor
    report = folder / DEPLOY_DIR / DEPLOY_REPORT
    try:
        return _variant_predictor(predictor.run_id, str(store.runs_dir), _checkpoint(run).stat().st_mtime, name,
                                  report.stat().st_mtime if report.is_file() else 0.0)
    except SigscopeError as e:
        st.error(f"Variant {name} cannot be used ({error_line(e)}); the PyTorch model answers instead",
                 icon=":material/error:")
        return predictor


def demo_panel(eng) -> None:
    """The demo models. On a store with nothing to classify yet they are installed from the
    committed weights at once (milliseconds); beside a user's own runs they are one click
    away. Without usable bundled weights: training (with progress), or a button that trains
    them, saying how long that takes."""
    store = eng.store
    missing = [n for n in DEMO_NAMES if demo_run(store, n) is None]
    if missing and not classifiable_runs(store):
        installed = ensure_bundled(store, tuple(missing))
        if installed:
            st.toast(f"Installed the bundled demo models ({', '.join(installed)}): ready to classify.",
                     icon=":material/bolt:")
        missing = [n for n in missing if n not in installed]
    if not missing:
        return
    bundled = [n for n in missing if bundle_manifest(n) is not None]
    if bundled:
        if st.button(f"Add the demo models ({', '.join(bundled)})", key="classify.demo.install",
                     icon=":material/bolt:", help="install their committed weights as completed runs (instant)"):
            ensure_bundled(store, tuple(bundled))
            st.rerun()
        missing = [n for n in missing if n not in bundled]
        if not missing:
            return
    active = {n: demo_run(store, n, ("queued", "running")) for n in missing}
    with st.container(border=True):
        st.markdown("**Demo models** — one audio (spoken digits, FSDD) and one IMU (activities, HAPT) "
                    "classifier, trained here on the data bundled with Sigscope (their committed weights are "
                    "missing or were made from another config); no weights are downloaded. "
                    "They are ordinary runs (also made by `python -m core demo-models --train`).")
        cols = st.columns(len(missing))
        for col, name in zip(cols, missing):
            cfg = demo_configs()[name]
            with col:
                if active[name] is None:
                    what = (f"{cfg.model.name} on {cfg.data.source}, {cfg.train.epochs} epochs, "
                            f"{training_time(cfg.to_json())}")
                    if st.button(f"Train {name}", key=f"classify.demo.{name}", help=what, icon=":material/bolt:"):
                        eng.submit(cfg)
                        st.rerun()
                    st.caption(what)
        if any(active.values()):
            _demo_progress([r["id"] for r in active.values() if r is not None])


@st.fragment(run_every=1.5)
def _demo_progress(run_ids: list[str]) -> None:
    from dashboard.engine import engine
    from dashboard.parts import progress_bar

    store = engine().store
    runs = [store.get_run(i) for i in run_ids]
    for run in runs:
        if run is not None:
            st.caption(f"Training {run['name']} ({run['status']})")
            progress_bar(run)
    if all(r is None or r["status"] not in ("queued", "running") for r in runs):
        st.rerun()  # done: redraw the page with the new model in the picker


# ---- the batch -----------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Upload:
    """One file of the batch, read once: `data` is empty when its size was refused unread;
    `name` is as listed (numbered when the batch had it), `uploaded_as` as the user named it."""

    name: str
    size: int
    data: bytes
    digest: str
    uploaded_as: str = ""


def read_upload(name: str, size: int, handle) -> Upload:
    """An uploaded (or recorded) file's bytes and digest; over the limit, refused before reading."""
    if size > MAX_UPLOAD_BYTES:
        return Upload(name, size, b"", f"too-big-{size}", name)
    data = handle.getvalue()
    return Upload(name, size, data, hashlib.sha1(data).hexdigest(), name)


def merge_batch(batch: list[Upload], new: list[Upload], add: bool) -> list[Upload]:
    """The batch after an upload: the new files replace it unless `add`; the same file (name and
    content) is listed once, and a name reused for other content gets a number (both are kept)."""
    merged: list[Upload] = list(batch) if add else []
    for up in new:
        if any((u.uploaded_as or u.name, u.digest) == (up.uploaded_as or up.name, up.digest) for u in merged):
            continue
        names = {u.name for u in merged}
        if up.name in names:
            stem, dot, ext = up.name.rpartition(".") if "." in up.name else (up.name, "", "")
            n = 2
            while f"{stem} ({n}){dot}{ext}" in names:
                n += 1
            up = dataclasses.replace(up, name=f"{stem} ({n}){dot}{ext}")
        merged.append(up)
    return merged


def batch_inputs(predictor: Predictor, limit: str) -> list[Upload]:
    """The upload and microphone inputs and the batch they fill (kept in this session per input
    kind). A drop or a new recording replaces the batch unless "Add to the batch" is on; the
    uploader is emptied after each drop (a fresh key), so it never lists files the batch dropped."""
    audio = predictor.signal == "audio"
    batch_key, gen_key = f"classify.batch.{predictor.signal}", f"classify.upload_gen.{predictor.signal}"
    batch: list[Upload] = st.session_state.setdefault(batch_key, [])
    left, right = st.columns([3, 1], vertical_alignment="center")
    add = left.toggle("Add to the batch", key="classify.add",
                      help="off: a new upload or recording replaces the files being classified; on: it joins them "
                           "(the same file is never listed twice)")
    if batch and right.button("Clear the batch", key="classify.clear", icon=":material/delete:"):
        st.session_state[batch_key] = []
        st.session_state[gen_key] = st.session_state.get(gen_key, 0) + 1
        st.rerun()
    kinds = ["wav", "flac", "ogg", "mp3"] if audio else ["csv", "gz", "tsv", "txt"]
    upload_tab, mic_tab = st.tabs(["Upload files", "Record from the microphone"])
    with upload_tab:
        files = st.file_uploader(
            ("WAV/FLAC/OGG/MP3 recordings" if audio else f"IMU CSV with columns {', '.join(predictor.channel_names)}")
            + f" — several files give a batch table; {limit}", type=kinds, accept_multiple_files=True,
            max_upload_size=MAX_UPLOAD_BYTES // 2**20,
            key=f"classify.files.{predictor.signal}.{st.session_state.get(gen_key, 0)}")
    with mic_tab:
        recorded = None
        if audio:
            recorded = st.audio_input("Record a clip", sample_rate=int(predictor.sample_rate), key="classify.mic")
        else:
            st.caption("The microphone records audio; this run classifies IMU CSVs.")
    new = [read_upload(f.name, f.size, f) for f in files or []]
    if recorded is not None and st.session_state.get("classify.mic.seen") != recorded.file_id:
        st.session_state["classify.mic.seen"] = recorded.file_id
        new.append(read_upload("microphone.wav", recorded.size, recorded))
    if new:
        batch = st.session_state[batch_key] = merge_batch(batch, new, add)
    if files:  # empty the uploader: what it held is in the batch now
        st.session_state[gen_key] = st.session_state.get(gen_key, 0) + 1
        st.rerun()
    if batch:
        st.caption(f"Classifying {len(batch)} file{'s' if len(batch) > 1 else ''}: "
                   + ", ".join(u.name for u in batch[:8]) + (" …" if len(batch) > 8 else "")
                   + (" · a new upload joins them" if add else " · a new upload replaces them"))
    return batch


# ---- classifying -------------------------------------------------------------------------
@dataclasses.dataclass
class Item:
    """One upload's outcome: a Prediction or one error line; `data` kept for playback."""

    name: str
    data: bytes
    prediction: Prediction | None = None
    error: str | None = None


def classify_cached(predictor: Predictor, data: bytes, name: str, hop: float, aggregate: str, top_k: int,
                    variant: str = "", digest: str | None = None) -> Item:
    """classify_bytes, cached per server by (run, checkpoint, exported variant, content digest,
    settings), so a rerun, another file picked or a second tab never classifies the same thing
    again; `variant` names a changed model (adapted_cached's digest), so its answers are cached apart."""
    label = display_name(name)
    if len(data) > MAX_UPLOAD_BYTES:
        return Item(label, b"", error=f"{label}: {len(data) / 2**20:.1f} MiB is over the "
                                      f"{MAX_UPLOAD_BYTES // 2**20} MiB upload limit")
    key = (_model_key(predictor), variant, digest or hashlib.sha1(data).hexdigest(), label, round(hop, 4), aggregate,
           top_k)
    return _classified(key, predictor, data)


@st.cache_resource(max_entries=MAX_CACHED, show_spinner=False)
def _classified(key: tuple, _predictor: Predictor, _data: bytes) -> Item:
    """One classification; the key alone says what it is (the model and bytes are not hashed).
    Items are shared between sessions and never changed after this."""
    from core.threads import compute_threads

    label, hop, aggregate, top_k = key[-4:]
    try:
        with compute_threads(inference_threads_now(), purpose="classify"):
            prediction = classify_bytes(_predictor, _data, label, top_k=top_k, hop=hop, aggregate=aggregate)
        return Item(label, _data, prediction=prediction)
    except SigscopeError as e:
        return Item(label, _data, error=error_line(e))
    except Exception as e:  # noqa: BLE001 - a broken upload must never take the page down
        return Item(label, _data, error=f"{label}: could not be classified ({error_line(e)})")


def inference_threads_now() -> int:
    """torch threads for this page's inference: the cores no running run on this machine holds
    (core.threads.inference_threads), so a classification does not stall behind training."""
    from core.threads import inference_threads
    from dashboard.engine import engine

    return inference_threads(engine().store)


def classify_upload(predictor: Predictor, upload: Upload, hop: float, aggregate: str, top_k: int,
                    variant: str = "") -> Item:
    """One batch file's Item: refused for its size unread, else classify_cached."""
    if upload.size > MAX_UPLOAD_BYTES:
        label = display_name(upload.name)
        return Item(label, b"", error=f"{label}: {upload.size / 2**20:.1f} MiB is over the "
                                      f"{MAX_UPLOAD_BYTES // 2**20} MiB upload limit")
    return classify_cached(predictor, upload.data, upload.name, hop, aggregate, top_k, variant, upload.digest)


def adapted_cached(predictor: Predictor, uploads: list[tuple[bytes, str]], hop: float
                   ) -> tuple[Predictor | None, str, str]:
    """(the run with BatchNorm statistics adapted to every upload's windows, a digest of those
    uploads, a one-line report or error); the adapted model is cached in this session per
    (run, contents, hop), so changing the shown file or top-k does not adapt again."""
    digest = hashlib.sha1()
    for data, name in uploads:
        digest.update(hashlib.sha1(data).digest() + name.encode())
    key = (_model_key(predictor), digest.hexdigest(), round(hop, 4))
    cache: dict = st.session_state.setdefault(ADAPT_KEY, {})
    if key not in cache:
        cache.clear()  # one adapted model per session is plenty
        try:
            from core.threads import compute_threads

            with compute_threads(inference_threads_now(), purpose="adapt"):
                result = adapt_to_uploads(predictor, uploads, hop)
            line = f"{result.model.adapted}" + (f"; left out: {'; '.join(result.skipped)}" if result.skipped else "")
            cache[key] = (result.model, line)
        except SigscopeError as e:
            cache[key] = (None, error_line(e))
    adapted, line = cache[key]
    return adapted, "adapted-" + digest.hexdigest()[:16], line


def batch_table(items: list[Item]) -> pd.DataFrame:
    rows = []
    for it in items:
        p = it.prediction
        if p is None:
            rows.append({"file": it.name, "label": None, "confidence": None, "margin": None, "entropy": None,
                         "windows": None, "duration_s": None, "runner_up": None, "warning": None, "error": it.error})
            continue
        second = p.top_k[1][0] if len(p.top_k) > 1 else None
        rows.append({"file": it.name, "label": p.label, "confidence": round(p.confidence, 4),
                     "margin": round(p.margin, 4), "entropy": round(p.entropy, 4), "windows": len(p.starts),
                     "duration_s": round(p.duration, 2), "runner_up": second,
                     "warning": "; ".join(p.warnings) or None, "error": None})
    return pd.DataFrame(rows)


# ---- one prediction in detail ------------------------------------------------------------
def _overlay(pred: Prediction) -> dict | None:
    """What to draw over the signal: MiniRocket's per-step contribution to the logit, else
    attention pooling weights, else the last layer's rollout (CLS models), else Grad-CAM."""
    if pred.contributions:
        c = pred.contributions
        return {"name": "contribution to the logit", "axis": "logit per step", "times": c["times"],
                "values": c["values"]}
    pooling = [a for a in pred.attention if a["kind"] == "pooling"]
    if pooling:
        w = pooling[-1]["weights"]
        return {"name": "attention pooling weight", "axis": "pooling weight (× uniform)", **w}
    selfs = [a for a in pred.attention if a["kind"] == "self"]
    if selfs:
        return {"name": "attention rollout", "axis": "rollout (× uniform)", **selfs[-1]["rollout"]}
    cams = [s for s in pred.saliency if s["method"] == "grad_cam"] or pred.saliency
    if cams:
        return {"name": "Grad-CAM" if cams[0]["method"] == "grad_cam" else "saliency", "axis": "relevance",
                "times": cams[0]["times"], "values": cams[0]["values"]}
    return None


@st.fragment
def detail_section(predictor: Predictor, items: list[Item]) -> None:
    """The file picker and one file's detail: a fragment, so picking another file, channel,
    layer or head redraws this part alone, not the batch above it."""
    index = 0
    if len(items) > 1:
        index = st.selectbox("Show file", range(len(items)), format_func=lambda i: items[i].name,
                             key="classify.show")
    st.subheader(items[index].name)
    show_prediction(predictor, items[index], key=f"classify.detail.{index}")


def show_prediction(predictor: Predictor, item: Item, key: str) -> None:
    """Metrics, playback, signal + spectrogram with the class band, top-k, attention/saliency."""
    pred = item.prediction
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("Prediction", pred.label)
    m2.metric("Confidence", f"{pred.confidence:.3f}")
    m3.metric("Margin (top-1 − top-2)", f"{pred.margin:.3f}")
    m4.metric("Entropy", f"{pred.entropy:.3f} nats")
    st.caption(f"{len(pred.starts)} window(s) of {pred.window_seconds:g} s every {pred.hop_seconds:g} s over "
               f"{pred.duration:.2f} s, combined by {'mean log-probability' if pred.aggregate == 'mean' else 'vote'}"
               + (f" · agrees with the file's label column on {100 * pred.window_accuracy:.1f}% of windows"
                  if pred.window_accuracy is not None else ""))
    for warning in pred.warnings:  # what is wrong with the signal first, then how sure the model is
        st.warning(warning, icon=":material/warning:")
    if pred.confidence < CONFIDENCE_FLOOR:
        st.warning(f"Unsure: the top class has p={pred.confidence:.2f}, below {CONFIDENCE_FLOOR:g}; the model does not "
                   "know well what this is — check the top classes below", icon=":material/help:")
    if pred.variant:
        st.caption(f":material/memory: Answered by the exported variant {pred.variant}, not the PyTorch model")
    if pred.members:
        st.caption(f":material/groups: The mean of {len(pred.members)} runs' probabilities; each alone said "
                   + ", ".join(f"{m['label']} ({m['confidence']:.2f})" for m in pred.members)
                   + ". Where it looked is the first run's explanation.")
    for note in pred.notes:
        if note != EXPLANATIONS_NEED_PYTORCH:  # said where the explanation would be, below
            st.info(note, icon=":material/info:")
    if pred.signal_kind == "audio":
        st.audio(item.data, format=_mime(item.data))
    track = pred.class_track()
    left, right = st.columns([3, 1])
    with left:
        if pred.signal.ndim == 2:  # IMU: one small panel per channel, the explanation as its own panel
            shown = None
            if pred.signal.shape[1] > cf.MAX_PANELS:
                names = list(pred.channel_names)
                shown = st.multiselect("Channels shown", range(len(names)), default=list(range(6)),
                                       format_func=lambda c: names[c], max_selections=cf.MAX_PANELS,
                                       key=f"{key}.channels",
                                       help=f"{len(names)} channels; up to {cf.MAX_PANELS} are drawn at once")
            st.plotly_chart(cf.channel_panels(pred.signal, pred.sample_rate, pred.channel_names, track,
                                              pred.class_names, _overlay(pred), shown),
                            width="stretch", key=f"{key}.signal")
        else:
            st.plotly_chart(cf.signal_with_classes(pred.signal, pred.sample_rate, pred.channel_names, track,
                                                   pred.class_names, _overlay(pred)),
                            width="stretch", key=f"{key}.signal")
        if pred.signal_kind == "audio":
            cfg = dataclasses.replace(predictor.config.data, features="logmel")
            from core.data.features import featurize_audio
            logmel = featurize_audio(pred.signal, pred.sample_rate, cfg)
            st.plotly_chart(cf.spectrogram_with_classes(logmel, cfg.hop_length / pred.sample_rate, track,
                                                        pred.class_names), width="stretch", key=f"{key}.spec")
    with right:
        st.markdown("**Top classes**")
        st.plotly_chart(cf.topk_bar(pred.top_k, pred.class_names), width="stretch", key=f"{key}.topk")
    if len(pred.starts) > 1:
        with st.expander("Probabilities per window", expanded=pred.signal_kind == "imu"):
            st.plotly_chart(cf.window_probabilities(pred.starts / pred.sample_rate, pred.window_probs,
                                                    pred.class_names), width="stretch", key=f"{key}.wprobs")
    if pred.variant:
        st.subheader("Where the model looked")
        st.info(f"Not available for {pred.variant}: {EXPLANATIONS_NEED_PYTORCH}.", icon=":material/visibility_off:")
    if pred.attention:
        attention_section(predictor, pred, key)
    if pred.contributions:
        contributions_section(predictor, pred.contributions, key)
    if pred.saliency:
        st.subheader("Where the model looked: Grad-CAM and saliency")
        st.caption("This model has no attention. Grad-CAM reads the last convolutional block "
                   f"({next((s['layer'] for s in pred.saliency if s['method'] == 'grad_cam'), 'none')}); "
                   "input-gradient saliency is |d logit / d input|. Both are per window, scaled to max 1, "
                   "averaged where windows overlap.")
        st.plotly_chart(cf.saliency_curves(pred.saliency), width="stretch", key=f"{key}.sal")


def contributions_section(predictor: Predictor, c: dict, key: str) -> None:
    """MiniRocket: which dilations (and channels) carried the decision, as bars that sum to the
    logit's feature part; the per-step map is the curve drawn with the signal above."""
    st.subheader("What carried the decision: dilations and time steps")
    total = c["logit"] - c["baseline"]
    several = c["windows"] > 1
    st.caption(f"MiniRocket's head is linear in its features, so the logit for the predicted class "
               f"({', '.join(c['classes'])}) splits exactly into contributions, measured from {c['reference']}: "
               f"logit {c['logit']:.3f} − baseline {c['baseline']:.3f} = {total:.3f}. The bars sum to it, and so "
               "does the curve drawn with the signal above (one value per input step; positive where the features "
               "that count for the class fired more often than at the reference). Dilation d spaces a kernel's 9 "
               "taps d samples apart (it spans 8d + 1 samples)."
               + (f" Each of the {c['windows']} windows is explained toward its own predicted class; the bars are "
                  "their means." if several else ""))
    rate = predictor.sample_rate  # 1.0: a UEA/UCR series, counted in samples
    labels = [f"{d} ({8 * d + 1} samples)" if rate == 1.0 else f"{d} ({(8 * d + 1) / rate:.3g} s)"
              for d in c["dilations"]]
    columns = st.columns([3, 2]) if len(c["by_channel"]) > 1 else [st.container()]
    with columns[0]:
        st.plotly_chart(cf.contribution_bars(labels, c["by_dilation"], "dilation (span)"), width="stretch",
                        key=f"{key}.dilations")
    if len(c["by_channel"]) > 1:
        with columns[1]:
            st.plotly_chart(cf.contribution_bars(c["channels"], c["by_channel"], "channel"), width="stretch",
                            key=f"{key}.channels_contrib")
            st.caption("A feature's contribution is shared equally by the channels its kernel sums.")


def attention_section(predictor: Predictor, pred: Prediction, key: str) -> None:
    """Layer and head selectors, a heads-by-time heat map and one window's attention matrix."""
    from core.explain import stitch
    from core.infer import window_attention

    st.subheader("Attention")
    selfs = [(i, layer) for i, layer in enumerate(pred.layers) if layer.kind == "self"]
    if not selfs:
        return
    c1, c2, c3 = st.columns(3)
    names = [layer.layer for _, layer in selfs]
    chosen = c1.selectbox("Layer", range(len(selfs)), format_func=lambda i: f"{i + 1}: {names[i]}",
                          index=len(selfs) - 1, key=f"{key}.layer")
    _, layer = selfs[chosen]
    heads = ["mean of heads"] + [f"head {h + 1}" for h in range(layer.heads)]
    head = c2.selectbox("Head", range(len(heads)), format_func=lambda i: heads[i], key=f"{key}.head")
    spans = predictor.spans(layer.n_tokens)
    start_s = pred.starts / pred.sample_rate
    rows, labels = [], []
    times, rollout = stitch(layer.rollout, spans, start_s, pred.duration)
    rows.append(rollout)
    labels.append(f"rollout to layer {chosen + 1}")
    for h in range(layer.heads):
        rows.append(stitch(layer.received[:, h, :], spans, start_s, pred.duration)[1])
        labels.append(f"head {h + 1}")
    st.plotly_chart(cf.attention_over_time(times, np.array(rows), labels,
                                           "Attention each second receives (mean over queries; 1 = uniform)"),
                    width="stretch", key=f"{key}.heads")
    st.caption(f"{layer.heads} heads, {layer.shape[0]}×{layer.shape[1]} attention per window"
               + (" (a CLS token at index 0 is left out of the time axis)" if layer.has_cls else "")
               + f"; one token ≈ {predictor.input_shape[-1] / layer.n_tokens * predictor.step_seconds:.3f} s."
               " Rollout multiplies the head-averaged attention (plus identity) of every layer up to this one and "
               "reads it where the model summarizes (CLS token, pooling weights or the mean).")
    best = int(pred.window_probs.max(axis=1).argmax())
    window = best
    if len(pred.starts) > 1:
        window = c3.slider("Window", 1, len(pred.starts), best + 1, key=f"{key}.window",
                           help="the matrix below is this window's; defaults to the most confident one") - 1
    full = window_attention(predictor, pred, window)
    matrices = [f for f in full if f.kind == "self"][chosen].weights_full[0]  # (H, T, T)
    matrix = matrices.mean(axis=0) if head == 0 else matrices[head - 1]
    cls = int(layer.has_cls)
    token_times = pred.starts[window] / pred.sample_rate + (spans[:, 0] + spans[:, 1]) / 2
    st.plotly_chart(cf.attention_matrix(matrix[cls:, cls:], token_times,
                                        f"Window {window + 1} ({token_times[0]:.2f}–{token_times[-1]:.2f} s): "
                                        f"{heads[head]}, layer {chosen + 1}", recording_end=pred.duration),
                    width="stretch", key=f"{key}.matrix")


def _mime(data: bytes) -> str:
    from core.infer import upload_suffix

    return {".wav": "audio/wav", ".flac": "audio/flac", ".ogg": "audio/ogg", ".mp3": "audio/mpeg"}.get(
        upload_suffix(data), "audio/wav")
