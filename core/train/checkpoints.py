"""Checkpoints: plain state_dicts and JSON, never pickled objects.

A run folder holds:
    config.json          the RunConfig
    normalization.json   the data normalization fitted on the training split
    classes.json         class names, channel names, input shape/kind, sample rate, model name
    checkpoints/last.pt  model + optimizer + scheduler + scaler + RNG state after the last epoch
    checkpoints/best.pt  the same at the best epoch of the monitored metric

`.pt` files hold only tensors, numbers, strings, lists and dicts, so they load with
`torch.load(..., weights_only=True)`. Files are written to a temporary name and renamed,
so a process killed mid-save never leaves a half-written checkpoint.

    loaded = load_checkpoint("runs/20250101-120000-3fa9c2")   # best.pt, else last.pt
    loaded.model(x)  # (B, C, T) -> (B, K) logits, in eval mode
"""
from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from core.config import RunConfig
from core.errors import ConfigError
from core.train.callbacks import Callback, better

if TYPE_CHECKING:
    from core.train.trainer import Trainer

FORMAT = 1


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def atomic_torch_save(obj: dict, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def rng_state() -> dict:
    """Torch (CPU and CUDA), Python and NumPy RNG states as tensors and plain values."""
    np_state = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1]),
             "python_gauss": random.getstate()[2], "numpy": torch.from_numpy(np_state[1].astype(np.int64)),
             "numpy_pos": int(np_state[2])}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((3, tuple(state["python"]), state.get("python_gauss", state.get("python_pos"))))
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), state["numpy_pos"], 0, 0.0))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def training_state(trainer: "Trainer", epochs_completed: int) -> dict:
    """Everything a resumed run needs, as weights_only-loadable values."""
    scheduler = trainer.scheduler
    return {
        "format": FORMAT,
        "model": trainer.model.state_dict(),
        "optimizer": trainer.optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": trainer.scaler.state_dict() if trainer.scaler is not None and trainer.scaler.is_enabled() else None,
        "epoch": epochs_completed,
        "global_step": trainer.global_step,
        "callbacks": {cb.key: cb.state_dict() for cb in trainer.callbacks if cb.state_dict()},
        "rng": rng_state(),
        "model_name": trainer.config.model.name,
    }


def read_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> dict:
    """Load a .pt checkpoint safely (weights_only=True)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no checkpoint at {path}: give a run folder or a .pt file that exists")
    state = torch.load(path, map_location=device, weights_only=True)
    if not isinstance(state, dict) or "model" not in state:
        raise ConfigError(f"{path} is not a Sigscope checkpoint (no model state_dict inside)")
    return state


def write_run_files(folder: Path, config: RunConfig, bundle: Any) -> dict[str, Path]:
    """config.json, normalization.json and classes.json for a run folder."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {"config": folder / "config.json", "normalization": folder / "normalization.json",
             "classes": folder / "classes.json"}
    atomic_write_text(files["config"], config.to_json())
    atomic_write_text(files["normalization"], json.dumps(bundle.normalization, indent=2, default=_tolist))
    atomic_write_text(files["classes"], json.dumps({
        "class_names": list(bundle.class_names), "channel_names": list(bundle.channel_names),
        "input_shape": list(bundle.input_shape), "input_kind": bundle.input_kind,
        "sample_rate": bundle.sample_rate, "model": config.model.name}, indent=2))
    return files


def _tolist(obj: Any) -> Any:
    return obj.tolist() if hasattr(obj, "tolist") else str(obj)


class Checkpointer(Callback):
    """Writes the run files at the start, `last.pt` after every epoch and `best.pt`
    whenever `metric` improves."""

    name = "checkpointer"

    def __init__(self, folder: str | Path, metric: str = "val_loss", mode: str = "min", save_last: bool = True) -> None:
        """folder: the run folder; metric/mode: what "best" means; save_last: write last.pt each epoch."""
        self.folder = Path(folder)
        self.metric, self.mode, self.save_last = metric, mode, save_last
        self.best: float | None = None
        self.best_epoch: int | None = None
        self._recorded: set[str] = set()

    @property
    def best_path(self) -> Path:
        return self.folder / "checkpoints" / "best.pt"

    @property
    def last_path(self) -> Path:
        return self.folder / "checkpoints" / "last.pt"

    def on_fit_start(self, trainer: "Trainer") -> None:
        (self.folder / "checkpoints").mkdir(parents=True, exist_ok=True)
        for kind, path in write_run_files(self.folder, trainer.config, trainer.bundle).items():
            self._artifact(trainer, kind, path)

    def _artifact(self, trainer: "Trainer", kind: str, path: Path, info: dict | None = None) -> None:
        if kind not in self._recorded:
            self._recorded.add(kind)
            trainer.recorder.artifact(kind, path, info)

    def on_epoch_end(self, trainer: "Trainer", epoch: int, metrics: dict[str, float]) -> None:
        value = metrics.get(self.metric)
        improved = value is not None and better(value, self.best, self.mode)
        if improved:
            self.best, self.best_epoch = value, epoch
        state = training_state(trainer, epoch + 1) if (improved or self.save_last) else None
        if self.save_last:
            atomic_torch_save(state, self.last_path)
            self._artifact(trainer, "checkpoint_last", self.last_path)
        if improved:
            atomic_torch_save(state, self.best_path)
            self._artifact(trainer, "checkpoint_best", self.best_path, {"metric": self.metric})
            trainer.recorder.event(f"best {self.metric}={value:.4g} at epoch {epoch + 1}: saved {self.best_path.name}")

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_epoch = state.get("best"), state.get("best_epoch")


@dataclass
class LoadedModel:
    """A model rebuilt from a run folder, in eval mode, with what inference needs."""

    model: nn.Module
    config: RunConfig
    class_names: list[str]
    normalization: dict
    meta: dict = field(default_factory=dict)  # classes.json: channel names, input shape/kind, rate
    checkpoint_path: Path | None = None
    epoch: int = 0


def load_checkpoint(path: str | Path, which: str = "best", device: str | torch.device = "cpu") -> LoadedModel:
    """Rebuild a trained model from a run folder (or a .pt file inside one).

    which: "best" (falls back to "last" when there is no best.pt) or "last"."""
    from core.models import create

    path = Path(path)
    if path.is_dir():
        folder = path
        ckpt = folder / "checkpoints" / f"{which}.pt"
        if not ckpt.exists() and which == "best":
            ckpt = folder / "checkpoints" / "last.pt"
    else:
        ckpt, folder = path, path.parent.parent
    for name in ("config.json", "classes.json"):
        if not (folder / name).is_file():
            raise ConfigError(f"{folder} has no {name}: point at a Sigscope run folder")
    config = RunConfig.from_json((folder / "config.json").read_text())
    meta = json.loads((folder / "classes.json").read_text())
    norm_file = folder / "normalization.json"
    normalization = json.loads(norm_file.read_text()) if norm_file.is_file() else {}
    state = read_checkpoint(ckpt, device)
    model = create(config.model.name, tuple(meta["input_shape"]), len(meta["class_names"]), **config.model.hparams)
    model.load_state_dict(state["model"])
    model.to(device).eval()
    return LoadedModel(model=model, config=config, class_names=list(meta["class_names"]), normalization=normalization,
                       meta=meta, checkpoint_path=ckpt, epoch=int(state.get("epoch", 0)))
