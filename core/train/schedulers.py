"""Learning-rate schedules built from a RunConfig (optimizers: core.train.optimizers).

Every schedule except "plateau" is stepped once per optimizer step, so the dashboard can
draw the curve a config will follow without training (`lr_curve`), and that curve is
exactly what training uses (both go through `build_scheduler`).

Schedules (`ScheduleConfig.name`):
- "none":   constant lr (after an optional linear warm-up of `warmup_epochs`).
- "cosine": optional linear warm-up, then cosine from lr to `min_lr` at the last step.
- "linear": optional linear warm-up, then a straight line from lr to `min_lr` at the last step.
- "onecycle": torch's OneCycleLR with max_lr = lr; `warmup_epochs` sets the rising part
  (default 30 % of training).
- "step":   lr × `gamma` every `step_size` epochs (optional warm-up).
- "warmup_exp_cosine": the seed audio model's schedule. On a 120-epoch run: linear warm-up
  for 15 epochs, ×0.96 per epoch until epoch 60, then cosine to `min_lr` at 120. Shorter or
  longer runs scale all three boundaries by epochs/120 and the decay rate with them (the
  lr at each boundary is the same as on 120 epochs). `warmup_epochs` > 0 overrides the
  scaled warm-up length. The decay factor is fixed at 0.96 (`gamma` belongs to "step").
- "plateau": ReduceLROnPlateau on the validation loss, × `plateau_factor` after
  `plateau_patience` epochs without improvement; stepped once per epoch. Its future
  depends on the run, so `lr_curve` draws it flat at lr.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, OneCycleLR, ReduceLROnPlateau

from core.config import RunConfig, ScheduleConfig
from core.errors import ConfigError
from core.train.optimizers import build_optimizer

SEED_EPOCHS, SEED_WARMUP, SEED_EXP_END, SEED_DECAY = 120.0, 15.0, 60.0, 0.96


@dataclass(frozen=True)
class ScheduleSpec:
    """One schedule: help, the ScheduleConfig fields it reads (the form and validation show
    only those), and either `factor` (a LambdaLR multiplier, stepped per optimizer step) or
    `build` (a scheduler of its own). Adding a schedule is one entry in SCHEDULES."""

    name: str
    help: str
    uses: tuple[str, ...]
    factor: Callable[[ScheduleConfig, float, int, int], Callable[[int], float]] | None = None
    build: Callable[[torch.optim.Optimizer, ScheduleConfig, int, int], object] | None = None


def _warmup(cfg: ScheduleConfig, steps_per_epoch: int) -> Callable[[int], float | None]:
    """The linear warm-up factor at a step, or None once it is over."""
    warm = max(0.0, cfg.warmup_epochs) * max(1, steps_per_epoch)

    def factor(step: int) -> float | None:
        return (step + 1) / warm if warm > 0 and step < warm else None
    return factor


def _floor(cfg: ScheduleConfig, base_lr: float) -> float:
    return min(1.0, cfg.min_lr / base_lr) if base_lr > 0 else 0.0


def _constant(cfg: ScheduleConfig, base_lr: float, epochs: int, spe: int) -> Callable[[int], float]:
    warmup = _warmup(cfg, spe)
    return lambda step: warmup(step) or 1.0


def _annealed(curve: Callable[[float], float]):
    """A schedule factor: the optional warm-up, then from lr (curve 1) to min_lr (curve 0) as
    `curve(progress)` goes over the steps after the warm-up."""
    def factor(cfg: ScheduleConfig, base_lr: float, epochs: int, spe: int) -> Callable[[int], float]:
        warmup, floor = _warmup(cfg, spe), _floor(cfg, base_lr)
        total, warm = max(1, epochs * spe), max(0.0, cfg.warmup_epochs) * max(1, spe)

        def at(step: int) -> float:
            w = warmup(step)
            if w is not None:
                return w
            return floor + (1 - floor) * curve(min(1.0, (step - warm) / max(1.0, total - warm)))
        return at
    return factor


_cosine = _annealed(lambda progress: 0.5 * (1 + math.cos(math.pi * progress)))
_linear = _annealed(lambda progress: 1.0 - progress)  # BERT-style straight line


def _step(cfg: ScheduleConfig, base_lr: float, epochs: int, spe: int) -> Callable[[int], float]:
    if cfg.step_size < 1:
        raise ConfigError(f"schedule.step_size={cfg.step_size}: give a whole number of epochs >= 1")
    warmup = _warmup(cfg, spe)

    def stepwise(step: int) -> float:
        w = warmup(step)
        return w if w is not None else cfg.gamma ** (step // max(1, spe) // cfg.step_size)
    return stepwise


def _seed(cfg: ScheduleConfig, base_lr: float, epochs: int, spe: int) -> Callable[[int], float]:
    spe = max(1, spe)
    total, floor = max(1, epochs * spe), _floor(cfg, base_lr)
    warm = max(0.0, cfg.warmup_epochs) * spe
    scale = epochs / SEED_EPOCHS
    warm_steps = warm if warm > 0 else SEED_WARMUP * scale * spe
    exp_end = max(warm_steps, SEED_EXP_END * scale * spe)
    # decay per step so that the lr at exp_end equals the seed's: 0.96 ** 45
    seed_decay_epochs = SEED_EXP_END - SEED_WARMUP
    per_step = SEED_DECAY ** (seed_decay_epochs / max(1.0, exp_end - warm_steps))
    at_exp_end = SEED_DECAY ** seed_decay_epochs

    def seed_schedule(step: int) -> float:
        if step < warm_steps:
            return (step + 1) / warm_steps
        if step < exp_end:
            return per_step ** (step - warm_steps)
        progress = min(1.0, (step - exp_end) / max(1.0, total - exp_end))
        low = min(floor, at_exp_end)
        return low + (at_exp_end - low) * 0.5 * (1 + math.cos(math.pi * progress))
    return seed_schedule


def _onecycle(optimizer: torch.optim.Optimizer, cfg: ScheduleConfig, epochs: int, spe: int) -> LRScheduler:
    pct = cfg.warmup_epochs / epochs if cfg.warmup_epochs > 0 else 0.3
    pct = min(max(pct, 1e-3), 0.99)
    max_lrs = [g["lr"] for g in optimizer.param_groups]
    return OneCycleLR(optimizer, max_lr=max_lrs, total_steps=epochs * spe, pct_start=pct,
                      cycle_momentum=isinstance(optimizer, torch.optim.SGD))


def _plateau(optimizer: torch.optim.Optimizer, cfg: ScheduleConfig, epochs: int, spe: int) -> ReduceLROnPlateau:
    return ReduceLROnPlateau(optimizer, mode="min", factor=cfg.plateau_factor, patience=cfg.plateau_patience,
                             min_lr=cfg.min_lr)


SCHEDULES: dict[str, ScheduleSpec] = {s.name: s for s in (
    ScheduleSpec("none", "constant learning rate (after an optional warm-up)", ("warmup_epochs",), factor=_constant),
    ScheduleSpec("cosine", "cosine from lr down to min lr at the last step", ("warmup_epochs", "min_lr"),
                 factor=_cosine),
    ScheduleSpec("linear", "warm-up, then a straight line from lr down to min lr at the last step",
                 ("warmup_epochs", "min_lr"), factor=_linear),
    ScheduleSpec("onecycle", "rise to lr then anneal (one-cycle; warm-up sets the rising part, default 30 %)",
                 ("warmup_epochs",), build=_onecycle),
    ScheduleSpec("step", "multiply by gamma every step size epochs", ("warmup_epochs", "step_size", "gamma"),
                 factor=_step),
    ScheduleSpec("warmup_exp_cosine", "seed schedule: warm-up, x0.96 per epoch, then cosine (scaled to the epochs; "
                 "warm-up 0 = its scaled 15/120)", ("warmup_epochs", "min_lr"), factor=_seed),
    ScheduleSpec("plateau", "lower lr when the validation loss stops improving (depends on the run)",
                 ("min_lr", "plateau_patience", "plateau_factor"), build=_plateau),
)}


def lr_factor_fn(cfg: ScheduleConfig, base_lr: float, epochs: int, steps_per_epoch: int) -> Callable[[int], float]:
    """The multiplier of the base lr after `step` optimizer steps (for LambdaLR schedules)."""
    spec = SCHEDULES.get(cfg.name)
    if spec is None or spec.factor is None:
        raise ConfigError(f"schedule.name={cfg.name!r} has no per-step factor")
    return spec.factor(cfg, base_lr, epochs, steps_per_epoch)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: ScheduleConfig, epochs: int,
                    steps_per_epoch: int) -> LRScheduler | ReduceLROnPlateau | None:
    """The scheduler for a run; None for "none" without warm-up. Step it per optimizer
    step, except ReduceLROnPlateau, which is stepped per epoch with the val loss."""
    spec = SCHEDULES.get(cfg.name)
    if spec is None:
        raise ConfigError(f"schedule.name={cfg.name!r} is unknown; use one of {', '.join(SCHEDULES)}")
    if epochs < 1 or steps_per_epoch < 1:
        raise ConfigError(f"a schedule needs at least one epoch and one step (got {epochs} epochs, "
                          f"{steps_per_epoch} steps per epoch): lower train.batch_size or add data")
    if spec.build is not None:
        return spec.build(optimizer, cfg, epochs, steps_per_epoch)
    if cfg.name == "none" and cfg.warmup_epochs <= 0:
        return None
    base = optimizer.param_groups[0]["lr"]
    return LambdaLR(optimizer, lr_factor_fn(cfg, base, epochs, steps_per_epoch))


def steps_per_epoch_for(n_train: int, batch_size: int) -> int:
    """Optimizer steps in one epoch (the last partial batch is kept)."""
    return max(1, math.ceil(n_train / max(1, batch_size)))


def lr_curve(cfg: RunConfig, steps_per_epoch: int) -> list[float]:
    """The learning rate at every optimizer step of a run with this config, computed
    without training (one value per step, epochs × steps_per_epoch values)."""
    param = nn.Parameter(torch.zeros(1))
    optimizer = build_optimizer([param], cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.schedule, cfg.train.epochs, steps_per_epoch)
    total = cfg.train.epochs * steps_per_epoch
    out = []
    for _ in range(total):
        out.append(optimizer.param_groups[0]["lr"])
        if scheduler is not None and not isinstance(scheduler, ReduceLROnPlateau):
            optimizer.step()  # keeps torch from warning about scheduler-before-optimizer order
            scheduler.step()
    return out
