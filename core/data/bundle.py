"""What a resolved dataset spec gives the trainer, the profiler and inference."""
from __future__ import annotations

from dataclasses import dataclass, field

from torch.utils.data import Dataset


@dataclass
class DatasetBundle:
    """train/val/test are torch Datasets yielding (x: float32 tensor of `input_shape`, y: int).

    `input_kind` is "imu", "waveform" or "spectrogram" and matches the registry's kinds;
    `normalization` is JSON-able and stored with a run so inference reproduces it exactly;
    `info` carries what a person should know (skipped lines, counts per class, split sizes).
    """

    train: Dataset
    val: Dataset
    test: Dataset
    class_names: list[str]
    channel_names: list[str]
    sample_rate: float
    input_kind: str
    input_shape: tuple[int, ...]
    normalization: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)
