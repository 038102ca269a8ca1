"""Callbacks: small objects the Trainer calls at fixed points of its plain loop.

Order inside one optimizer step (`step` counts optimizer steps from 1):

    on_step_start(trainer, step)           # probes attach hooks here on probe steps
    forward, loss
    on_before_backward(trainer, step)      # probes detach forward hooks here
    backward (grads unscaled when AMP fp16 is on)
    on_after_backward(trainer, step)       # grads are final; loss is trainer.last_loss
    gradient clipping
    on_before_optimizer_step(trainer, step)
    optimizer.step(), scheduler.step()
    on_step_end(trainer, step)

and around them on_fit_start, on_epoch_start(trainer, epoch), on_epoch_end(trainer,
epoch, metrics) with metrics like {"train_loss": ..., "val_accuracy": ...}, and
on_fit_end(trainer). A callback stops training with `trainer.request_stop(status, msg)`.
Callbacks with state that a resumed run needs implement state_dict/load_state_dict
(plain JSON values only).
"""
from __future__ import annotations

import math
import threading
import time
from typing import TYPE_CHECKING, Any

from core.errors import ConfigError

if TYPE_CHECKING:
    from core.train.trainer import Trainer


class Callback:
    """Base class: every hook is a no-op."""

    name: str = ""

    def on_fit_start(self, trainer: "Trainer") -> None: ...
    def on_epoch_start(self, trainer: "Trainer", epoch: int) -> None: ...
    def on_step_start(self, trainer: "Trainer", step: int) -> None: ...
    def on_before_backward(self, trainer: "Trainer", step: int) -> None: ...
    def on_after_backward(self, trainer: "Trainer", step: int) -> None: ...
    def on_before_optimizer_step(self, trainer: "Trainer", step: int) -> None: ...
    def on_step_end(self, trainer: "Trainer", step: int) -> None: ...
    def on_epoch_end(self, trainer: "Trainer", epoch: int, metrics: dict[str, float]) -> None: ...
    def on_fit_end(self, trainer: "Trainer") -> None: ...

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None: ...

    @property
    def key(self) -> str:
        return self.name or type(self).__name__


def better(value: float, best: float | None, mode: str, min_delta: float = 0.0) -> bool:
    """True when `value` improves on `best` under mode "min" or "max" (NaN never improves)."""
    if value is None or math.isnan(value):
        return False
    if best is None:
        return True
    return value < best - min_delta if mode == "min" else value > best + min_delta


class NanGuard(Callback):
    """Stops the run as `diverged` when the loss becomes NaN or Inf, before the optimizer
    applies that step's gradients."""

    name = "nan_guard"

    def on_after_backward(self, trainer: "Trainer", step: int) -> None:
        loss = trainer.last_loss
        if not math.isfinite(loss):
            trainer.request_stop("diverged", f"loss became {loss} at step {step} (epoch {trainer.epoch + 1}); "
                                             f"lower optim.lr, enable train.grad_clip or check the data for NaNs")


class EarlyStopping(Callback):
    """Stops when `metric` ("val_loss", "val_accuracy", ...) has not improved for
    `patience` epochs."""

    name = "early_stopping"

    def __init__(self, metric: str = "val_loss", mode: str = "min", patience: int = 5, min_delta: float = 0.0) -> None:
        """metric: an epoch metric name; mode: "min" or "max"; patience: epochs to wait."""
        if mode not in ("min", "max"):
            raise ValueError(f"early stopping mode {mode!r}: use 'min' or 'max'")
        self.metric, self.mode, self.patience, self.min_delta = metric, mode, patience, min_delta
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.bad_epochs = 0

    def on_epoch_end(self, trainer: "Trainer", epoch: int, metrics: dict[str, float]) -> None:
        if self.metric not in metrics:
            raise ConfigError(f"early stopping watches {self.metric!r}, which this run does not produce; "
                           f"choose one of {', '.join(sorted(metrics))}")
        value = metrics[self.metric]
        if better(value, self.best, self.mode, self.min_delta):
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
            return
        self.bad_epochs += 1
        if self.bad_epochs >= self.patience:
            trainer.request_stop("completed", f"early stopping: {self.metric} has not improved for "
                                              f"{self.patience} epochs (best {self.best:.4g} at epoch {self.best_epoch + 1})")

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_epoch, self.bad_epochs = state.get("best"), state.get("best_epoch"), state.get("bad_epochs", 0)


class CancelOnEvent(Callback):
    """Stops at the end of the current step once `event` is set (JobManager.cancel)."""

    name = "cancel"

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def on_step_end(self, trainer: "Trainer", step: int) -> None:
        if self.event.is_set():
            trainer.request_stop("cancelled", f"cancelled at step {step} (epoch {trainer.epoch + 1})")


class CancelOnRequest(Callback):
    """Sets `event` (so CancelOnEvent stops the run) once a cancel was asked for through the
    store (`python -m core runs cancel`, another process); looks at most every `every` seconds."""

    name = "cancel_request"

    def __init__(self, store, run_id: str, event: threading.Event, every: float = 1.0) -> None:
        self.store, self.run_id, self.event, self.every = store, run_id, event, every
        self._next = 0.0

    def on_step_end(self, trainer: "Trainer", step: int) -> None:
        now = time.monotonic()
        if now < self._next or self.event.is_set():
            return
        self._next = now + self.every
        try:
            if self.store.cancel_requested([self.run_id]):
                self.event.set()
        except Exception:  # noqa: BLE001 - a busy database is asked again next time
            pass


class StoreWriter(Callback):
    """Keeps the run row's progress fields current and flushes the batched writer at
    every epoch end and at the end of the fit (the writer also flushes every 0.5 s)."""

    name = "store_writer"

    def __init__(self, writer: Any, progress_seconds: float = 0.5) -> None:
        """writer: a `core.store.RunWriter` (the trainer's recorder)."""
        self.writer = writer
        self.progress_seconds = progress_seconds
        self._last = 0.0

    def on_fit_start(self, trainer: "Trainer") -> None:
        self.writer.progress(total_steps=trainer.total_steps, total_epochs=trainer.epochs,
                             step=trainer.global_step, epoch=trainer.epoch, device=str(trainer.device))
        self.writer.flush()

    def on_step_end(self, trainer: "Trainer", step: int) -> None:
        now = time.monotonic()
        if now - self._last >= self.progress_seconds:
            self._last = now
            self.writer.progress(step=step, epoch=trainer.epoch)

    def on_epoch_end(self, trainer: "Trainer", epoch: int, metrics: dict[str, float]) -> None:
        self.writer.progress(step=trainer.global_step, epoch=epoch + 1)
        self.writer.flush()

    def on_fit_end(self, trainer: "Trainer") -> None:
        self.writer.progress(step=trainer.global_step)
        self.writer.flush()


class ProgressPrinter(Callback):
    """Prints one line per epoch (the CLI's foreground progress)."""

    name = "progress_printer"

    def __init__(self, stream: Any = None) -> None:
        import sys
        self.stream = stream or sys.stderr

    def on_epoch_end(self, trainer: "Trainer", epoch: int, metrics: dict[str, float]) -> None:
        keys = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "val_macro_f1")
        parts = [f"{k}={metrics[k]:.4f}" for k in keys if k in metrics]
        lr = trainer.optimizer.param_groups[0]["lr"]
        print(f"epoch {epoch + 1}/{trainer.epochs} step {trainer.global_step} {' '.join(parts)} lr={lr:.3g}",
              file=self.stream, flush=True)
