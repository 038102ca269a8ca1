"""Marks a person puts on a dataset's windows in Explore, stored per dataset, for new runs.

    add_mark(store, run_config.data, "2:0:320", "relabel", "SITTING")
    add_mark(store, run_config.data, "2:0:384", "exclude")
    config = with_marks(run_config, list_marks(store, run_config.data))   # data.exclude / data.relabel filled

A mark names a window by its id, so it belongs to the data as windowed (source, path, source
options, window, stride, ...): the same recordings cut another way are another dataset. A run
that uses marks records them in its config (`data.exclude`, `data.relabel`), so it stays
reproducible after the marks change; they act on its train and validation windows only.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from core.config import DataConfig, RunConfig
from core.errors import ConfigError

MARK_ACTIONS = {"exclude": "left out of new runs' training and validation windows",
                "relabel": "trained as another class in new runs"}


@dataclass
class Mark:
    window_id: str
    action: str          # one of MARK_ACTIONS
    label: str | None    # the class a relabel trains it as
    note: str
    created_at: float


def dataset_id(data: DataConfig | dict) -> str:
    """The windowed data a mark belongs to, as a stable string (the source's parameters that
    decide which windows exist and what they are called)."""
    from core.data.pipeline import _SOURCE_PARAMS, _windows_in_samples
    from core.data.sources import get_source

    cfg = data if isinstance(data, DataConfig) else DataConfig.from_dict(data)
    try:
        cfg = _windows_in_samples(cfg, get_source(cfg.source))
    except Exception:  # noqa: BLE001 — an unknown source or rate: the config as written still names it
        pass
    return json.dumps({name: getattr(cfg, name) for name in _SOURCE_PARAMS}, sort_keys=True, default=str)


def add_mark(store, data: DataConfig | dict, window_id: str, action: str, label: str | None = None,
             note: str = "") -> Mark:
    """Mark one window (a window has one mark: a new one replaces the old)."""
    if action not in MARK_ACTIONS:
        raise ConfigError(f"mark action {action!r}; use one of {', '.join(MARK_ACTIONS)}")
    if action == "relabel" and not label:
        raise ConfigError("a relabel mark needs the class the window should be trained as")
    if not str(window_id).strip():
        raise ConfigError("a mark needs the window's id")
    label = label if action == "relabel" else None
    store.put_mark(dataset_id(data), str(window_id), action, label, note)
    return next(m for m in list_marks(store, data) if m.window_id == str(window_id))


def list_marks(store, data: DataConfig | dict) -> list[Mark]:
    return [Mark(r["window_id"], r["action"], r["label"], r["note"] or "", r["created_at"])
            for r in store.marks(dataset_id(data))]


def remove_mark(store, data: DataConfig | dict, window_id: str) -> bool:
    return store.delete_mark(dataset_id(data), str(window_id))


def with_marks(config: RunConfig, marks: list[Mark]) -> RunConfig:
    """The config with its data's exclude / relabel set from `marks` (replacing what it had)."""
    exclude = [m.window_id for m in marks if m.action == "exclude"]
    relabel = {m.window_id: m.label for m in marks if m.action == "relabel"}
    return dataclasses.replace(config, data=dataclasses.replace(config.data, exclude=exclude, relabel=relabel))


def marks_words(marks: list[Mark]) -> str:
    """'3 excluded, 2 relabelled' (or 'no marks')."""
    excluded = sum(m.action == "exclude" for m in marks)
    relabelled = sum(m.action == "relabel" for m in marks)
    parts = [f"{excluded} excluded" if excluded else "", f"{relabelled} relabelled" if relabelled else ""]
    return ", ".join(p for p in parts if p) or "no marks"
