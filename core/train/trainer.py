"""The Trainer: a plain PyTorch loop; everything else hooks in as a callback.

    trainer = Trainer(RunConfig(), run_dir=Path("runs/demo"))
    result = trainer.fit()                 # FitResult(status="completed", test_metrics={...})
    trainer.fit(resume_from="runs/demo/checkpoints/last.pt")  # continues the same curve

Built-in callbacks, in order: NanGuard, Utilization (MFU), the probes of `train.probes`,
EarlyStopping (when enabled), Checkpointer (when a run folder is given), then the caller's
callbacks.

Metrics written to the recorder:
- split "step" (every optimizer step): loss, lr (the lr that step used)
- split "train" (every epoch, from the training forward passes, so with dropout on):
  classification metrics (with mixup, each blended example is scored against the label it is
  mostly made of), weight_norm, samples_per_sec, epoch_seconds, data_wait_share (the share of
  the epoch the steps waited for the loader's next batch); flops_per_sec and mfu (model-FLOPs
  utilisation against the device's measured peak: the Utilization callback)
- split "val" (every epoch) and "test" (once at the end, with the best checkpoint's
  weights when there is one): classification metrics; val/test loss is plain
  cross-entropy (label smoothing only shapes the training loss)
- reports: confusion_matrix and per_class for each split and epoch
An epoch's metrics are held back (`recorder.held()`) until its checkpoint is on disk.

Under torchrun (core.distributed) the same loop runs on every rank: each trains on its shard
with train.batch_size / world examples per step (so the global batch is the configured one),
the step's loss is averaged over the ranks, rank 0 alone records, checkpoints, probes and
evaluates the full validation and test splits, and the epoch's metrics and any stop are
shared by every rank.
"""
from __future__ import annotations

import contextlib
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.lr_scheduler import OneCycleLR, ReduceLROnPlateau
from torch.utils.data import DataLoader, DistributedSampler

from core import distributed
from core.config import RunConfig
from core.errors import ConfigError
from core.threads import ForeignLoad, adapting, cores, load_average, threads_beside
from core.train import closed_form
from core.train.callbacks import Callback, EarlyStopping, NanGuard
from core.train.checkpoints import Checkpointer, check_model_state, read_checkpoint, set_rng_state
from core.train.mixup import dominant_labels, mix_batch, mixed_loss
from core.train.metrics import classification_metrics, weight_l2_norm
from core.train.probes import build_probes
from core.train.recorder import MemoryRecorder
from core.train.schedulers import build_optimizer, build_scheduler
from core.train.utilization import Utilization


@dataclass
class FitResult:
    """How a fit ended. status: "completed" | "cancelled" | "diverged" | "pruned"."""

    status: str
    message: str = ""
    epochs_completed: int = 0
    global_step: int = 0
    best_metric: float | None = None
    best_epoch: int | None = None
    final_metrics: dict[str, float] = field(default_factory=dict)
    test_metrics: dict[str, float] = field(default_factory=dict)
    epochs_rule: str = ""  # how the kept checkpoint was chosen, in words
    # model-FLOPs utilisation (core.train.utilization); None when not measured
    flops_per_example: float | None = None  # training (forward + backward) FLOPs, counted
    peak_flops: float | None = None  # FLOP/s of one process's device, measured
    peak_dtype: str | None = None  # the matmul dtype of that peak: fp32, bf16, fp16
    mfu: float | None = None  # the last epoch's
    mfu_mean: float | None = None  # over the run's epochs

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def resolve_device(name: str = "auto") -> torch.device:
    """"auto" -> cuda when available, else cpu; refuses a CUDA device this machine lacks."""
    if name in ("auto", "", None):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device={name!r} but no CUDA GPU is visible; use 'auto' or 'cpu'")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


AUTO_WORKERS_WAIT = 0.05  # train.num_workers auto: a data wait above this share of an epoch adds a worker


class Trainer:
    """Trains one RunConfig on one device."""

    def __init__(self, config: RunConfig, bundle: Any = None, *, model: nn.Module | None = None,
                 callbacks: Sequence[Callback] = (), recorder: Any = None, run_dir: str | Path | None = None,
                 device: str | torch.device | None = None) -> None:
        """config: the run; bundle: a `core.data.DatasetBundle` (None = `core.data.load(config.data)`);
        model: a ready module instead of building `config.model` from the registry;
        callbacks: extra callbacks, called after the built-in ones; recorder: where numbers go
        (a `core.store.RunWriter`; default `MemoryRecorder`); run_dir: folder for checkpoints and
        run files (None = no checkpoints); device: overrides `config.train.device`."""
        self.config = config
        tc = config.train
        self.rank, self.world = distributed.rank(), distributed.world_size()
        if tc.batch_size % self.world:
            raise ConfigError(f"train.batch_size={tc.batch_size} must be divisible by the {self.world} processes "
                              "(each takes an equal share of the global batch)")
        self.local_batch = tc.batch_size // self.world
        if tc.epochs < 1:
            raise ConfigError(f"train.epochs={tc.epochs}: train for at least 1 epoch")
        if tc.batch_size < 1:
            raise ConfigError(f"train.batch_size={tc.batch_size}: use a positive batch size, e.g. 64")
        if not 0.0 <= tc.mixup_alpha <= 10.0:
            raise ConfigError(f"train.mixup_alpha={tc.mixup_alpha}: use 0 (off) or a Beta parameter in (0, 10], "
                              "e.g. 0.4")
        self.recorder = recorder if recorder is not None else MemoryRecorder()
        self.device = device if isinstance(device, torch.device) else resolve_device(device or tc.device)
        seed_everything(tc.seed)
        # a run process on CPU follows other processes' load (core.threads): the first look spans
        # loading the data and building the model, later ones an epoch each
        self.max_threads = torch.get_num_threads()
        self.load_watch = ForeignLoad() if adapting() and self.world == 1 and self.device.type == "cpu" else None
        if bundle is None:
            from core.data import load
            bundle = load(config.data)
        self.bundle = bundle
        if len(bundle.train) == 0:
            raise ConfigError("the training split is empty: lower data.val_fraction/test_fraction or add data")
        self.model = (model if model is not None else self._build_model()).to(self.device)
        self._setup_grad_checkpointing()
        self._setup_amp()
        # the module the loop calls: the model, or under torchrun its DDP wrapper (gradients all-reduced)
        self.train_model: nn.Module = self.model
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_model = DistributedDataParallel(self.model, device_ids=ids)
        # train.compile: the compiled module runs the plain training steps; a step whose forward a
        # callback hooks (a probe step) runs train_model as written, so hooks never reach the graph
        self.compiled: nn.Module | None = torch.compile(self.train_model) if tc.compile else None
        self._compiled_once = False
        self._hookable = list(self.model.modules())
        # train.num_workers None (auto) starts in this process; _adapt_loader may add a worker
        self.loader_workers = tc.num_workers if tc.num_workers is not None else 0
        # one permutation per epoch from (seed, epoch), cut into world shards: the global batches are
        # the same whatever the number of processes, and a resumed run sees the same order
        self.train_sampler = DistributedSampler(bundle.train, num_replicas=self.world, rank=self.rank, shuffle=True,
                                                seed=tc.seed)
        self.train_loader = self._loader(bundle.train, shuffle=True)
        self.val_loader = self._loader(bundle.val, shuffle=False) if len(bundle.val) else None
        self.watched, self.epochs_rule = self._watched_metric()
        self.test_loader = self._loader(bundle.test, shuffle=False) if len(bundle.test) else None
        self.steps_per_epoch = len(self.train_loader)
        self.epochs = tc.epochs
        self.total_steps = self.epochs * self.steps_per_epoch
        self.optimizer = build_optimizer([p for p in self.model.parameters() if p.requires_grad], config.optim)
        self.scheduler = build_scheduler(self.optimizer, config.schedule, self.epochs, self.steps_per_epoch)
        if isinstance(self.scheduler, ReduceLROnPlateau) and self.val_loader is None:
            raise ConfigError("schedule 'plateau' watches the validation loss, but the validation split is empty")
        self.criterion = nn.CrossEntropyLoss(label_smoothing=tc.label_smoothing)
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.callbacks: list[Callback] = self._builtin_callbacks() + list(callbacks)
        self.global_step = 0
        self.epoch = 0
        self.start_epoch = 0
        self.last_loss = float("nan")
        self.last_grad_norm: torch.Tensor | None = None
        self.stop_status: str | None = None
        self.stop_message = ""
        # train.fit="ridge": one epoch that solves the head in closed form (core.train.closed_form)
        self.closed_form = closed_form.ridge_epoch(self)

    # ---- set-up ---------------------------------------------------------------------------
    def _build_model(self) -> nn.Module:
        from core.models import create, spec

        model_spec = spec(self.config.model.name)
        if model_spec.input_kind != self.bundle.input_kind:
            raise ConfigError(f"model {model_spec.name!r} takes {model_spec.input_kind} input but data source "
                              f"{self.config.data.source!r} gives {self.bundle.input_kind}; pick a model for "
                              f"{self.bundle.input_kind} or change data.features")
        return create(self.config.model.name, tuple(self.bundle.input_shape), self.bundle.num_classes,
                      **self.config.model.hparams)

    def _setup_grad_checkpointing(self) -> None:
        self.notes: list[tuple[str, str]] = []
        if not self.config.train.grad_checkpointing:
            return
        if hasattr(self.model, "set_grad_checkpointing"):
            self.model.set_grad_checkpointing(True)
        else:
            self.notes.append(("warning", "this model does not support gradient checkpointing; trained without it"))

    def _setup_amp(self) -> None:
        from core.config import AMP, amp_dtype

        amp = self.config.train.amp
        if amp not in AMP:
            raise ConfigError(f"train.amp={amp!r}: use one of {', '.join(repr(a) for a in AMP)}")
        self.amp_dtype: torch.dtype | None = amp_dtype(amp)
        if self.amp_dtype == torch.float16 and self.device.type != "cuda":
            self.notes.append(("warning", "train.amp='fp16' needs a CUDA GPU; trained in fp32 (try 'bf16' on CPU)"))
            self.amp_dtype = None
        use_scaler = self.amp_dtype == torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=True) if use_scaler else None

    def _loader(self, dataset: Any, shuffle: bool) -> DataLoader:
        tc = self.config.train
        workers = self.loader_workers
        if shuffle:  # training: this rank's shard, local_batch at a time
            n = len(self.train_sampler)
            # a last batch of one sample breaks BatchNorm in training; drop only that case
            drop_last = n > self.local_batch and n % self.local_batch == 1
            return DataLoader(dataset, batch_size=self.local_batch, sampler=self.train_sampler, drop_last=drop_last,
                              num_workers=workers, pin_memory=self.device.type == "cuda",
                              persistent_workers=workers > 0)
        return DataLoader(dataset, batch_size=tc.batch_size, shuffle=False, num_workers=workers,
                          pin_memory=self.device.type == "cuda", persistent_workers=workers > 0)

    def _adapt_loader(self, epoch: int, train: dict[str, Any]) -> None:
        """train.num_workers auto: once an epoch's steps waited over AUTO_WORKERS_WAIT of it for
        their batches (per-example work such as resampling and features recomputed every epoch),
        the next epochs load in one worker process, beside the steps instead of before them, and
        the run computes on one thread fewer so the worker has a core. A run on one thread keeps
        loading in its own process."""
        if self.config.train.num_workers is not None or self.loader_workers or epoch + 1 >= self.epochs:
            return
        share = train.get("data_wait", 0.0) / max(train.get("seconds") or 0.0, 1e-9)
        threads = torch.get_num_threads()
        # the worker needs a core of its own: beside as many compute threads as cores it preempts
        # them at every OpenMP barrier (fsdd_resnet1d_mfcc on 2 cores: 2 threads alone 7.5 s an
        # epoch, 2 threads + a worker 11.8-13.9 s, 1 thread + a worker 5.0-5.3 s)
        if share <= AUTO_WORKERS_WAIT or threads < 2:
            return
        torch.set_num_threads(threads - 1)
        self.loader_workers = 1
        self.train_loader = self._loader(self.bundle.train, shuffle=True)
        self.recorder.event(f"the steps waited {share:.0%} of epoch {epoch + 1} for their batches: from epoch "
                            f"{epoch + 2} one worker process loads them, on one of the run's {threads} threads "
                            "(train.num_workers is auto)")

    def _fit_threads_to_load(self, when: str, first: bool = False) -> None:
        """A run process computes on the cores other processes leave it (core.threads.threads_beside),
        up to the threads it was given less a loader worker's: on a shared machine OpenMP threads
        that outnumber the free cores wait at every barrier for one the kernel has not scheduled."""
        if self.load_watch is None:
            return
        others = self.load_watch.take()
        if others is None and first:
            others = load_average()  # too short to measure: the last minute's runnable processes
        if others is None:
            return
        now = torch.get_num_threads()
        n = threads_beside(others, self.max_threads - self.loader_workers, now)
        if n != now:
            torch.set_num_threads(n)
            self.recorder.event(f"other processes kept {others:.1f} of {cores()} cores busy {when}: the run "
                                f"computes on {n} thread{'s' if n > 1 else ''} instead of {now}")

    def _builtin_callbacks(self) -> list[Callback]:
        tc = self.config.train
        main = self.rank == 0
        out: list[Callback] = [NanGuard(), *([Utilization()] if main else []),
                               *(build_probes(tc.probes, self.total_steps) if main else [])]
        es = tc.early_stopping
        metric, mode = self.watched
        if es.enabled:
            out.append(EarlyStopping(metric, mode, es.patience))
        if self.run_dir is not None and main:
            out.append(Checkpointer(self.run_dir, metric=metric, mode=mode, save_last=True))
        return out

    def _watched_metric(self) -> tuple[tuple[str, str], str]:
        """(metric, mode) that picks the kept checkpoint (and stops early), and the rule in words.
        Without a validation split a validation metric cannot be watched: the lowest training
        loss is (Fawaz et al. 2019's rule for small UCR/UEA sets)."""
        es, data = self.config.train.early_stopping, self.config.data
        if self.val_loader is not None or not es.metric.startswith("val_"):
            return (es.metric, es.mode), f"the checkpoint with the best {es.metric} is kept"
        why = {"none": "data.validation=none",
               "auto": f"data.validation=auto and {len(self.bundle.train)} training series"}.get(
            data.validation, "the validation split is empty")
        return ("train_loss", "min"), (f"no validation split ({why}): every training series trains and the "
                                       "epoch with the lowest training loss is kept")

    # ---- control ----------------------------------------------------------------------------
    def request_stop(self, status: str, message: str) -> None:
        """Stop after the current step (the first request wins). status: completed | cancelled |
        diverged | pruned (a sweep stopped the trial at an epoch's end; the test split is skipped)."""
        if self.stop_status is None:
            self.stop_status, self.stop_message = status, message
            self.recorder.event(message, "warning" if status in ("cancelled", "diverged", "pruned") else "info")

    def _call(self, hook: str, *args: Any) -> None:
        for cb in self.callbacks:
            getattr(cb, hook)(self, *args)

    def checkpointer(self) -> Checkpointer | None:
        return next((cb for cb in self.callbacks if isinstance(cb, Checkpointer)), None)

    def _autocast(self):
        if self.amp_dtype is None:
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    # ---- resume -------------------------------------------------------------------------------
    def load_training_state(self, path: str | Path) -> None:
        """Restore model, optimizer, scheduler, scaler, callbacks and RNG from a checkpoint
        (under torchrun rank 0 reads it and every rank loads rank 0's copy)."""
        state = distributed.broadcast(read_checkpoint(path, "cpu") if self.rank == 0 else None)
        check_model_state(self.model, state["model"], path, self.config.model.name, state.get("model_name"))
        try:  # a damaged or foreign last.pt is one line (ConfigError), not a traceback
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            if self.scheduler is not None and state.get("scheduler") is not None:
                self.scheduler.load_state_dict(state["scheduler"])
                if isinstance(self.scheduler, OneCycleLR):  # a resume with more epochs stretches the cycle
                    self.scheduler.total_steps = self.total_steps
            if self.scaler is not None and state.get("scaler"):
                self.scaler.load_state_dict(state["scaler"])
            for cb in self.callbacks:
                if cb.key in state.get("callbacks", {}):
                    cb.load_state_dict(state["callbacks"][cb.key])
            self.start_epoch = int(state["epoch"])
            self.global_step = int(state["global_step"])
            set_rng_state(state["rng"])
        except (KeyError, IndexError, TypeError, ValueError, RuntimeError, AttributeError) as error:
            raise ConfigError(f"checkpoint {path} cannot be resumed from: its training state does not fit this "
                              f"run ({type(error).__name__}); train the run again") from None
        self.recorder.event(f"resumed from {Path(path).name if path else 'the checkpoint'} after epoch "
                            f"{self.start_epoch} (step {self.global_step})")

    # ---- the loop -------------------------------------------------------------------------------
    def fit(self, resume_from: str | Path | None = None) -> FitResult:
        """Train for the configured epochs (from a checkpoint's epoch when resuming; under
        torchrun rank 0's `resume_from` decides for every rank)."""
        self._fit_threads_to_load("while the run started", first=True)
        if distributed.broadcast(resume_from is not None):
            self.load_training_state(resume_from)
        else:  # data-fitted buffers (MiniRocket's biases) before the first epoch; a resume has them
            closed_form.fit_to_training_data(self)
        for level, message in self.notes:
            self.recorder.event(message, level)
        n_params = sum(p.numel() for p in self.model.parameters())
        where = f"{self.world} processes ({self.device.type}, {self.local_batch} examples each per step)" \
            if self.world > 1 else str(self.device)
        self.recorder.event(f"training {self.config.model.name} ({n_params:,} parameters) on {where}: "
                            f"{len(self.bundle.train)} train / {len(self.bundle.val)} val / {len(self.bundle.test)} test "
                            f"examples, {self.steps_per_epoch} steps per epoch; {self.epochs_rule}")
        self._call("on_fit_start")
        final: dict[str, float] = {}
        completed = self.start_epoch
        try:
            for epoch in range(self.start_epoch, self.epochs):
                self.epoch = epoch
                self._call("on_epoch_start", epoch)
                train_metrics = self.closed_form(epoch) if self.closed_form else self._train_epoch(epoch)
                if self.stop_status in ("cancelled", "diverged"):
                    break
                final = self._end_epoch(epoch, train_metrics)
                completed = epoch + 1
                self._adapt_loader(epoch, train_metrics)
                self._fit_threads_to_load(f"during epoch {epoch + 1}")
                if self.stop_status is not None:
                    break
            test_metrics = {}
            if self.stop_status in (None, "completed"):
                test_metrics = self._test()
        finally:
            self._call("on_fit_end")
            self.recorder.flush()
        status = self.stop_status or "completed"
        ckpt = self.checkpointer()
        utilization = next((cb for cb in self.callbacks if isinstance(cb, Utilization)), None)
        return FitResult(status=status, message=self.stop_message, epochs_completed=completed,
                         global_step=self.global_step, best_metric=ckpt.best if ckpt else None,
                         best_epoch=ckpt.best_epoch if ckpt else None, final_metrics=final,
                         test_metrics=test_metrics, epochs_rule=self.epochs_rule,
                         **(utilization.summary() if utilization else {}))

    def _train_epoch(self, epoch: int) -> dict[str, Any]:
        model, optimizer, scaler = self.train_model, self.optimizer, self.scaler
        clip = self.config.train.grad_clip
        mixup_alpha = self.config.train.mixup_alpha
        per_step_schedule = self.scheduler is not None and not isinstance(self.scheduler, ReduceLROnPlateau)
        params = [p for p in model.parameters() if p.requires_grad]
        # the epoch's order depends only on (seed, epoch), so a resumed run sees the same batches
        self.train_sampler.set_epoch(epoch)
        model.train()
        logits_seen, targets_seen = [], []
        loss_sum, n_seen = 0.0, 0
        started = fetch_started = time.perf_counter()
        data_wait = 0.0  # seconds the step waited for its batch (the loader's work in this process)
        for x, y in self.train_loader:
            data_wait += time.perf_counter() - fetch_started
            step = self.global_step + 1
            self._call("on_step_start", step)
            x = x.to(self.device, non_blocking=True)
            y = y.to(self.device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            if mixup_alpha > 0:
                x, y_other, lam = mix_batch(x, y, mixup_alpha)
            with self._autocast():
                logits = self._forward(model, x)  # (B, C, T) -> (B, K)
            if mixup_alpha > 0:
                loss = mixed_loss(self.criterion, logits.float(), y, y_other, lam)
                y = dominant_labels(y, y_other, lam)
            else:
                loss = self.criterion(logits.float(), y)
            self._call("on_before_backward", step)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
            else:
                loss.backward()
            self.last_loss = distributed.mean(loss.item())  # the global batch's loss on every rank
            self._call("on_after_backward", step)
            if self.stop_status == "diverged":
                self.global_step = step
                self._call("on_step_end", step)
                break
            if clip:
                self.last_grad_norm = nn.utils.clip_grad_norm_(params, clip, foreach=True)
            self._call("on_before_optimizer_step", step)
            lr = optimizer.param_groups[0]["lr"]
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            if per_step_schedule:
                self.scheduler.step()
            self.global_step = step
            batch = len(y)
            loss_sum += self.last_loss * batch
            n_seen += batch
            logits_seen.append(logits.detach())
            targets_seen.append(y)
            self.recorder.metric(step, epoch, "step", "loss", self.last_loss)
            self.recorder.metric(step, epoch, "step", "lr", lr)
            self._call("on_step_end", step)
            if distributed.any_rank(self.stop_status is not None) and self.stop_status is None:
                # the same words as the rank the stop reached first: which rank hears a group's
                # SIGTERM first is a race, and the run's message is rank 0's
                self.request_stop("cancelled", f"cancelled at step {step} (epoch {self.epoch + 1}), with the other "
                                  "processes of this run")
            if self.stop_status is not None:
                break
            fetch_started = time.perf_counter()
        seconds = time.perf_counter() - started
        loss_sum, n_seen = distributed.total([loss_sum, float(n_seen)])  # over every rank's shard
        return {"logits": distributed.gather_to_main(logits_seen), "targets": distributed.gather_to_main(targets_seen),
                "loss": loss_sum / max(1.0, n_seen), "seconds": seconds, "samples": int(n_seen),
                "data_wait": data_wait}

    def _forward(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """A training forward: through the compiled module (train.compile) unless a callback
        hooked a layer for this step. A compile that fails (no C compiler, an unsupported
        operator) leaves the run in eager mode with a warning instead of ending it."""
        if self.compiled is None or any(m._forward_hooks or m._forward_pre_hooks for m in self._hookable):
            return model(x)
        if self._compiled_once:
            return self.compiled(x)
        try:
            out = self.compiled(x)
        except Exception as error:  # noqa: BLE001 - torch raises many kinds while compiling
            self.compiled = None
            first = (str(error).strip().splitlines() or [""])[0][:300]
            message = f"train.compile: torch.compile failed ({type(error).__name__}: {first}); training " \
                      "continues without it"
            self.notes.append(("warning", message))
            self.recorder.event(message, "warning")
            return model(x)
        self._compiled_once = True
        return out

    @torch.no_grad()
    def evaluate(self, loader: DataLoader) -> tuple[torch.Tensor, torch.Tensor, float]:
        """(logits (N, K), targets (N,), mean cross-entropy) over a loader, in eval mode."""
        self.model.eval()
        logits_all, targets_all, loss_sum, n = [], [], 0.0, 0
        for x, y in loader:
            x = x.to(self.device, non_blocking=True)
            y = y.to(self.device, non_blocking=True)
            with self._autocast():
                logits = self.model(x).float()
            loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
            n += len(y)
            logits_all.append(logits)
            targets_all.append(y)
        self.model.train()
        return torch.cat(logits_all), torch.cat(targets_all), loss_sum / max(1, n)

    def _record_split(self, split: str, epoch: int, logits: torch.Tensor, targets: torch.Tensor,
                      loss: float) -> dict[str, float]:
        m = classification_metrics(logits, targets, self.bundle.class_names, loss=loss)
        self.recorder.metrics(self.global_step, epoch, split, m.scalars)
        self.recorder.report(self.global_step, epoch, split, "confusion_matrix", m.confusion)
        self.recorder.report(self.global_step, epoch, split, "per_class", m.per_class)
        return {f"{split}_{k}": v for k, v in m.scalars.items()}

    def _end_epoch(self, epoch: int, train: dict[str, Any]) -> dict[str, float]:
        # the epoch's metrics reach the store only once the Checkpointer (a built-in callback,
        # before the caller's: the store writer flushes after it) has saved the epoch: a kill
        # between the two never leaves a reported epoch without its checkpoint
        held = getattr(self.recorder, "held", None)
        with held() if held is not None else contextlib.nullcontext():
            return self._end_epoch_held(epoch, train)

    def _end_epoch_held(self, epoch: int, train: dict[str, Any]) -> dict[str, float]:
        metrics: dict[str, float] = {}
        if self.rank == 0:  # every rank's training answers, and the whole validation split
            if train["logits"]:
                metrics.update(self._record_split("train", epoch, torch.cat(train["logits"]),
                                                  torch.cat(train["targets"]), train["loss"]))
            extra = {"weight_norm": weight_l2_norm(self.model), "epoch_seconds": train["seconds"],
                     "samples_per_sec": train["samples"] / max(train["seconds"], 1e-9),
                     "data_wait_share": train.get("data_wait", 0.0) / max(train["seconds"], 1e-9),
                     "lr": self.optimizer.param_groups[0]["lr"]}
            self.recorder.metrics(self.global_step, epoch, "train", extra)
            metrics.update({f"train_{k}": v for k, v in extra.items()})
            if self.val_loader is not None:
                logits, targets, loss = self.evaluate(self.val_loader)
                metrics.update(self._record_split("val", epoch, logits, targets, loss))
        metrics = distributed.broadcast(metrics)  # early stopping and the plateau schedule decide alike
        if isinstance(self.scheduler, ReduceLROnPlateau):
            self.scheduler.step(metrics["val_loss"])
        self._call("on_epoch_end", epoch, metrics)
        if self.world > 1:  # a stop decided at the epoch's end on rank 0 (a sweep's pruning) holds for all
            self.stop_status, self.stop_message = distributed.broadcast((self.stop_status, self.stop_message))
        return metrics

    def _test(self) -> dict[str, float]:
        if self.test_loader is None or self.rank != 0:
            return {}
        ckpt = self.checkpointer()
        if ckpt is not None and ckpt.best_path.exists():
            state = read_checkpoint(ckpt.best_path, self.device)
            self.model.load_state_dict(state["model"])
            self.recorder.event(f"test split evaluated with the best checkpoint (epoch {ckpt.best_epoch + 1}, "
                                f"{ckpt.metric}={ckpt.best:.4g})")
        logits, targets, loss = self.evaluate(self.test_loader)
        out = self._record_split("test", self.epoch, logits, targets, loss)
        self.recorder.flush()
        return out

