"""Near-duplicates and outliers of a dataset, by distance in an embedding.

    pairs = near_duplicates(embedding, top=50)   # [NearDuplicate(i, j, distance, labels_differ)], closest first
    pairs = near_duplicates(embedding, different_labels_only=True)   # only pairs whose labels disagree
    odd = outliers(embedding, top=50)            # [Outlier(i, score)], most isolated first

`embedding` is a `core.explore.embed.Embedding` (or anything with `.vectors` (N, D) and a
`.table` with `labels`, `source` and `start_s`, one row per vector); `i`, `j` index its rows.
Distances are Euclidean on standardized vectors (every dimension scaled to unit variance over
the embedding), so no single high-variance feature decides what is "close".

Pairs of windows cut from the same recording are skipped by default: consecutive windows of a
stream overlap (a 50 % stride shares half their samples) and windows of one steady activity
(lying still) are near-identical by nature, so they would fill the whole list and say nothing.
The pairs worth a look are the close ones from different recordings — above all those with
different labels (`labels_differ`): the same signal given two classes is a labelling question,
and the same clip in two recordings or speakers can leak between splits. On real IMU data the
plain list fills with windows of the same still posture (LAYING on bundled HAPT: every one of
the ten closest pairs), so a page wants `different_labels_only=True` beside it.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from core.errors import ConfigError

# Neighbours examined per window when looking for its nearest one from another recording:
# a stream's own windows crowd the first few places.
SEARCH_NEIGHBOURS = 32
OUTLIER_NEIGHBOURS = 10


class NearDuplicate(NamedTuple):
    i: int                # row of the embedding (i < j)
    j: int
    distance: float       # Euclidean, standardized vectors
    labels_differ: bool   # the two windows carry different labels: the interesting ones


class Outlier(NamedTuple):
    i: int                # row of the embedding
    score: float          # mean distance to its nearest neighbours (standardized vectors)


def standardized(vectors: np.ndarray) -> np.ndarray:
    """(N, D) float64 with every dimension at zero mean and unit variance (constant dims stay 0)."""
    x = np.asarray(vectors, dtype=np.float64)
    if x.ndim != 2:
        raise ConfigError(f"an embedding's vectors are (windows, dimensions); got shape {x.shape}")
    if not np.isfinite(x).all():
        bad = int((~np.isfinite(x).all(axis=1)).sum())
        raise ConfigError(f"the embedding has NaN or infinite values in {bad} window(s); "
                          "embed the run again (a model with NaN weights cannot be explored)")
    std = x.std(axis=0)
    return (x - x.mean(axis=0)) / np.where(std > 0, std, 1.0)


def near_duplicates(embedding, top: int = 50, skip_same_recording: bool = True,
                    different_labels_only: bool = False) -> list[NearDuplicate]:
    """The `top` closest pairs of windows, closest first: each window's nearest neighbour (from
    another recording unless skip_same_recording=False; with another label when
    different_labels_only), each pair once."""
    x = standardized(embedding.vectors)
    n = len(x)
    _check_top(top)
    if n < 2:
        return []
    table = embedding.table
    labels = np.asarray(table.labels)
    recording = _recordings(table, n) if skip_same_recording else None
    from sklearn.neighbors import NearestNeighbors

    k = min(n, SEARCH_NEIGHBOURS + 1)
    distances, index = NearestNeighbors(n_neighbors=k).fit(x).kneighbors(x)
    best: dict[tuple[int, int], float] = {}
    for i in range(n):
        for d, j in zip(distances[i], index[i]):
            j = int(j)
            if j == i or (recording is not None and recording[i] == recording[j]):
                continue
            if different_labels_only and labels[i] == labels[j]:
                continue
            pair = (min(i, j), max(i, j))
            best[pair] = min(best.get(pair, np.inf), float(d))
            break
    ranked = sorted(best.items(), key=lambda item: (item[1], item[0]))[:top]
    return [NearDuplicate(i, j, d, bool(labels[i] != labels[j])) for (i, j), d in ranked]


def outliers(embedding, top: int = 50, neighbours: int = OUTLIER_NEIGHBOURS) -> list[Outlier]:
    """The `top` most isolated windows, most isolated first: mean distance to their `neighbours`
    nearest windows (the k-NN distance outlier score; an exact duplicate counts as a neighbour)."""
    x = standardized(embedding.vectors)
    n = len(x)
    _check_top(top)
    if n < 2:
        return []
    from sklearn.neighbors import NearestNeighbors

    k = min(n, neighbours + 1)
    distances, index = NearestNeighbors(n_neighbors=k).fit(x).kneighbors(x)
    # drop each window itself (the first column, unless an exact duplicate sorted ahead of it)
    own = index == np.arange(n)[:, None]
    first_self = own.argmax(axis=1)
    keep = np.ones_like(own)
    keep[np.arange(n), np.where(own.any(axis=1), first_self, k - 1)] = False
    score = np.where(keep, distances, 0.0).sum(axis=1) / keep.sum(axis=1)
    order = np.lexsort((np.arange(n), -score))[:top]
    return [Outlier(int(i), float(score[i])) for i in order]


def _recordings(table, n: int) -> np.ndarray:
    source = getattr(table, "source", None)
    if source is None or len(source) != n:
        return np.arange(n).astype(str)  # unknown: every window its own recording
    return np.asarray(source).astype(str)


def _check_top(top: int) -> None:
    if isinstance(top, bool) or not isinstance(top, (int, np.integer)) or top < 1:
        raise ConfigError(f"top={top!r}: ask for at least 1")


__all__ = ["NearDuplicate", "Outlier", "near_duplicates", "outliers", "standardized"]
