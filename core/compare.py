"""Comparing runs: their final metrics side by side and where their resolved configs differ.

A stored config keeps only what its run set (a quick-start run stores no hyperparameter at its
default), so configs are compared *resolved*: every choice that applies, with the spec's value
where the config leaves it out (core.spec.params). Equal settings never show as different.

    compare_runs(store, ["RUN_A", "RUN_B"])   # {"runs": [...], "metrics": [...], "config_diff": [...], "note"}
    config_diff({"a": cfg_a, "b": cfg_b})      # [{"setting": key, "a": value, "b": value}, ...]

Runs are comparable when they share a data source and class set; others are compared on
their metrics only, and `note` says so (their losses are on different scales).
"""
from __future__ import annotations

import json
from typing import Any

from core.errors import ConfigError

MISSING = "—"  # a setting that does not apply to a run (another model's hyperparameter, ...)


def flatten(config: dict, prefix: str = "") -> dict[str, Any]:
    """Nested dict -> {"a.b.c": value} (lists kept as values)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def resolved_settings(config: dict) -> dict[str, Any]:
    """{key: value} of every choice that applies to `config`, defaults filled in; a config the
    spec cannot read (an old run's removed option) falls back to its stored keys."""
    from core import spec

    try:
        return {e.key: e.value for e in spec.params(config) if e.active}
    except Exception:  # noqa: BLE001 - an old or hand-edited config is still shown as stored
        return flatten(config)


def _cell(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def config_diff(configs: dict[str, dict]) -> list[dict]:
    """Rows {"setting": key, label: value, ...} for the settings whose resolved values differ."""
    flat = {label: resolved_settings(cfg) for label, cfg in configs.items()}
    keys = list(dict.fromkeys(k for f in flat.values() for k in f))  # declaration order
    rows = []
    for key in keys:
        values = [f.get(key, MISSING) for f in flat.values()]
        if len({_cell(v) for v in values}) > 1:
            rows.append({"setting": key, **{label: _cell(f.get(key, MISSING)) for label, f in flat.items()}})
    return rows


def dataset_key(run: dict) -> str:
    """What makes two runs' metrics comparable: the data source and its class set."""
    data = run.get("config", {}).get("data", {})
    classes = (data.get("options") or {}).get("classes")
    return str(data.get("source", "?")) + (f" ({classes})" if classes else "")


def compare_runs(store, run_ids: list[str]) -> dict:
    """Final metrics of each run side by side and the resolved config diff; ConfigError for
    an unknown id or fewer than two runs."""
    if len(run_ids) < 2:
        raise ConfigError("compare needs two or more runs: `python -m core runs compare A B [C ...]`")
    runs = []
    for run_id in run_ids:
        run = store.get_run(run_id)
        if run is None:
            raise ConfigError(f"no run {run_id!r}; see `python -m core runs list`")
        runs.append(run)
    finals = {r["id"]: store.final_metrics(r["id"]) for r in runs}
    keys = [k for k in dict.fromkeys(k for f in finals.values() for k in f)
            if "/" not in k and k.split("_", 1)[0] in ("val", "test")]
    metrics = [{"metric": k, **{r["id"]: finals[r["id"]].get(k) for r in runs}} for k in keys]
    datasets = {dataset_key(r) for r in runs}
    note = "" if len(datasets) == 1 else (
        f"these runs are on different data ({', '.join(sorted(datasets))}): their metrics are side by side, but "
        "losses and accuracies over different class sets do not compare")
    return {"runs": [{"id": r["id"], "name": r["name"], "status": r["status"], "dataset": dataset_key(r),
                      "model": r["config"].get("model", {}).get("name")} for r in runs],
            "metrics": metrics, "config_diff": config_diff({r["id"]: r["config"] for r in runs}), "note": note}
