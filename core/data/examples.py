"""What every source hands the pipeline before splitting, normalizing and augmenting."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Examples:
    """Labelled examples of one source, not yet split or normalized.

    x:        (N, C, T) float32 windows for IMU sources, or (N, T) float32 mono waveforms
              for audio sources (`signal == "audio"`), all of one length.
    y:        (N,) int64 class indices into `class_names`.
    groups:   (N,) str subject / speaker / recording group of each example (for group splits).
    ids:      (N,) str a stable name of each example (file name, "subject:session:start").
    fixed_test: (N,) bool, the source's standard test set where it has one (FSDD takes 0-4,
              UEA TEST file), else None.
    train_only: (N,) bool, examples that may only ever be trained on (synthetic speech added
              to a real dataset): every split puts them in train and draws val/test from the
              rest; None when there are none.
    """

    x: np.ndarray
    y: np.ndarray
    groups: np.ndarray
    ids: np.ndarray
    class_names: list[str]
    channel_names: list[str]
    sample_rate: float
    signal: str  # "imu" | "audio"
    info: dict = field(default_factory=dict)
    fixed_test: np.ndarray | None = None
    train_only: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.y)
        for name in ("x", "groups", "ids"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"Examples.{name} has {len(getattr(self, name))} rows, y has {n}")
        if self.fixed_test is not None and len(self.fixed_test) != n:
            raise ValueError("Examples.fixed_test must have one flag per example")
        if self.train_only is not None and len(self.train_only) != n:
            raise ValueError("Examples.train_only must have one flag per example")

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, index: np.ndarray) -> "Examples":
        """The examples at `index` (same classes and metadata)."""
        return Examples(
            x=self.x[index], y=self.y[index], groups=self.groups[index], ids=self.ids[index],
            class_names=self.class_names, channel_names=self.channel_names,
            sample_rate=self.sample_rate, signal=self.signal, info=self.info,
            fixed_test=None if self.fixed_test is None else self.fixed_test[index],
            train_only=None if self.train_only is None else self.train_only[index])

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.y, minlength=len(self.class_names))
        return {name: int(c) for name, c in zip(self.class_names, counts)}
