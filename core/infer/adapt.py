"""Test-time BatchNorm adaptation (AdaBN, Li et al. 2016): re-estimate a trained model's
BatchNorm statistics on unlabeled examples of a new speaker, wearer or device.

    adapted = adapt_to_files(predictor, new_speaker_clips)     # Adapted(model, files, windows, skipped)
    classify_file(adapted.model, clip)
"""
from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from torch import nn

from core.errors import ConfigError, DataError, SigscopeError
from core.infer.ensemble import Ensemble, as_ensemble, like
from core.infer.loading import BATCH, Predictor, one_blas_thread
from core.infer.reading import MAX_UPLOAD_BYTES, display_name, error_line, private_copies, read_windows


@dataclass
class Adapted:
    """The adapted run (a Predictor or Ensemble, as given), and what it was adapted to:
    files read, windows seen, and one line for each file left out."""

    model: Predictor | Ensemble
    files: int
    windows: int
    skipped: list[str] = field(default_factory=list)


def _batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def has_batchnorm(model: nn.Module) -> bool:
    return bool(_batchnorm_layers(model))


def adapt_batchnorm(predictor: Predictor, x: np.ndarray, keep: float = 0.0, note: str = "") -> Predictor:
    """A copy of `predictor` whose BatchNorm statistics are re-estimated on `x` (N, *input_shape),
    model inputs already normalized. Only the BN running means/variances change (the mean over
    batches of BATCH examples); weights, dropout and the original stay as they are. keep: weight
    of the training statistics in the result (0 = the new data's alone). ConfigError when the
    model has no BatchNorm or x holds fewer than 2 examples."""
    if not has_batchnorm(predictor.model):
        raise ConfigError(f"run {predictor.run_id}'s model ({predictor.config.model.name}) has no BatchNorm "
                          "layers, so there are no statistics to adapt")
    if len(x) < 2:
        raise ConfigError(f"adapting BatchNorm needs at least 2 examples of the new data, not {len(x)}")
    if not 0.0 <= keep <= 1.0:
        raise ConfigError(f"keep={keep} must be in [0, 1]")
    model = copy.deepcopy(predictor.model).eval()
    layers = _batchnorm_layers(model)
    trained = [(m.running_mean.clone(), m.running_var.clone(), m.momentum) for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
        m.train()
    with torch.no_grad():  # equal batches of at most BATCH (never one example: it has no variance)
        for chunk in np.array_split(np.arange(len(x)), math.ceil(len(x) / BATCH)):
            model(torch.from_numpy(np.ascontiguousarray(x[chunk])).to(predictor.device))
    for m, (mean, var, momentum) in zip(layers, trained):
        m.running_mean.mul_(1.0 - keep).add_(keep * mean.to(m.running_mean.device))
        m.running_var.mul_(1.0 - keep).add_(keep * var.to(m.running_var.device))
        m.momentum = momentum
        m.eval()
    return dataclasses.replace(predictor, model=model,
                               adapted=note or f"BatchNorm statistics adapted to {len(x)} unlabeled examples")


def adapt_to_files(model: Predictor | Ensemble, paths: Iterable[str | Path], hop: float | None = None,
                   names: list[str] | None = None) -> Adapted:
    """The run (each member of an Ensemble) with its BatchNorm statistics re-estimated on every
    window of `paths`, unlabeled (adapt_batchnorm). Classify the same files with the result.
    A file that cannot be read is left out and named in `skipped`; DataError when none can be read."""
    ensemble = as_ensemble(model)
    paths = [Path(p) for p in paths]
    names = names or [str(p) for p in paths]
    read, skipped = [], []
    for path, name in zip(paths, names):
        try:
            read.append(read_windows(ensemble, path, name, hop))
        except SigscopeError as e:
            skipped.append(error_line(e, {str(path): name}))
    if not read:
        raise DataError("none of the files could be read, so there is nothing to adapt to: " + "; ".join(skipped))
    windows = int(sum(len(r.starts) for r in read))
    note = f"BatchNorm statistics adapted to {windows} windows of {len(read)} file(s)"
    with one_blas_thread():
        members = [adapt_batchnorm(m, np.concatenate([m.inputs(r.signal, r.starts) for r in read]), note=note)
                   for m in ensemble.members]
    return Adapted(like(model, Ensemble(members)), files=len(read), windows=windows, skipped=skipped)


def adapt_to_uploads(model: Predictor | Ensemble, uploads: list[tuple[bytes, str]],
                     hop: float | None = None) -> Adapted:
    """adapt_to_files for uploads (bytes, name), each written to a private temp file as in
    classify_bytes; uploads over MAX_UPLOAD_BYTES are left out (classify_bytes refuses them)."""
    kept = [(data, display_name(name)) for data, name in uploads if len(data) <= MAX_UPLOAD_BYTES]
    with private_copies([data for data, _ in kept]) as paths:
        return adapt_to_files(model, paths, hop, [name for _, name in kept])
