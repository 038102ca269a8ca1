"""Training engine: Trainer, callbacks, probes, metrics, schedules and checkpoints.

    from core.train import Trainer, lr_curve
    result = Trainer(cfg, run_dir=folder).fit()
"""
from core.train.callbacks import (Callback, CancelOnEvent, CancelOnRequest, EarlyStopping, NanGuard, ProgressPrinter,
                                  StoreWriter)
from core.train.checkpoints import Checkpointer, LoadedModel, load_checkpoint, read_checkpoint
from core.train.metrics import ClassificationMetrics, classification_metrics
from core.train.probes import PROBES, build_probes
from core.train.recorder import MemoryRecorder
from core.train.schedulers import build_optimizer, build_scheduler, lr_curve, steps_per_epoch_for
from core.train.trainer import FitResult, Trainer, resolve_device

__all__ = ["Callback", "CancelOnEvent", "CancelOnRequest", "Checkpointer", "ClassificationMetrics", "EarlyStopping",
           "FitResult", "LoadedModel", "MemoryRecorder", "NanGuard", "PROBES", "ProgressPrinter", "StoreWriter", "Trainer",
           "build_optimizer", "build_probes", "build_scheduler", "classification_metrics", "load_checkpoint",
           "lr_curve", "read_checkpoint", "resolve_device", "steps_per_epoch_for"]
