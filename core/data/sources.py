"""The source registry: each source is a function (cfg) -> Examples plus what a person can set.

    register_source(SourceSpec("synthetic_imu", load_fn, "Generated ...", signal="imu", options=(Param(...), ...)))
    list_sources()  ->  [{"name": ..., "signal": ..., "description": ..., "options": [...]}, ...]

A source's options are typed `core.spec.Param` records declared once in its module: the
loader reads its defaults and checked values through `source_options`, and the forms,
`--set data.options.NAME=...`, validation and `python -m core options` read the same records.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from core.config import DataConfig
from core.errors import DataError
from core.data.examples import Examples
from core.spec import Param


@dataclass(frozen=True)
class SourceSpec:
    """One data source: how to load it and what a person can set.

    options: its typed options (data.options.<name>).
    windowed: streams cut into data.window/data.stride windows (False: fixed-length series or clips).
    suggested: data-config values that suit it (e.g. FSDD: features "stack4", split "fixed"); the
        Train form applies them when the source is picked, Build sizes models with them.
    """

    name: str
    load: Callable[[DataConfig], Examples]
    description: str
    signal: str  # "imu" | "audio"
    options: tuple[Param, ...] = ()
    default_data: str = ""  # what is read when cfg.path is None
    files: Callable[[DataConfig], list] | None = None  # input files (cache key); None = not cached
    nominal_rate: float | None = None  # Hz, to read window/stride given in seconds ("2.56s")
    windowed: bool = True
    suggested: dict = field(default_factory=dict)
    needs_path: bool = False  # no bundled data: a path must be given

    def __post_init__(self) -> None:
        if self.signal == "imu":  # IMU streams are read raw: a form switching from audio must not keep its features
            object.__setattr__(self, "suggested", {"features": "raw", **self.suggested})

    def option(self, name: str) -> Param:
        for p in self.options:
            if p.name == name:
                return p
        raise DataError(f"{self.name}: no option {name!r}; it has: {', '.join(p.name for p in self.options)}")

    def defaults(self) -> dict:
        return {p.name: p.default for p in self.options}


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


def source_names() -> list[str]:
    _ensure_loaded()
    return sorted(_SOURCES)


def list_sources() -> list[dict]:
    """Every source as a JSON-able dict: name, signal, description, typed options, default data."""
    _ensure_loaded()
    return [{"name": s.name, "signal": s.signal, "description": s.description, "windowed": s.windowed,
             "options": [p.to_dict() for p in s.options], "default_data": s.default_data,
             "needs_path": s.needs_path, "suggested": dict(s.suggested)}
            for s in sorted(_SOURCES.values(), key=lambda s: s.name)]


def source_options(cfg: DataConfig, spec: SourceSpec | None = None) -> dict:
    """cfg.options checked against the source's typed options: every option with its value
    (the default where not given), canonical; an unknown name or a bad value raises."""
    spec = spec or get_source(cfg.source)
    known = {p.name: p for p in spec.options}
    unknown = sorted(set(cfg.options) - set(known))
    if unknown:
        raise DataError(f"{cfg.source}: unknown option(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return {name: p.coerce(cfg.options.get(name, p.default), f"data.options.{name}") for name, p in known.items()}


def full_option(what: str) -> Param:
    """The `full` option of sources with a full dataset under ../shared/data."""
    return Param("full", "bool", False, f"read the full dataset ({what}) instead of the bundled sample",
                 label="Full dataset", sweep=False)


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
