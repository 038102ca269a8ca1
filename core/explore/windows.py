"""Every window of a dataset as one table row, and a run's model inputs for a split.

    table = window_table(bundle)                 # ids, split, labels, groups, source, start_s
    table.frame()                                # the same as a pandas DataFrame
    x = split_inputs(predictor, bundle, "test")  # (N, *input_shape), normalized as the run was scored

A window's recording and start time are read from its id (what the source gives,
`SignalDataset.ids`): IMU CSV / HAPT / WISDM ids are "subject:session:start_sample" (start_s =
start_sample / sample_rate, source "subject S, session N"); audio ids are the file name
("0_george_0.wav", or "name.wav@start_sample" for a file cut into several clips); anything else
(synthetic, UEA series) keeps its id as its source and an unknown start (nan).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from core.config import SPLITS

_STREAM_ID = re.compile(r"^(?P<subject>[^:]+):(?P<session>[^:]+):(?P<start>\d+)$")
_AUDIO_ID = re.compile(r"^(?P<file>.+?)(?:@(?P<start>\d+))?$")



def group_key(text: str):
    """Sort key for subject/speaker ids: '2' before '10'; names sort as text after numbers."""
    return (0, int(text), "") if text.isdigit() else (1, 0, text)

@dataclass
class WindowTable:
    """One row per window, in split order (train, val, test), each split in its dataset's order."""

    ids: np.ndarray      # (N,) str window ids
    split: np.ndarray    # (N,) str "train" | "val" | "test"
    labels: np.ndarray   # (N,) int true class index
    groups: np.ndarray   # (N,) str subject / speaker
    source: np.ndarray   # (N,) str recording ("subject 2, session 0" / file name)
    start_s: np.ndarray  # (N,) float start time in its recording (nan when unknown)
    class_names: list[str]

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def label_names(self) -> np.ndarray:
        """(N,) str the true class name of each window."""
        return np.asarray(self.class_names, dtype=object)[self.labels].astype(str) if len(self) else \
            np.zeros(0, dtype=str)

    def counts(self) -> dict[str, dict[str, int]]:
        """Windows per split and class: {split: {class name: n}} (splits present only)."""
        out = {}
        for split in SPLITS:
            labels = self.labels[self.split == split]
            if len(labels):
                out[split] = dict(zip(self.class_names,
                                      np.bincount(labels, minlength=len(self.class_names)).tolist()))
        return out

    def subset(self, index: np.ndarray) -> "WindowTable":
        """The rows at `index` (an int index or a boolean mask)."""
        return WindowTable(self.ids[index], self.split[index], self.labels[index], self.groups[index],
                           self.source[index], self.start_s[index], list(self.class_names))

    def frame(self):
        """The table as a pandas DataFrame: id, split, label (class name), label_index, group, source, start_s."""
        import pandas as pd

        return pd.DataFrame({"id": self.ids, "split": self.split, "label": self.label_names,
                             "label_index": self.labels, "group": self.groups, "source": self.source,
                             "start_s": self.start_s})


def split_inputs(predictor, bundle, split: str) -> np.ndarray:
    """The run's model inputs (N, *input_shape) for one split of `bundle`, normalized with its
    stored training statistics: `core.infer.evaluate.split_inputs`, the one place a split becomes
    model inputs (scoring reads it too). Imported when called, so `core.explore` stays light."""
    from core.infer.evaluate import split_inputs as inputs

    return inputs(predictor, bundle, split)


def window_origin(window_id: str, signal: str, sample_rate: float) -> tuple[str, float]:
    """(recording, start seconds) of a window from its id; (id, nan) when the id does not say."""
    if signal == "audio":
        match = _AUDIO_ID.match(window_id)
        start = match["start"] if match else None
        return (match["file"] if match else window_id), (int(start) / sample_rate if start else 0.0)
    match = _STREAM_ID.match(window_id)
    if match and sample_rate:
        return f"subject {match['subject']}, session {match['session']}", int(match["start"]) / sample_rate
    return window_id, float("nan")


def window_table(bundle, splits: tuple[str, ...] = SPLITS) -> WindowTable:
    """The windows of `bundle`'s splits (a DatasetBundle from `core.data.load`), one row each."""
    signal = bundle.info.get("signal") or ("audio" if bundle.input_kind != "imu" else "imu")
    ids, split, labels, groups = [], [], [], []
    for name in splits:
        ds = getattr(bundle, name)
        ids.append(np.asarray(ds.ids).astype(str))
        split.append(np.full(len(ds), name, dtype=object))
        labels.append(np.asarray(ds.y, dtype=np.int64))
        groups.append(np.asarray(ds.groups).astype(str))
    ids = np.concatenate(ids) if ids else np.zeros(0, dtype=str)
    origins = [window_origin(i, signal, bundle.sample_rate) for i in ids]
    return WindowTable(ids=ids, split=np.concatenate(split).astype(str) if split else np.zeros(0, dtype=str),
                       labels=np.concatenate(labels) if labels else np.zeros(0, np.int64),
                       groups=np.concatenate(groups) if groups else np.zeros(0, dtype=str),
                       source=np.array([o[0] for o in origins], dtype=str),
                       start_s=np.array([o[1] for o in origins], dtype=np.float64),
                       class_names=list(bundle.class_names))


__all__ = ["SPLITS", "WindowTable", "split_inputs", "window_origin", "window_table"]
