"""Seeded train/val/test splits: random, stratified, subject-wise (group) or fixed.

    train_idx, val_idx, test_idx = split_indices(examples, cfg)

- "random":     a seeded permutation cut by val/test fractions.
- "stratified": the same fractions within every class.
- "subject":    whole groups (subjects/speakers) go to one split; `test_groups`/`val_groups`
                name them, otherwise groups are drawn (seeded) until the fractions are met.
                No group is ever in two splits — except with val_from="examples", where
                validation is a stratified fraction of the training groups (test groups stay unseen).
- "fixed":      the source's standard test set (FSDD takes 0-4, UEA TEST file) or the ids in
                options["test_list"]; validation is then stratified out of the rest.

Examples flagged `train_only` (synthetic voices added to FSDD) are left out of every split
decision and appended to train: fractions, drawn groups and the standard test set are those
of the real examples alone, and nothing synthetic is ever validated or tested on.
"""
from __future__ import annotations

import numpy as np

from core.config import DataConfig
from core.errors import DataError
from core.data.examples import Examples

SPLIT_HELP = {"stratified": "random, keeping class proportions", "random": "random examples",
              "subject": "whole subjects/speakers held out (no person in two splits)",
              "fixed": "the source's standard split (e.g. FSDD takes 0-4 as test)"}
SPLITS = tuple(SPLIT_HELP)
# Below this many training series a validation slice costs more than it tells: 36 ArrowHead series
# less 15 % leave 30 to learn from and 6 to pick a checkpoint by.
SMALL_TRAIN = 300
VALIDATION_HELP = {
    "holdout": "carve the validation share out of the training data; its watched metric picks the checkpoint",
    "auto": f"hold out a validation share unless fewer than {SMALL_TRAIN} series would train: then every training "
            "series trains and the epoch with the lowest training loss is kept (Fawaz et al. 2019)",
    "none": "no validation split: every training series trains and the epoch with the lowest training loss is kept",
}


def split_indices(ex: Examples, cfg: DataConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, val, test) index arrays into `ex`, disjoint, seeded by cfg.split_seed."""
    if cfg.split not in SPLITS:
        raise DataError(f"split={cfg.split!r} is not known; use one of {', '.join(SPLITS)}")
    for name in ("val_fraction", "test_fraction"):
        value = getattr(cfg, name)
        if not 0.0 <= value < 1.0:
            raise DataError(f"{name}={value} must be in [0, 1)")
    if cfg.validation == "none" and cfg.val_fraction:  # no validation slice is cut at all
        from dataclasses import replace
        cfg = replace(cfg, val_fraction=0.0)
    if cfg.val_fraction + cfg.test_fraction >= 1.0:
        raise DataError(f"val_fraction + test_fraction = {cfg.val_fraction + cfg.test_fraction:.2f} "
                        "leaves no training data; keep the sum below 1")
    if ex.train_only is not None and ex.train_only.any():
        real = np.flatnonzero(~ex.train_only)
        if len(real) == 0:
            raise DataError("every example is train-only (synthetic); there is nothing real to validate or test on")
        train, val, test = split_indices(ex.subset(real), cfg)
        return np.sort(np.concatenate([real[train], np.flatnonzero(ex.train_only)])), real[val], real[test]
    rng = np.random.default_rng(cfg.split_seed)
    everything = np.arange(len(ex))
    if cfg.split == "random":
        train, val, test = _cut(rng.permutation(everything), cfg.val_fraction, cfg.test_fraction)
    elif cfg.split == "stratified":
        train, val, test = _stratified(everything, ex.y, cfg.val_fraction, cfg.test_fraction, rng)
    elif cfg.split == "subject":
        train, val, test = _by_group(ex, cfg, rng)
    else:
        train, val, test = _fixed(ex, cfg, rng)
    if len(train) == 0:
        raise DataError(f"split {cfg.split!r} left no training examples out of {len(ex)}; "
                        "lower val/test fractions or hold out fewer groups")
    if holds_no_validation(cfg, len(train) + len(val)):
        train, val = np.concatenate([train, val]), val[:0]
    return np.sort(train), np.sort(val), np.sort(test)


def fold_split(ex: Examples, cfg: DataConfig, train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """With cfg.folds = K: the training examples' groups (subjects/speakers) divided into K folds
    of about equal size (largest group first into the smallest fold; ties in a seeded order), and
    fold cfg.fold's examples made the test split: (train, test). Without folds, unchanged."""
    if cfg.folds is None:
        return train, test
    k, fold = int(cfg.folds), int(cfg.fold)
    if k < 2:
        raise DataError(f"folds={k}: cross-validation needs at least 2 folds")
    if not 0 <= fold < k:
        raise DataError(f"fold={fold} is not one of the {k} folds (0 to {k - 1})")
    groups = ex.groups[train].astype(str)
    unique, counts = np.unique(groups, return_counts=True)
    if len(unique) < k:
        shown = ", ".join(unique[:20].tolist())
        raise DataError(f"folds={k} need {k} subjects/speakers in the training split; it has {len(unique)} "
                        f"({shown}); use at most {len(unique)} folds, or a split that trains on more of them")
    order = np.random.default_rng(cfg.split_seed).permutation(len(unique))
    order = order[np.argsort(-counts[order], kind="stable")]
    sizes, owner = np.zeros(k, dtype=np.int64), {}
    for i in order:
        smallest = int(np.argmin(sizes))
        owner[unique[i]] = smallest
        sizes[smallest] += counts[i]
    held = np.array([owner[g] == fold for g in groups], dtype=bool)
    return train[~held], np.sort(train[held])


def holds_no_validation(cfg: DataConfig, train_and_val: int) -> bool:
    """Whether `cfg.validation` folds the validation slice back into training for a split
    with this many train + validation examples."""
    if cfg.validation not in VALIDATION_HELP:
        raise DataError(f"validation={cfg.validation!r} is not known; use one of {', '.join(VALIDATION_HELP)}")
    return cfg.validation == "none" or (cfg.validation == "auto" and train_and_val < SMALL_TRAIN)


def _cut(order: np.ndarray, val_fraction: float, test_fraction: float):
    n = len(order)
    n_test = int(round(n * test_fraction))
    n_val = int(round(n * val_fraction))
    return order[n_test + n_val:], order[n_test:n_test + n_val], order[:n_test]


def _stratified(index: np.ndarray, y: np.ndarray, val_fraction: float, test_fraction: float, rng):
    parts = ([], [], [])
    for label in np.unique(y[index]):
        members = rng.permutation(index[y[index] == label])
        for part, chunk in zip(parts, _cut(members, val_fraction, test_fraction)):
            part.append(chunk)
    return tuple(np.concatenate(p) if p else np.array([], dtype=np.int64) for p in parts)


def _by_group(ex: Examples, cfg: DataConfig, rng):
    groups = ex.groups.astype(str)
    known = set(groups.tolist())
    test_groups = [str(g) for g in cfg.test_groups]
    val_groups = [str(g) for g in cfg.val_groups]
    for name, chosen in (("test_groups", test_groups), ("val_groups", val_groups)):
        missing = sorted(set(chosen) - known)
        if missing:
            raise DataError(f"{name} {missing} are not in the data; its groups are {sorted(known)[:30]}")
    both = sorted(set(test_groups) & set(val_groups))
    if both:
        raise DataError(f"group(s) {both} are in both test_groups and val_groups; a group belongs to one split")
    unique, counts = np.unique(groups, return_counts=True)
    if len(unique) < 2:
        raise DataError(f"split='subject' needs at least 2 groups; the data has only {list(unique)}")
    free = [g for g in rng.permutation(unique).tolist() if g not in test_groups and g not in val_groups]
    size = dict(zip(unique.tolist(), counts.tolist()))
    n = len(groups)

    def draw(chosen: list[str], fraction: float) -> list[str]:
        if chosen or fraction == 0:
            return chosen
        taken, total = [], 0
        while free and total < fraction * n and len(free) > 1:
            g = free.pop(0)
            taken.append(g)
            total += size[g]
        return taken

    if cfg.val_from not in ("groups", "examples"):
        raise DataError(f"val_from={cfg.val_from!r}; use 'groups' (whole held-out groups) or 'examples' "
                        "(a stratified fraction of the training groups)")
    test_groups = draw(test_groups, cfg.test_fraction)
    if cfg.val_from == "examples":
        if val_groups:
            raise DataError("val_groups and val_from='examples' both choose the validation set; give one")
        rest = np.flatnonzero(~np.isin(groups, test_groups))
        train, val, _ = _stratified(rest, ex.y, cfg.val_fraction, 0.0, rng)
        return train, val, np.flatnonzero(np.isin(groups, test_groups))
    val_groups = draw(val_groups, cfg.val_fraction)
    test = np.flatnonzero(np.isin(groups, test_groups))
    val = np.flatnonzero(np.isin(groups, val_groups))
    train = np.flatnonzero(~np.isin(groups, test_groups + val_groups))
    return train, val, test


def _fixed(ex: Examples, cfg: DataConfig, rng):
    test_list = cfg.options.get("test_list")
    if test_list:
        wanted = set(str(i) for i in test_list)
        is_test = np.isin(ex.ids.astype(str), list(wanted))
        missing = wanted - set(ex.ids[is_test].astype(str).tolist())
        if missing:
            raise DataError(f"options.test_list names {len(missing)} id(s) not in the data, "
                            f"e.g. {sorted(missing)[:3]}; ids look like {ex.ids[:2].tolist()}")
    elif ex.fixed_test is not None:
        is_test = ex.fixed_test
    else:
        raise DataError(f"split='fixed' needs a standard test set, which source {cfg.source!r} does not "
                        "have; give options.test_list (example ids) or use split='subject' with test_groups")
    test = np.flatnonzero(is_test)
    rest = np.flatnonzero(~is_test)
    # Validation comes out of the non-test part, stratified; fraction is of that part.
    val_share = cfg.val_fraction
    train, val, _ = _stratified(rest, ex.y, val_share, 0.0, rng)
    return train, val, test
