"""Model-FLOPs utilisation (MFU) of every run, as a callback.

At the start of a run it counts the training FLOPs of one example (forward + backward of a
2-example batch under the project's FLOP counter, `count_training_flops`) and reads the peak
FLOP/s of the run's device at torch's thread count (`core.profiling.peak`, measured once per
machine); at the end of every epoch it adds to the epoch's training metrics

    flops_per_sec = flops_per_example x samples_per_sec
    mfu           = flops_per_sec / (peak x processes)

(samples_per_sec already counts every process's examples, see Trainer). Counting or measuring
never fails a run: a failure is an event and the figure is None. A closed-form fit (ridge) has
no training steps, so no MFU. The peak's dtype follows the run: bf16/fp16 under AMP on a GPU,
fp32 otherwise (a CPU peak is measured in fp32 only, so CPU bf16 runs are set against it).
"""
from __future__ import annotations

import statistics
import time
from typing import TYPE_CHECKING, Any

import torch

from core.profiling import mfu as mfu_math
from core.train.callbacks import Callback

if TYPE_CHECKING:
    from core.train.trainer import Trainer

COUNT_BATCH = 2  # examples in the counted batch (2: BatchNorm in training needs more than one)


class Utilization(Callback):
    """Records flops_per_sec and mfu per epoch (split "train") and keeps the run's summary figures."""

    name = "utilization"

    def __init__(self) -> None:
        self.flops_per_example: float | None = None
        self.peak_flops: float | None = None
        self.peak_dtype: str | None = None
        self.processes = 1
        self.threads = 0
        self.by_epoch: list[float] = []

    def on_fit_start(self, trainer: "Trainer") -> None:
        if trainer.closed_form:
            trainer.recorder.event("MFU not measured: train.fit='ridge' solves the head in closed form, without "
                                   "training steps")
            return
        self.processes = trainer.world
        try:
            self.flops_per_example = training_flops_per_example(trainer)
        except Exception as error:  # noqa: BLE001 - counting is a measurement, never a reason to fail a run
            trainer.recorder.event(f"MFU not measured: counting the training FLOPs failed ({_why(error)})",
                                   "warning")
            return
        try:
            peak = self._read_peak(trainer)
        except Exception as error:  # noqa: BLE001
            trainer.recorder.event(f"MFU not measured: the peak FLOP/s benchmark failed ({_why(error)})", "warning")
            return
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(peak.measured_at))
        per = f" per process, x {self.processes} processes" if self.processes > 1 else ""
        trainer.recorder.event(
            f"MFU: {mfu_math.format_flops(self.flops_per_example)} per training example (forward + backward, "
            f"counted) against a peak of {mfu_math.format_flops(self.peak_flops, per_second=True)}{per} "
            f"({self.peak_dtype} matmul on {peak.device}, {peak.threads} thread(s), measured {when})")

    def _read_peak(self, trainer: "Trainer"):
        """The peak at the thread count the steps run on now (a run process may change it with the load)."""
        from core.profiling.peak import device_peak

        self.threads = torch.get_num_threads()
        peak = device_peak(trainer.device, self.threads)
        self.peak_dtype = peak_dtype(trainer, peak.flops)
        self.peak_flops = peak.of(self.peak_dtype)
        return peak

    def on_epoch_end(self, trainer: "Trainer", epoch: int, metrics: dict[str, float]) -> None:
        if self.peak_flops is not None and torch.get_num_threads() != self.threads:
            try:  # the epoch ran on another thread count (the load changed, or a loader worker took one)
                self._read_peak(trainer)
            except Exception:  # noqa: BLE001 - keep the last peak
                pass
        achieved = mfu_math.achieved_flops(self.flops_per_example, metrics.get("train_samples_per_sec"))
        if achieved is None:
            return
        values = {"flops_per_sec": achieved}
        value = mfu_math.mfu(self.flops_per_example, metrics.get("train_samples_per_sec"), self.peak_flops,
                             self.processes)
        if value is not None:
            values["mfu"] = value
            self.by_epoch.append(value)
        trainer.recorder.metrics(trainer.global_step, epoch, "train", values)
        # the epoch's metrics dict is what FitResult.final_metrics and later callbacks see
        metrics.update({f"train_{k}": v for k, v in values.items()})

    def summary(self) -> dict[str, Any]:
        """flops_per_example, peak_flops, peak_dtype, mfu (last epoch) and mfu_mean for the run's summary."""
        return {"flops_per_example": self.flops_per_example, "peak_flops": self.peak_flops,
                "peak_dtype": self.peak_dtype, "mfu": self.by_epoch[-1] if self.by_epoch else None,
                "mfu_mean": statistics.fmean(self.by_epoch) if self.by_epoch else None}

    def state_dict(self) -> dict:  # a resumed run's mean covers its epochs before the stop too
        return {"by_epoch": list(self.by_epoch)}

    def load_state_dict(self, state: dict) -> None:
        self.by_epoch = [float(v) for v in state.get("by_epoch", [])]


def training_flops_per_example(trainer: "Trainer") -> float:
    """Forward + backward FLOPs per example of the trainer's model at its input shape
    (`core.profiling.flops.training_flops_per_example`), without gradient checkpointing, whose
    recomputed forward is not model work."""
    from core.profiling.flops import training_flops_per_example as count

    model = trainer.model
    checkpointing = bool(trainer.config.train.grad_checkpointing) and hasattr(model, "set_grad_checkpointing")
    if checkpointing:
        model.set_grad_checkpointing(False)
    try:
        return count(model, tuple(trainer.bundle.input_shape), COUNT_BATCH, trainer.device)
    finally:
        if checkpointing:
            model.set_grad_checkpointing(True)


def peak_dtype(trainer: "Trainer", measured: dict[str, float]) -> str:
    """The peak a run is set against: its AMP dtype where that was measured (GPU), else fp32."""
    names = {torch.bfloat16: "bf16", torch.float16: "fp16"}
    wanted = names.get(getattr(trainer, "amp_dtype", None), "fp32")
    return wanted if wanted in measured else "fp32"


def _why(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0][:160]}" if lines else type(error).__name__
