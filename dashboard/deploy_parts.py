"""Page parts for Deploy: the export's choices (read from core.deploy's typed enums, as the
CLI's are), the export job that runs in the background, and the view of the last export
(runs/<id>/deploy/report.json): the variant table, size and latency bars, parity and folding,
on-device estimates and a download button for every file.

An export takes seconds to minutes (torch.export, ONNX, int8 calibration, QAT fine-tuning,
timing), so it runs in a worker thread of this server (`ExportJobs`, held in
st.cache_resource) and the page polls its progress from a fragment. The worker never calls
st.*: it calls core.deploy.export.export_run and records the progress the engine reports.
"""
from __future__ import annotations

import json
import os
import threading
import time
import traceback
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from core.deploy.quantize import DEFAULT_CALIBRATION, ExportFormat, QuantMode
from core.errors import SigscopeError
from core.paths import DEPLOY_DIR
from core.paths import DEPLOY_REPORT as REPORT_FILE
from dashboard.figures import human_bytes

# the choices, from the one typed place the CLI reads them from (core.deploy.quantize)
FORMATS: tuple[ExportFormat, ...] = tuple(ExportFormat)
QUANT_MODES: tuple[QuantMode, ...] = tuple(m for m in QuantMode if m is not QuantMode.NONE)
CALIBRATED = (QuantMode.STATIC, QuantMode.QAT)  # the modes that read --calibration
FORMAT_HELP = {ExportFormat.ONNX: "model.onnx for ONNX Runtime (every int8 variant and the bundle are made from it)",
               ExportFormat.TORCH: "model.pt2 (torch.export program; TorchScript where torch.export fails)"}
MODE_HELP = {QuantMode.DYNAMIC: "int8 weights, activations quantized per batch; no calibration",
             QuantMode.STATIC: "int8 weights and activations, ranges calibrated on training windows",
             QuantMode.QAT: "static int8 after a few epochs of quantization-aware fine-tuning"}
BUNDLE = Path("bundle") / "bundle.zip"  # under the run folder; deploy/ itself is replaced whole by each export
POLL_SECONDS = 1.0
MIME = {".onnx": "application/octet-stream", ".json": "application/json", ".zip": "application/zip"}


# ---- the choices ----------------------------------------------------------------------------
@dataclass(frozen=True)
class ExportChoices:
    """What the page asks export_run for: the CLI's options, one field each."""

    formats: tuple[str, ...] = tuple(f.value for f in FORMATS)
    quantize: tuple[str, ...] = (QuantMode.DYNAMIC.value,)
    calibration: int | None = None  # only read with static / qat
    qat_epochs: int = 3
    bundle: bool = True
    threads: int = 1
    repeats: int = 20
    memory: bool = True

    def key(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    def export_kwargs(self, run_dir: Path) -> dict:
        """Keyword arguments for core.deploy.export.export_run."""
        from core.deploy.measure import MeasureSettings

        calibrated = any(QuantMode(m) in CALIBRATED for m in self.quantize)
        return {"formats": list(self.formats), "quantize": list(self.quantize),
                "calibration": self.calibration if calibrated else None, "qat_epochs": int(self.qat_epochs),
                "bundle": Path(run_dir) / BUNDLE if self.bundle else None,
                "settings": MeasureSettings(threads=int(self.threads), repeats=int(self.repeats),
                                            memory=bool(self.memory))}


def measure_defaults() -> dict:
    from core.deploy.measure import MeasureSettings
    return asdict(MeasureSettings())


def choices_form(run_id: str, n_train: int | None, key: str = "deploy") -> ExportChoices:
    """The export's widgets; formats and int8 modes are the engine's enums."""
    defaults = measure_defaults()
    c1, c2 = st.columns(2)
    formats = c1.multiselect("Formats", [f.value for f in FORMATS], default=[f.value for f in FORMATS],
                             key=f"{key}.formats", placeholder="pick at least one",
                             help="; ".join(f"**{f.value}**: {FORMAT_HELP.get(f, '')}" for f in FORMATS))
    modes = c2.multiselect("int8 variants", [m.value for m in QUANT_MODES], default=[QuantMode.DYNAMIC.value],
                           key=f"{key}.quantize", placeholder="none (fp32 only)",
                           help="; ".join(f"**{m.value}**: {MODE_HELP.get(m, '')}" for m in QUANT_MODES))
    calibrated = any(QuantMode(m) in CALIBRATED for m in modes)
    c3, c4, c5 = st.columns(3, vertical_alignment="bottom")
    default_calibration = min(DEFAULT_CALIBRATION, n_train) if n_train else DEFAULT_CALIBRATION
    calibration = c3.number_input(
        "Calibration windows", min_value=1, max_value=n_train or None, value=default_calibration, step=32,
        key=f"{key}.calibration.{run_id}", disabled=not calibrated,
        help=("training windows the static / QAT activation ranges are measured on"
              + (f" (this run's training split has {n_train})" if n_train else "")
              + "; only static and qat use them"))
    qat_epochs = c4.number_input("QAT epochs", min_value=1, max_value=100, value=3, step=1, key=f"{key}.qat_epochs",
                                 disabled=QuantMode.QAT.value not in modes,
                                 help="fine-tuning epochs with int8 rounding simulated (qat only)")
    with c5:
        bundle = st.toggle("Also write the bundle", value=True, key=f"{key}.bundle",
                           help="a zip with model.onnx, the input pipeline and a predict.py that needs only numpy "
                                "and onnxruntime (needs the onnx format)")
    with st.expander("Measurement"):
        m1, m2, m3 = st.columns(3, vertical_alignment="bottom")
        threads = m1.number_input("Threads", min_value=1, max_value=max(1, os.cpu_count() or 1),
                                  value=int(defaults["threads"]), key=f"{key}.threads",
                                  help="threads for both torch and ONNX Runtime while timing")
        repeats = m2.number_input("Timed repeats", min_value=1, max_value=1000, value=int(defaults["repeats"]),
                                  key=f"{key}.repeats", help="each latency is the median of this many calls")
        with m3:
            memory = st.toggle("Peak memory", value=bool(defaults["memory"]), key=f"{key}.memory",
                               help="load each variant in a fresh process and read its peak RSS (1-3 s a variant)")
    return ExportChoices(formats=tuple(formats), quantize=tuple(modes), calibration=int(calibration),
                         qat_epochs=int(qat_epochs), bundle=bool(bundle), threads=int(threads),
                         repeats=int(repeats), memory=bool(memory))


# ---- the background job ---------------------------------------------------------------------
@dataclass
class ExportJob:
    """One export in the background: its progress as the engine reports it, then its end."""

    run_id: str
    choices: ExportChoices
    submitted_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    fraction: float = 0.0
    text: str = "waiting for the export before it to finish"
    error: str = ""
    report_path: Path | None = None
    done: threading.Event = field(default_factory=threading.Event, repr=False)

    def progress(self, fraction: float, text: str) -> None:  # called from the worker thread
        self.fraction, self.text = float(fraction), str(text)

    @property
    def state(self) -> str:
        if self.done.is_set():
            return "failed" if self.error else "done"
        return "running" if self.started_at is not None else "queued"


class ExportJobs:
    """The exports of one server, one at a time (they time models: two at once would skew both);
    the newest `kept` jobs are remembered so a reload finds a running export again."""

    def __init__(self, store, kept: int = 32) -> None:
        self.store = store
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sigscope-export")
        self._jobs: OrderedDict[tuple[str, str], ExportJob] = OrderedDict()
        self._lock = threading.Lock()
        self._kept = kept

    def start(self, run_id: str, run_dir: Path, choices: ExportChoices) -> ExportJob:
        """Queue an export of `run_id` with `choices`; the same export still under way is returned
        instead of started twice."""
        key = (run_id, choices.key())
        with self._lock:
            job = self._jobs.get(key)
            if job is not None and not job.done.is_set():
                return job
            job = ExportJob(run_id, choices)
            self._jobs[key] = job
            self._jobs.move_to_end(key)
            while len(self._jobs) > self._kept:
                self._jobs.popitem(last=False)
        self._pool.submit(self._run, job, Path(run_dir))
        return job

    def latest(self, run_id: str) -> ExportJob | None:
        with self._lock:
            jobs = [j for (rid, _), j in self._jobs.items() if rid == run_id]
        return max(jobs, key=lambda j: j.submitted_at) if jobs else None

    def _run(self, job: ExportJob, run_dir: Path) -> None:
        from core.deploy.export import export_run

        job.started_at = time.time()
        job.progress(0.0, "starting")
        try:
            report = export_run(job.run_id, store=self.store, progress=job.progress,
                                **job.choices.export_kwargs(run_dir))
            job.report_path = Path(report.folder) / REPORT_FILE
        except SigscopeError as e:
            job.error = " ".join(str(e).split())
        except Exception as e:  # noqa: BLE001 - a bug in the engine is a message here, not a dead thread
            traceback.print_exc()
            message = " ".join(str(e).split())[:300]
            job.error = f"an unexpected {type(e).__name__}: {message} (the server log has the trace)"
        finally:
            job.finished_at = time.time()
            job.done.set()

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


# Behind the cache, one ExportJobs per runs folder for the life of the process (as the engine
# does): the menu's "Clear caches" must not orphan an export that is still running.
_JOBS: dict[str, ExportJobs] = {}
_JOBS_LOCK = threading.Lock()


@st.cache_resource(show_spinner=False)
def _jobs_for(runs_dir: str) -> ExportJobs:
    from dashboard.engine import engine

    with _JOBS_LOCK:
        if runs_dir not in _JOBS:
            _JOBS[runs_dir] = ExportJobs(engine().store)
        return _JOBS[runs_dir]


def export_jobs(store) -> ExportJobs:
    """This server's export jobs over `store`'s runs folder."""
    return _jobs_for(str(store.runs_dir))


@st.fragment(run_every=POLL_SECONDS)
def progress_view(jobs: ExportJobs, run_id: str) -> None:
    """The running export's progress, polled; the whole page redraws once it ends."""
    job = jobs.latest(run_id)
    if job is None or job.done.is_set():
        st.rerun()
    if job.state == "queued":
        st.progress(0.0, text="queued: another export is running (one at a time, so timings stay fair)")
    else:
        elapsed = time.time() - (job.started_at or time.time())
        st.progress(min(1.0, job.fraction), text=f"{job.text} · {elapsed:.0f} s")


# ---- the last export, as report.json has it ---------------------------------------------------
@dataclass
class SavedReport:
    report: dict
    path: Path
    made_at: float  # report.json's modification time


def saved_report(run_dir: str | Path) -> SavedReport | None:
    """runs/<id>/deploy/report.json, parsed once per version of the file; None when there is none.
    A file that cannot be read raises SigscopeError."""
    path = Path(run_dir) / DEPLOY_DIR / REPORT_FILE
    try:
        stat = path.stat()
    except OSError:
        return None
    return SavedReport(_parse_report(str(path), stat.st_mtime_ns), path, stat.st_mtime)


@st.cache_data(show_spinner=False, max_entries=16)
def _parse_report(path: str, mtime_ns: int) -> dict:
    try:
        report = json.loads(Path(path).read_text())
        if not isinstance(report, dict) or not isinstance(report.get("variants"), list):
            raise ValueError("no variants")
        return report
    except (OSError, ValueError) as e:
        raise SigscopeError(f"{path} cannot be read ({type(e).__name__}: {e}); export the run again") from None


def _kib(n) -> float | None:
    return None if n is None else n / 1024


def _ops_text(v: dict) -> str:
    ops = (v.get("quantized_ops") or {}).get("quantized") or {}
    if v.get("quantized_ops") is None:
        return "— (fp32)"
    return ", ".join(f"{k} ×{n}" for k, n in sorted(ops.items())) or "none"


def variants_table(report: dict) -> pd.DataFrame:
    """One row per variant: what it costs here and how well it still classifies (file names are
    on the download buttons, weight bytes in the size chart)."""
    rows = []
    for v in report["variants"]:
        ms = v.get("latency_ms") or {}
        peak = v.get("peak_memory_bytes")
        rows.append({"variant": v["label"], "size (KiB)": _kib(v["size_bytes"]), "b1 (ms)": ms.get("1"),
                     "b32 (ms)": ms.get("32"), "peak memory (MiB)": None if peak is None else peak / 2**20,
                     "accuracy": v["accuracy"], "macro-F1": v["macro_f1"], "agreement": v["agreement"],
                     "int8 operators": _ops_text(v)})
    return pd.DataFrame(rows)


VARIANT_COLUMNS = {
    "size (KiB)": st.column_config.NumberColumn(format="%.1f", help="the file as written"),
    "b1 (ms)": st.column_config.NumberColumn(format="%.3f", help="median latency on this machine at batch 1"),
    "b32 (ms)": st.column_config.NumberColumn(format="%.2f", help="median latency on this machine at batch 32"),
    "peak memory (MiB)": st.column_config.NumberColumn(
        format="%.1f", help="peak RSS growth of a fresh process loading it and running batch 1 (empty: not measured)"),
    "accuracy": st.column_config.NumberColumn(format="%.4f", help="on the run's whole test split"),
    "macro-F1": st.column_config.NumberColumn(format="%.4f", help="on the run's whole test split"),
    "agreement": st.column_config.NumberColumn(
        format="%.4f", help="share of test windows whose top class equals the fp32 PyTorch model's"),
    "int8 operators": st.column_config.TextColumn(width="medium", help="operators that run in int8, by type"),
}


def parity_table(report: dict) -> pd.DataFrame:
    """Each artifact against the eager PyTorch model: the largest logit difference, top-1
    agreement, and the window lengths and batch sizes it was checked at."""
    def listed(checks: list[dict], what: str) -> str:
        return ", ".join(str(n) for n in sorted({c[what] for c in checks}))

    rows = []
    for p in report["export"].get("parity") or []:
        rows.append({"artifact": p["artifact"], "max |logit diff|": f"{p['max_abs_diff']:.2e}",
                     "tolerance": f"{p['tolerance']:.2e}", "top-1 agreement": f"{p['top1_agreement']:.4f}",
                     "windows": p["n_windows"], "lengths checked": listed(p["checks"], "length"),
                     "batches": listed(p["checks"], "batch"), "passed": "yes" if p["passed"] else "NO"})
    return pd.DataFrame(rows)


def footprint_table(report: dict) -> pd.DataFrame:
    """One row per variant: the flash and RAM it needs, and whether that fits each target that
    states a limit."""
    rows = []
    for v in report["variants"]:
        dev = v.get("device")
        if not dev:
            continue
        row = {"variant": v["label"], "flash (KiB)": _kib(dev["flash_bytes"]), "RAM (KiB)": _kib(dev["ram_bytes"])}
        for t in dev["targets"]:
            if t.get("fits_flash") is None and t.get("fits_ram") is None:
                continue  # a phone or a Pi: memory is not the limit
            misses = [what for what, fits in (("flash", t.get("fits_flash")), ("RAM", t.get("fits_ram")))
                      if fits is False]
            row[t["target"]] = f"{' and '.join(misses)} too large" if misses else "fits"
        rows.append(row)
    return pd.DataFrame(rows)


def device_latency_table(report: dict) -> pd.DataFrame:
    """Estimated latency (ms, batch 1) per reference target, one column per variant, with the
    same estimate for this machine and what was measured here below them."""
    variants = [v for v in report["variants"] if v.get("device")]
    if not variants:
        return pd.DataFrame()
    targets = [t["target"] for t in variants[0]["device"]["targets"]]
    rows = []
    for name in targets:
        row = {"where": name}
        for v in variants:
            row[v["label"]] = next((t["latency_ms"] for t in v["device"]["targets"] if t["target"] == name), None)
        rows.append(row)
    for label, key in (("this machine, estimated", "estimated_here_ms"),
                       ("this machine, measured", "measured_here_ms")):
        rows.append({"where": label, **{v["label"]: v["device"].get(key) for v in variants}})
    return pd.DataFrame(rows)


def _bars_height(report: dict) -> int:
    return 150 + 48 * len(report["variants"])


def size_figure(report: dict) -> go.Figure:
    """File size and weight bytes per variant (horizontal: variant names stay readable)."""
    variants = list(reversed(report["variants"]))  # the table's first row on top
    labels = [v["label"] for v in variants]
    fig = go.Figure()
    fig.add_bar(y=labels, x=[(v.get("weight_bytes") or 0) / 1024 for v in variants], name="weights",
                orientation="h", marker_color="#8fa8c8", hovertemplate="%{y}: %{x:.1f} KiB of weights<extra></extra>")
    fig.add_bar(y=labels, x=[v["size_bytes"] / 1024 for v in variants], name="file", orientation="h",
                marker_color="#2a6fb0", text=[human_bytes(v["size_bytes"]) for v in variants], textposition="auto",
                hovertemplate="%{y}: %{x:.1f} KiB file<extra></extra>")
    fig.update_layout(title="Size per variant", barmode="group", height=_bars_height(report),
                      margin=dict(l=10, r=10, t=40, b=10), xaxis_title="KiB",
                      legend=dict(orientation="h", y=-0.25, traceorder="reversed"))
    return fig


def latency_figure(report: dict) -> go.Figure:
    """Median latency per variant at batch 1 and batch 32 (side by side: their scales differ)."""
    variants = list(reversed(report["variants"]))
    labels = [v["label"] for v in variants]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("batch 1", "batch 32"), shared_yaxes=True,
                        horizontal_spacing=0.04)
    for col, batch, colour in ((1, "1", "#2a6fb0"), (2, "32", "#d07a2a")):
        values = [(v.get("latency_ms") or {}).get(batch) for v in variants]
        fig.add_bar(y=labels, x=values, orientation="h", name=f"batch {batch}", marker_color=colour,
                    showlegend=False, text=[f"{x:.3g} ms" if x is not None else "" for x in values],
                    textposition="auto", hovertemplate=f"%{{y}}: %{{x:.3f}} ms at batch {batch}<extra></extra>",
                    row=1, col=col)
        fig.update_xaxes(title_text="ms", row=1, col=col)
    threads = report.get("settings", {}).get("threads", 1)
    fig.update_layout(title=f"Latency on this machine (median, {threads} thread{'s' if threads != 1 else ''})",
                      height=_bars_height(report), margin=dict(l=10, r=10, t=60, b=10))
    return fig


@dataclass
class DeployFile:
    name: str
    what: str
    path: Path
    size: int


def deploy_files(saved: SavedReport) -> list[DeployFile]:
    """The bundle (when this export wrote one), then every file the export wrote: each
    variant's, model data beside them, report.json."""
    report, folder = saved.report, saved.path.parent
    labels = {v["file"]: v["label"] for v in report["variants"]}
    torch_file = report["export"].get("torch")
    if torch_file:
        labels.setdefault(torch_file, f"PyTorch ({report['export'].get('torch_kind') or 'artifact'})")
    labels[REPORT_FILE] = "everything measured, as JSON"
    files = []
    bundle = Path(report["bundle"]) if report.get("bundle") else None
    if bundle is not None and bundle.is_file():
        files.append(DeployFile("bundle.zip", "standalone: model.onnx, the input pipeline and a predict.py needing "
                                "only numpy and onnxruntime", bundle, bundle.stat().st_size))
    for path in sorted(folder.iterdir(), key=lambda p: (p.name != "model.onnx", p.name == REPORT_FILE, p.name)):
        if path.is_file() and not path.name.startswith("."):
            what = labels.get(path.name) or (f"external weights of {path.name[:-5]}" if path.name.endswith(".data")
                                             else "")
            files.append(DeployFile(path.name, what, path, path.stat().st_size))
    return files


def _reader(path: Path):
    """The download's bytes, read when the person clicks (not on every rerun)."""
    return lambda: path.read_bytes()


def downloads(saved: SavedReport, run_name: str, key: str = "deploy.dl") -> None:
    files = deploy_files(saved)
    cols = st.columns(3)
    stem = "".join(c if c.isalnum() or c in "-_." else "-" for c in run_name) or "model"
    for i, f in enumerate(files):
        bundle = f.path.suffix == ".zip"
        cols[i % 3].download_button(f"{f.name} ({human_bytes(f.size)})", _reader(f.path),
                                    file_name=f"{stem}-bundle.zip" if bundle else f.path.name,
                                    mime=MIME.get(f.path.suffix, "application/octet-stream"), help=f.what or None,
                                    key=f"{key}.{f.path.name}", on_click="ignore", icon=":material/download:",
                                    type="primary" if bundle else "secondary", width="stretch")


def _when(ts: float) -> str:
    from dashboard.series import human_seconds
    return f"{datetime.fromtimestamp(ts):%Y-%m-%d %H:%M} ({human_seconds(time.time() - ts)} ago)"


def report_view(saved: SavedReport, run_name: str, key: str = "deploy") -> None:
    """Everything the last export measured, as report.json has it."""
    report = saved.report
    export = report["export"]
    axis = export["time_axis"]
    variants = ", ".join(v["label"] for v in report["variants"])
    st.subheader("Last export")
    settings = report.get("settings") or {}
    shape = ", ".join(map(str, report["input_shape"]))
    st.caption(f"Made {_when(saved.made_at)} · {variants} · input (batch, {shape})"
               f" · {report.get('flops', 0) / 1e6:.2f} MFLOPs at batch 1 · timed with {settings.get('threads', 1)} "
               f"thread(s), median of {settings.get('repeats', '?')}"
               + (f" · calibrated on {report['calibration']} training windows" if report.get("calibration") else ""))
    ref = report.get("reference") or {}
    if ref:
        st.caption(f"Reference (eager PyTorch, unfused): test accuracy {ref['accuracy']:.4f}, "
                   f"macro-F1 {ref['macro_f1']:.4f}")
    st.dataframe(variants_table(report), hide_index=True, width="stretch", column_config=VARIANT_COLUMNS,
                 key=f"{key}.variants")
    notes = [(v["label"], v.get("notes") or []) for v in report["variants"]]
    # the fixed time axis has its own line below
    notes.append(("export", [n for n in report.get("notes") or [] if not (axis["reason"] and axis["reason"] in n)]))
    if any(lines for _, lines in notes):
        st.markdown("\n".join(f"- **{who}** — {' · '.join(lines)}" for who, lines in notes if lines))

    left, right = st.columns(2)
    left.plotly_chart(size_figure(report), width="stretch", key=f"{key}.size")
    right.plotly_chart(latency_figure(report), width="stretch", key=f"{key}.latency")

    st.subheader("Does it still compute the same thing?")
    if export.get("parity"):
        st.dataframe(parity_table(report), hide_index=True, width="stretch", key=f"{key}.parity")
    fold = export["fold"]
    folded = fold.get("folded") or []
    if folded or fold.get("skipped"):
        st.markdown(f"**Conv + BatchNorm folding:** {len(folded)} pair(s) folded"
                    + (f" ({', '.join(folded)})" if folded else "")
                    + f", output moved by at most {fold.get('max_abs_diff', 0):.2e}"
                    + (f"; not folded: {'; '.join(fold['skipped'])}" if fold.get("skipped") else ""))
    else:
        st.markdown("**Conv + BatchNorm folding:** no convolution feeds a BatchNorm in this model: nothing to fold")
    st.markdown("**Time axis:** " + (f"dynamic, any window from {axis['low']} to {axis['high']} steps"
                                     if axis["dynamic"] else f"fixed at {axis['length']} steps — {axis['reason']}"))
    if report.get("qat"):
        qat = report["qat"]
        history = qat.get("history") or []
        last = history[-1] if history else {}
        st.markdown(f"**Quantization-aware fine-tuning:** {qat.get('epochs')} epoch(s)"
                    + (f", last epoch val accuracy (int8 simulated) {last['val_accuracy']:.4f}"
                       if isinstance(last.get("val_accuracy"), (int, float)) else "")
                    + (f" — {qat['method']}" if qat.get("method") else ""))

    st.subheader("On a device")
    st.caption("Flash = weight bytes; RAM = peak live activations of one batch-1 forward (÷4 where activations are "
               "int8); latency = FLOPs ÷ (the target's peak rate × efficiency): an order of magnitude, beside the "
               "same formula for this machine and the latency measured here.")
    footprint = footprint_table(report)
    st.markdown("**Flash and RAM**")
    st.dataframe(footprint, hide_index=True, width="stretch", key=f"{key}.footprint",
                 column_config={c: st.column_config.NumberColumn(format="%.1f") for c in ("flash (KiB)", "RAM (KiB)")})
    latency = device_latency_table(report)
    st.markdown("**Latency at batch 1 (ms)**")
    st.dataframe(latency, hide_index=True, width="stretch", key=f"{key}.device_latency",
                 column_config={c: st.column_config.NumberColumn(format="%.3g") for c in latency.columns
                                if c != "where"})
    if report.get("targets"):
        with st.expander("Reference targets and where their figures come from"):
            for t in report["targets"]:
                st.markdown(f"**{t['name']}** — {t['description']}  \n{t['source']}")

    st.subheader("Download")
    downloads(saved, run_name or report.get("run_id") or "model", key=f"{key}.dl")
