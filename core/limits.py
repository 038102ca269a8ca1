"""The limits on what one file, upload or request may make Sigscope do, declared once.

Work is bounded before it is done: each reader checks these while it reads (bytes, line
length, rows, channels, duration, windows, decompression ratio), and the profiler caps a
shape and batch from its own memory estimate before allocating anything. Every refusal
names the limit and how to change it.

Each limit is a typed `Param`; a person changes one with an environment variable named
`SIGSCOPE_` + the limit's name in capitals (`SIGSCOPE_MAX_ROWS=5000000`), which is checked
like any other value (a bad one is a ConfigError naming the variable).

    lim = limits()            # the limits in force now (defaults + environment)
    lim.max_rows              # 2_000_000
    how_to_raise("max_rows")  # "set SIGSCOPE_MAX_ROWS to raise it"
"""
from __future__ import annotations

import os
from dataclasses import dataclass, fields

from core.config import param

ENV_PREFIX = "SIGSCOPE_"


@dataclass(frozen=True)
class Limits:
    max_upload_mib: int = param(50, "int", "largest file a person may upload or classify", low=1, high=4096,
                                unit="MiB")
    max_line_bytes: int = param(1_000_000, "int", "longest line of a CSV (a file on one line is refused "
                                "while it is read)", low=1_000, high=1_000_000_000, unit="bytes")
    max_rows: int = param(2_000_000, "int", "most rows of a CSV read for classifying (about 11 h at 50 Hz)",
                          low=1, high=1_000_000_000, unit="rows")
    max_columns: int = param(1_000, "int", "most columns (channels) of a CSV", low=1, high=100_000)
    max_abs_value: float = param(1e9, "float", "largest |value| of a CSV's signal columns (any IMU unit, even raw "
                                 "24-bit sensor counts, stays far below; beyond it float32 statistics overflow)",
                                 low=1.0, high=1e18)
    max_audio_seconds: float = param(600.0, "float", "longest recording classified", low=0.1, high=86_400.0,
                                     unit="s")
    max_audio_peak: float = param(100.0, "float", "largest |sample| of float audio, which is expected in [-1, 1] "
                                  "(integer-scaled floats such as +-32768 are refused before their spectrogram "
                                  "overflows)", low=1.0, high=1e6)
    min_clip_fraction: float = param(0.125, "float", "shortest recording classified, as a fraction of the run's "
                                     "clip (shorter but above it is zero-padded, with a note)", low=0.0, high=1.0)
    max_windows: int = param(20_000, "int", "most windows classified from one file", low=1, high=10_000_000)
    max_explained_windows: int = param(600, "int", "most windows explained (Grad-CAM + saliency, about 8x the "
                                       "cost of classifying a window); a longer file is classified without them, "
                                       "with a note", low=0, high=10_000_000)
    max_gzip_ratio: float = param(100.0, "float", "largest decompressed/compressed size ratio of a .gz "
                                  "(a gzip bomb is refused while it is decompressed)", low=1.0, high=100_000.0)
    max_profile_memory_mib: int = param(8_192, "int", "most memory the profiler may allocate for one shape "
                                        "and batch (checked from its own estimate before allocating)",
                                        low=16, high=1_048_576, unit="MiB")
    max_input_values: int = param(20_000_000, "int", "most values in one model input (channels x samples, or "
                                  "planes x bands x frames) a run's classes.json may declare", low=1,
                                  high=10_000_000_000, unit="values")

    @property
    def max_upload_bytes(self) -> int:
        return self.max_upload_mib * 2**20


def _parse(name: str, text: str):
    """An environment value checked by its Param like any other value (type, finite, range)."""
    p = next(f.metadata["param"] for f in fields(Limits) if f.name == name)
    return p.coerce(text.strip(), ENV_PREFIX + name.upper())


def limits() -> Limits:
    """The limits in force: defaults, overridden by `SIGSCOPE_<NAME>` environment variables."""
    given = {f.name: os.environ[ENV_PREFIX + f.name.upper()] for f in fields(Limits)
             if os.environ.get(ENV_PREFIX + f.name.upper(), "").strip()}
    return Limits(**{name: _parse(name, text) for name, text in given.items()})


def how_to_raise(name: str) -> str:
    """The words every refusal ends with: how to change the limit it hit."""
    return f"set {ENV_PREFIX}{name.upper()} to change the limit"
