"""Constructor checks shared by the blocks: each raises ConfigError naming the value
and what is allowed, so a bad hyperparameter fails at build time with a clear line."""
from __future__ import annotations

import numbers

from core.errors import ConfigError


def check_int(owner: str, name: str, value: int, low: int = 1, high: int | None = None) -> int:
    """`value` must be an int in [low, high] (high None = unbounded)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(f"{owner}: {name}={value!r} must be an integer")
    value = int(value)
    if value < low or (high is not None and value > high):
        allowed = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ConfigError(f"{owner}: {name}={value} is out of range: allowed {allowed}")
    return value


def check_prob(owner: str, name: str, value: float, high_inclusive: bool = False) -> float:
    """`value` must be a probability in [0, 1) (or [0, 1] when high_inclusive)."""
    ok = 0.0 <= float(value) <= 1.0 if high_inclusive else 0.0 <= float(value) < 1.0
    if not ok:
        bound = "1]" if high_inclusive else "1)"
        raise ConfigError(f"{owner}: {name}={value} is out of range: allowed [0, {bound}")
    return float(value)


def check_divisible(owner: str, name: str, value: int, by_name: str, by: int) -> None:
    """`value` must be a multiple of `by` (e.g. a width split across heads or groups)."""
    if value % by != 0:
        raise ConfigError(f"{owner}: {name}={value} must be divisible by {by_name}={by}; "
                          f"pick a {name} that is a multiple of {by}")


def check_choice(owner: str, name: str, value, choices: tuple):
    if value not in choices:
        raise ConfigError(f"{owner}: {name}={value!r} is not allowed: pick one of "
                          + ", ".join(repr(c) for c in choices))
    return value
