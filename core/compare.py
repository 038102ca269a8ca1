"""Comparing runs: their final metrics side by side and where their resolved configs differ.

A stored config keeps only what its run set (a quick-start run stores no hyperparameter at its
default), so configs are compared *resolved*: every choice that applies, with the spec's value
where the config leaves it out (core.spec.params). Equal settings never show as different.

    compare_runs(store, ["RUN_A", "RUN_B"])   # {"runs": [...], "metrics": [...], "config_diff": [...], "note"}
    config_diff({"a": cfg_a, "b": cfg_b})      # [{"setting": key, "a": value, "b": value}, ...]

Runs are comparable when they share a data source and class set; others are compared on
their metrics only, and `note` says so (their losses are on different scales).

    run_quality(store, run)                    # dataset, held-out accuracy and macro-F1, chance level
    run_quality(store, run).warning()          # words when the model is near chance, else ""
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import ConfigError, SigscopeError

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
    """What makes two runs' metrics comparable, in a few words: the data source, the dataset's
    name where the source holds several, and its class set ('uea ArrowHead', 'hapt (basic6)')."""
    return data_words(run.get("config", {}).get("data", {}))


def data_words(data: dict) -> str:
    """A data config (its dict) in a few words, as dataset_key names a run's data."""
    options = data.get("options") or {}
    name, classes = options.get("name"), options.get("classes")
    return " ".join(str(p) for p in (data.get("source", "?"), name) if p) + (f" ({classes})" if classes else "")


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


NEAR_CHANCE = 0.1  # within this share of the way from chance to perfect, a model is guessing
CONFIDENCE_FLOOR = 0.5  # a prediction below it is called unsure in words


@dataclass
class RunQuality:
    """How good a finished run is on its own held-out data, in a line a person can read."""

    dataset: str
    classes: int | None
    accuracy: float | None  # test accuracy (validation where no test split was scored)
    macro_f1: float | None
    split: str  # "test" | "val" | ""
    chance: float | None

    @property
    def near_chance(self) -> bool:
        if self.accuracy is None or not self.chance:
            return False
        return self.accuracy < self.chance + NEAR_CHANCE * (1 - self.chance)

    def label(self) -> str:
        """'hapt · test acc 0.953 · F1 0.951' for pickers."""
        if self.accuracy is None:
            return f"{self.dataset} · not scored"
        return (f"{self.dataset} · {self.split} acc {self.accuracy:.3f}"
                + (f" · F1 {self.macro_f1:.3f}" if self.macro_f1 is not None else ""))

    def warning(self) -> str:
        """The words when the model is guessing, else ''."""
        if not self.near_chance:
            return ""
        return (f"This model scores {self.accuracy:.2f} on its {self.split} split, about chance ({self.chance:.2f} for "
                f"{self.classes} classes): its answers are close to guesses. Train it longer, or pick another run.")


def run_quality(store, run: dict) -> RunQuality:
    """Dataset, held-out accuracy and macro-F1 of a run, and its chance level (1 / classes)."""
    final = store.final_metrics(run["id"])
    split = "test" if final.get("test_accuracy") is not None else "val" if final.get("val_accuracy") is not None else ""
    from core.train.checkpoints import read_run_meta

    try:
        classes = len(read_run_meta(Path(run["run_dir"]))["class_names"]) or None
    except (SigscopeError, TypeError, KeyError):  # no or a damaged classes.json: no chance level to judge by
        classes = None
    return RunQuality(dataset_key(run), classes, final.get(f"{split}_accuracy") if split else None,
                      final.get(f"{split}_macro_f1") if split else None, split, 1 / classes if classes else None)
