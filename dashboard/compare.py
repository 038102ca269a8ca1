"""The Runs page's parts: the runs table, overlays of selected runs, final metrics side by
side, config diff, and one run's confusion matrix, per-class report, downloads, delete."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import streamlit as st

from core.compare import config_diff, dataset_key, run_quality
from core.profiling.mfu import mfu_percent, run_utilization
from core.store import Store
from core.train.metrics import DIRECTIONS
from dashboard import figures
from dashboard.series import downsample, ema, human_seconds

SUMMARY_METRICS = ("val_accuracy", "test_accuracy", "test_macro_f1", "val_loss")
TABLE_COLUMNS = {
    "created": st.column_config.DatetimeColumn("created", format="YYYY-MM-DD HH:mm:ss"),
    "duration_s": st.column_config.NumberColumn("duration (s)", format="%.0f"),
    "val_accuracy": st.column_config.NumberColumn("val acc", format="%.3f"),
    "test_accuracy": st.column_config.NumberColumn("test acc", format="%.3f"),
    "test_macro_f1": st.column_config.NumberColumn("test F1", format="%.3f"),
    "val_loss": st.column_config.NumberColumn("val loss", format="%.4f"),
    "mfu": st.column_config.NumberColumn("MFU", format="%.1f %%",
                                         help="model-FLOPs utilisation of the last epoch (percent of the device's "
                                              "measured matmul peak)"),
    "error": st.column_config.TextColumn("message", width="medium"),
}
OVERLAY_METRICS = {"val/loss": "validation loss", "val/accuracy": "validation accuracy",
                   "val/macro_f1": "validation macro-F1", "train/loss": "training loss (per epoch)",
                   "train/accuracy": "training accuracy", "step/loss": "training loss (per step)",
                   "step/lr": "learning rate"}
COMPARE_METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "val_macro_f1", "val_ece",
                   "test_loss", "test_accuracy", "test_macro_f1", "test_ece", "test_mean_confidence")


def runs_table(store: Store, runs: list[dict]) -> pd.DataFrame:
    """One row per run: id, name, status, model, data, progress, timing, headline metrics."""
    rows = []
    for r in runs:
        finals = store.final_metrics(r["id"])
        cfg = r["config"]
        started, finished = r.get("started_at"), r.get("finished_at")
        rows.append({
            "id": r["id"], "name": r.get("name") or "", "status": r["status"],
            "model": cfg.get("model", {}).get("name", "?"), "data": dataset_key(r),
            "epochs": f"{r.get('epoch') or 0}/{r.get('total_epochs') or cfg.get('train', {}).get('epochs', '?')}",
            "created": pd.Timestamp(r["created_at"], unit="s"),
            "duration_s": (finished or time.time()) - started if started else None,
            **{k: finals.get(k) for k in SUMMARY_METRICS},
            "mfu": mfu_percent(run_utilization(r, finals)["mfu"]),
            "error": r.get("error") or "",
        })
    frame = pd.DataFrame(rows)
    for column in (*SUMMARY_METRICS, "duration_s", "mfu"):
        frame[column] = pd.to_numeric(frame[column])  # all-None columns read as numbers, not "None"
    return frame


def filter_table(table: pd.DataFrame, statuses: list[str], models: list[str], search: str,
                 sort_by: str) -> pd.DataFrame:
    """Rows matching every filter, sorted (newest / best first)."""
    out = table
    if statuses:
        out = out[out["status"].isin(statuses)]
    if models:
        out = out[out["model"].isin(models)]
    if search.strip():
        needle = search.strip().lower()
        text = out["id"] + " " + out["name"] + " " + out["data"] + " " + out["model"]
        out = out[text.str.lower().str.contains(needle, regex=False)]
    ascending = sort_by in ("name", "val_loss")
    return out.sort_values(sort_by, ascending=ascending, na_position="last", kind="stable")


def _short(run: dict) -> str:
    return run.get("name") or run["id"]


def default_selection(runs: list[dict]) -> list[str]:
    """The newest completed run and the newest other completed run on the same data and class
    set (runs on other data are not compared by default); the newest run when none completed."""
    done = [r for r in runs if r["status"] == "completed"]
    if not done:
        return [runs[0]["id"]]
    first = done[0]
    same = [r for r in done[1:] if dataset_key(r) == dataset_key(first)]
    return [first["id"]] + [r["id"] for r in same[:1]]


def split_comparable(runs: list[dict]) -> tuple[list[dict], list[dict]]:
    """(runs on the first run's data and class set, the others)."""
    key = dataset_key(runs[0])
    return [r for r in runs if dataset_key(r) == key], [r for r in runs if dataset_key(r) != key]


def short_label(run: dict) -> str:
    return f"{_short(run)} ({run['id'][-6:]})"


def overlay_section(store: Store, runs: list[dict]) -> None:
    """The same metric of every selected run on one chart."""
    c1, c2 = st.columns([3, 1])
    key = c1.selectbox("Metric", list(OVERLAY_METRICS), format_func=OVERLAY_METRICS.get, key="runs.overlay_metric")
    smoothing = c2.slider("Smoothing", 0.0, 0.99, 0.0, 0.01, key="runs.overlay_smoothing",
                          disabled=not key.startswith("step/"))
    split, metric = key.split("/")
    series, smooth = {}, {}
    for run in runs:
        rows = store.metric_series(run["id"], keys=[metric], split=split)
        xs = [r["step"] if split == "step" else (r["epoch"] or 0) + 1 for r in rows]
        ys = [r["value"] for r in rows]
        label = short_label(run)
        series[label] = downsample(xs, ys)
        smooth[label] = downsample(xs, ema(ys, smoothing))[1]
    st.plotly_chart(figures.curves(series, OVERLAY_METRICS[key], smoothing if split == "step" else 0.0,
                                   x_title="step" if split == "step" else "epoch", smoothed=smooth),
                    width="stretch", key="runs.overlay")


def final_metrics_section(store: Store, runs: list[dict]) -> None:
    """Final value of each headline metric, one column per run, best per row highlighted."""
    data = {short_label(r): store.final_metrics(r["id"]) for r in runs}
    guessing = {short_label(r) for r in runs if run_quality(store, r).near_chance}
    frame = pd.DataFrame({label: {k: finals.get(k) for k in COMPARE_METRICS} for label, finals in data.items()})
    frame = frame.dropna(how="all")
    if frame.empty:
        st.caption("The selected runs have no epoch metrics yet.")
        return

    def best(row):
        # only a metric with a better direction is highlighted (mean confidence has none), and a
        # chance-level model's calibration is no achievement: it is left out of the ECE rows
        direction = DIRECTIONS.get(row.name.split("_", 1)[1])
        values = row.astype(float)
        if row.name.endswith("ece"):
            values = values.where(~values.index.isin(list(guessing)))
        if direction is None or values.isna().all() or values.notna().sum() < 2:
            return [""] * len(row)
        target = values.min() if direction == "min" else values.max()
        return ["font-weight: bold; background-color: #e3f1e6" if v == target else "" for v in values]

    st.markdown("**Final metrics** (the best of each metric that has a better direction in bold)")
    st.dataframe(frame.style.apply(best, axis=1).format("{:.4f}", na_rep="—"), width="stretch",
                 height=36 * (len(frame) + 1) + 3)  # every row visible, no inner scroll


def config_diff_section(runs: list[dict]) -> None:
    if len(runs) < 2:
        st.caption("Select two or more runs to see where their configs differ.")
        return
    rows = config_diff({short_label(r): r["config"] for r in runs})
    st.markdown("**Config differences**")
    if not rows:
        st.caption("The selected runs have identical configs (defaults filled in).")
        return
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")


def run_detail(store: Store, run: dict, engine) -> None:
    """Status, confusion matrix and per-class report, downloads and delete for one run."""
    from dashboard.parts import resume_view, status_banner

    status_banner(run)
    reports = store.reports(run["id"], key="confusion_matrix")
    split_names = [s for s in ("test", "val", "train") if any(r["split"] == s for r in reports)]
    if split_names:
        c1, c2 = st.columns([1, 1])
        split = c1.radio("Split", split_names, horizontal=True, key="runs.cm_split",
                         help="the latest report of that split (test: the best checkpoint, at the end)")
        normalize = c2.toggle("Normalize rows", True, key="runs.cm_norm")
        matrix = [r for r in reports if r["split"] == split][-1]
        per_class = [r for r in store.reports(run["id"], key="per_class", split=split)]
        names = per_class[-1]["value"]["class_names"] if per_class else [str(i) for i in range(len(matrix["value"]))]
        left, right = st.columns([1, 1])
        left.plotly_chart(figures.confusion_figure(matrix["value"], names, normalize,
                                                   f"Confusion matrix ({split}, epoch {(matrix['epoch'] or 0) + 1})"),
                          width="stretch", key="runs.cm")
        if per_class:
            pc = per_class[-1]["value"]
            frame = pd.DataFrame({"class": pc["class_names"], "precision": pc["precision"], "recall": pc["recall"],
                                  "f1": pc["f1"], "support": pc["support"]})
            right.markdown(f"**Per-class report ({split})**")
            three = st.column_config.NumberColumn(format="%.3f")  # not a pandas Styler: it costs a tenth of a second
            right.dataframe(frame, hide_index=True, width="stretch",
                            column_config={"precision": three, "recall": three, "f1": three})
    else:
        st.caption("No confusion matrix yet: it is written at the end of each epoch.")

    d1, d2, d3, d4 = st.columns(4)
    d1.download_button("Config JSON", json.dumps(run["config"], indent=2, sort_keys=True),
                       file_name=f"{run['id']}-config.json", mime="application/json", key="runs.dl_config",
                       width="stretch")
    artifacts = {a["kind"]: a["path"] for a in store.artifacts(run["id"])}
    for col, kind, label in ((d2, "checkpoint_best", "Best checkpoint"), (d3, "checkpoint_last", "Last checkpoint")):
        path = Path(artifacts.get(kind, ""))
        if artifacts.get(kind) and path.is_file():
            col.download_button(f"{label} ({path.stat().st_size / 2**20:.1f} MiB)", lambda p=path: p.read_bytes(),
                                file_name=f"{run['id']}-{path.name}", mime="application/octet-stream",
                                key=f"runs.dl_{kind}", width="stretch")
        else:
            col.button(f"{label}: none", disabled=True, key=f"runs.dl_{kind}_none", width="stretch")
    with d4.popover("Delete run", width="stretch"):
        st.write(f"Delete **{run['id']}**, its metrics and its folder (checkpoints)? This cannot be undone.")
        if st.button("Delete for good", type="primary", key="runs.delete"):
            if run["status"] in ("queued", "running"):
                st.error(f"{run['id']} is {run['status']}: cancel it first (Monitor or Train's queue).")
            else:
                try:
                    store.delete_run(run["id"])
                except RuntimeError as e:
                    st.error(str(e))
                else:
                    st.session_state.pop("runs.focus", None)
                    st.toast(f"Deleted {run['id']}")
                    st.rerun()
    r1, r2 = st.columns([1, 2])
    if r1.button("Edit and re-run this config", key="runs.rerun", width="stretch",
                 help="open Train with every field filled from this run's config; change what you like and start "
                      "it as a new run"):
        st.session_state["handoff.run"] = {"config": run["config"],
                                           "note": f"From run **{run['id']}** ({run.get('name') or 'unnamed'}): its "
                                                   "config, ready to edit and start as a new run."}
        st.switch_page("pages/train.py")
    with r2:
        resume_view(run, "runs")
    st.caption(f"Run folder: `{run.get('run_dir')}` · created {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(run['created_at']))}"
               + (f" · took {human_seconds((run.get('finished_at') or time.time()) - run['started_at'])}"
                  if run.get("started_at") else ""))
