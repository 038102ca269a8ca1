"""The source registry: each source is a function (cfg, paths) -> Examples plus a description.

    register_source("synthetic_imu", load_fn, "Generated class-conditional IMU signals", signal="imu")
    list_sources()  ->  [{"name": ..., "signal": ..., "description": ..., "options": {...}}, ...]
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from core.config import DataConfig
from core.errors import DataError
from core.data.examples import Examples


@dataclass(frozen=True)
class SourceSpec:
    """One data source: how to load it and what a person can set."""

    name: str
    load: Callable[[DataConfig], Examples]
    description: str
    signal: str  # "imu" | "audio"
    options: dict = field(default_factory=dict)  # option name -> help text
    default_data: str = ""  # what is read when cfg.path is None
    files: Callable[[DataConfig], list] | None = None  # input files (cache key); None = not cached
    nominal_rate: float | None = None  # Hz, to read window/stride given in seconds ("2.56s")


_SOURCES: dict[str, SourceSpec] = {}


def register_source(spec: SourceSpec) -> SourceSpec:
    _SOURCES[spec.name] = spec
    return spec


def get_source(name: str) -> SourceSpec:
    _ensure_loaded()
    if name not in _SOURCES:
        raise DataError(f"unknown data source {name!r}; known: {', '.join(sorted(_SOURCES))} "
                        "(see `python -m core data list`)")
    return _SOURCES[name]


def list_sources() -> list[dict]:
    """Every source as a JSON-able dict: name, signal, description, options, default data."""
    _ensure_loaded()
    return [{"name": s.name, "signal": s.signal, "description": s.description,
             "options": dict(s.options), "default_data": s.default_data}
            for s in sorted(_SOURCES.values(), key=lambda s: s.name)]


def _ensure_loaded() -> None:
    # Importing a source module registers it; keep the import list in one place.
    import core.data.synthetic  # noqa: F401
    for module in ("core.data.imu_csv", "core.data.hapt", "core.data.wisdm", "core.data.uea",
                   "core.data.audio_folder"):
        try:
            __import__(module)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise
