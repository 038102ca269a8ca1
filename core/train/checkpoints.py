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

Loading trusts nothing in the folder: a file that is empty, cut short, not a PyTorch archive,
or holds pickled objects; a classes.json that is not JSON, lacks a key, has a wrong type,
repeats a class name or declares an input over `limits().max_input_values`; a state dict of
another model, with layers missing or extra, of another shape, or holding NaN/inf — each is a
ConfigError of one line naming the file, what is wrong and what to do. The model is first
built on the meta device and the checkpoint's shapes compared with it, so nothing the folder
declares is allocated before it is known to fit.

    loaded = load_checkpoint("runs/20250101-120000-3fa9c2")   # best.pt, else last.pt
    loaded.model(x)  # (B, C, T) -> (B, K) logits, in eval mode
"""
from __future__ import annotations

import json
import math
import os
import pickle
import random
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from core.config import RunConfig
from core.errors import ConfigError, SigscopeError
from core.train.callbacks import Callback, better

if TYPE_CHECKING:
    from core.train.trainer import Trainer

FORMAT = 1


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` so that a reader never sees half a file (a temporary file of this
    process, then renamed: two processes writing at once do not share a temporary file)."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
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


REPLACE_HINT = "put back the run's own file, or train the run again"


def read_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> dict:
    """Load a .pt checkpoint safely (weights_only=True). A file Sigscope did not write, or one
    damaged since, is a ConfigError naming the file and what is wrong, never a traceback."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no checkpoint at {path}: give a run folder or a .pt file that exists")
    if path.stat().st_size == 0:
        raise ConfigError(f"checkpoint {path} is empty (0 bytes): {REPLACE_HINT}")
    problem = _archive_problem(path)
    if problem:
        raise ConfigError(f"checkpoint {path} {problem}: {REPLACE_HINT}")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError:  # weights_only met something other than tensors and plain values
        raise ConfigError(f"checkpoint {path} holds Python objects, not only tensors and numbers: it was refused "
                          f"unread (Sigscope loads weights only); {REPLACE_HINT}") from None
    except MemoryError:
        raise ConfigError(f"checkpoint {path} does not fit in memory: free memory, or {REPLACE_HINT}") from None
    except Exception as error:  # noqa: BLE001 - a damaged archive raises whatever its reader meets
        raise ConfigError(f"checkpoint {path} could not be read ({type(error).__name__}: the archive is damaged "
                          f"or cut short): {REPLACE_HINT}") from None
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
        raise ConfigError(f"{path} is not a Sigscope checkpoint (no model state_dict inside): {REPLACE_HINT}")
    return state


def _archive_problem(path: Path) -> str | None:
    """What makes `path` not an archive torch.save writes (a zip of stored, uncompressed members), or None."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return "is not a PyTorch checkpoint archive (cut short, damaged, or another kind of file)"
    if not members:
        return "is an empty archive, not a PyTorch checkpoint"
    if any(m.compress_type != zipfile.ZIP_STORED for m in members):
        return "has compressed members, which torch.save never writes (not a PyTorch checkpoint)"
    return None


def check_model_state(model: nn.Module, given: Any, path: Path | str, model_name: str,
                      saved_by: Any = None) -> None:
    """ConfigError (one line) unless `given` is a state dict `model` takes as it is: the same
    layers, each of the same shape, every value finite. `model` may live on the meta device."""
    expected = model.state_dict()
    if not isinstance(given, dict) or not all(isinstance(k, str) for k in given):
        raise ConfigError(f"checkpoint {path} holds no layer-name -> tensor table for the model: {REPLACE_HINT}")
    missing = [k for k in expected if k not in given]
    extra = [k for k in given if k not in expected]
    if missing or extra:
        what = []
        if missing:
            what.append(f"lacks {len(missing)} of the model's {len(expected)} tensors (first: {missing[0]})")
        if extra:
            what.append(f"has {len(extra)} tensor(s) the model does not (first: {_quoted(extra[0])})")
        other = (f" (it was saved from a {saved_by} model)" if isinstance(saved_by, str) and saved_by != model_name
                 and _is_zoo_model(saved_by) else "")
        raise ConfigError(f"checkpoint {path} does not fit the run's model {model_name}{other}: it "
                          + " and ".join(what) + f"; the file is from another model or run: {REPLACE_HINT}")
    for name, want in expected.items():
        got = given[name]
        if not isinstance(got, torch.Tensor):
            raise ConfigError(f"checkpoint {path}: layer {name} is a {type(got).__name__}, not a tensor: "
                              f"{REPLACE_HINT}")
        if tuple(got.shape) != tuple(want.shape):
            raise ConfigError(f"checkpoint {path}: layer {name} has shape {_shape(got.shape)}, the run's model needs "
                              f"{_shape(want.shape)}; the checkpoint and the run's config.json/classes.json disagree: "
                              f"{REPLACE_HINT}")
        if got.is_complex() != want.is_complex() or (want.is_floating_point() and not
                                                     (got.is_floating_point() or got.is_complex())):
            raise ConfigError(f"checkpoint {path}: layer {name} holds {got.dtype} values, the run's model needs "
                              f"{want.dtype}: {REPLACE_HINT}")
    for name in expected:
        got = given[name]
        if got.is_floating_point() or got.is_complex():
            bad = int((~torch.isfinite(got)).sum())
            if bad:
                raise ConfigError(f"checkpoint {path}: layer {name} holds {bad:,} non-finite value(s) (NaN or inf) "
                                  f"of {got.numel():,}; the weights diverged before it was saved, or the file is "
                                  "damaged: use the run's other checkpoint (best/last) or train the run again")


def _shape(shape) -> str:
    return "(" + ", ".join(str(int(v)) for v in shape) + ")"


def _quoted(text: str, limit: int = 60) -> str:
    """A name read from a file, quoted on one line and cut short (never the file's content at length)."""
    quoted = repr(text)
    return quoted if len(quoted) <= limit else quoted[:limit - 4] + "...'"


def _is_zoo_model(name: str) -> bool:
    from core.models import registry
    return name in registry.list_models()


def read_json_file(path: Path, what: str) -> Any:
    """A run folder's JSON file, parsed, or ConfigError naming the file and the position of the fault."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path} is not UTF-8 text (byte {e.start}): {REPLACE_HINT}") from None
    except OSError as e:
        raise ConfigError(f"{path} cannot be read ({e.strerror or type(e).__name__}): {REPLACE_HINT}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path} is not valid JSON (line {e.lineno}, column {e.colno}): it should hold the run's "
                          f"{what}; {REPLACE_HINT}") from None
    except (ValueError, RecursionError):
        raise ConfigError(f"{path} is not JSON Sigscope can read (nested too deeply or a number too long): "
                          f"{REPLACE_HINT}") from None


def read_run_config(folder: Path) -> RunConfig:
    """The run's config.json, or ConfigError naming the file and the problem."""
    path = folder / "config.json"
    data = read_json_file(path, "configuration")
    try:
        return RunConfig.from_dict(data)
    except SigscopeError as e:
        raise ConfigError(f"{path}: {_one_line(e)}") from None
    except Exception as e:  # noqa: BLE001 - a hand-edited config can fail in any constructor
        raise ConfigError(f"{path} does not describe a run ({type(e).__name__}): {REPLACE_HINT}") from None


def read_run_meta(folder: Path) -> dict:
    """classes.json checked before anything is built from it: class_names (distinct, non-empty
    strings), input_shape (2 or 3 positive sizes, at most `limits().max_input_values` values),
    channel_names (strings) and sample_rate (a positive number) when present."""
    from core.limits import how_to_raise, limits

    path = folder / "classes.json"
    meta = read_json_file(path, "class names and input shape")
    if not isinstance(meta, dict):
        raise ConfigError(f"{path} must be a JSON object with class_names and input_shape, not a "
                          f"{_json_type(meta)}: {REPLACE_HINT}")
    for key in ("class_names", "input_shape"):
        if key not in meta:
            raise ConfigError(f"{path} has no {key}: {REPLACE_HINT}")
    names = meta["class_names"]
    if not isinstance(names, list) or not names:
        raise ConfigError(f"{path}: class_names must be a non-empty list of class names, not a "
                          f"{'empty list' if names == [] else _json_type(names)}: {REPLACE_HINT}")
    for i, n in enumerate(names):
        if not isinstance(n, str) or not n.strip():
            what = "an empty name" if isinstance(n, str) else "a " + _json_type(n)
            raise ConfigError(f"{path}: class_names[{i}] is {what}; every class name must be a non-empty string: "
                              f"{REPLACE_HINT}")
    seen: dict[str, int] = {}
    for i, n in enumerate(names):
        if n in seen:
            raise ConfigError(f"{path}: class name {_quoted(n, 40)} appears twice (class_names[{seen[n]}] and "
                              f"[{i}]); each class needs its own name: {REPLACE_HINT}")
        seen[n] = i
    shape = meta["input_shape"]
    if (not isinstance(shape, list) or len(shape) not in (2, 3)
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in shape)):
        raise ConfigError(f"{path}: input_shape must be 2 or 3 positive whole numbers ([channels, samples] or "
                          f"[planes, bands, frames]), not {_shape_text(shape)}: {REPLACE_HINT}")
    values, cap = math.prod(shape), limits().max_input_values
    if values > cap:
        raise ConfigError(f"{path}: input_shape {_shape_text(shape)} is {values:,} values per example, over the "
                          f"limit of {cap:,}; the file was edited or damaged ({REPLACE_HINT}), or "
                          f"{how_to_raise('max_input_values')}")
    channels = meta.get("channel_names", [])
    if channels is not None and (not isinstance(channels, list) or not all(isinstance(c, str) for c in channels)):
        raise ConfigError(f"{path}: channel_names must be a list of strings: {REPLACE_HINT}")
    kind = meta.get("input_kind")
    if kind is not None:
        from core.data.features import FEATURES
        from core.models.registry import INPUT_KINDS
        # feature names are taken too: hand-made run folders (the tests') use them
        if not isinstance(kind, str) or kind not in INPUT_KINDS + FEATURES:
            what = _quoted(kind, 30) if isinstance(kind, str) else "a " + _json_type(kind)
            raise ConfigError(f"{path}: input_kind must be one of {', '.join(INPUT_KINDS)}, not {what}: {REPLACE_HINT}")
    rate = meta.get("sample_rate")
    if rate is not None and (isinstance(rate, bool) or not isinstance(rate, (int, float))
                             or not math.isfinite(rate) or rate <= 0):
        raise ConfigError(f"{path}: sample_rate must be a positive number of Hz: {REPLACE_HINT}")
    return meta


def read_normalization(folder: Path) -> dict:
    """normalization.json, its statistics checked to be finite numbers. A missing one is refused:
    the model would see inputs without the normalization it was trained with (a silent wrong answer)."""
    path = folder / "normalization.json"
    if not path.is_file():
        raise ConfigError(f"{folder} has no normalization.json: the model would see inputs without the "
                          f"normalization it was trained with; {REPLACE_HINT}")
    norm = read_json_file(path, "normalization statistics")
    if not isinstance(norm, dict) or not isinstance(norm.get("kind", "none"), str):
        raise ConfigError(f"{path} must be a JSON object with the normalization's kind: {REPLACE_HINT}")
    for key in ("center", "scale"):
        if key in norm:
            try:
                values = np.asarray(norm[key], dtype=np.float64)
            except (TypeError, ValueError):
                raise ConfigError(f"{path}: {key} must be a table of numbers: {REPLACE_HINT}") from None
            finite = bool(np.isfinite(values).all())
            if not finite or (key == "scale" and (values <= 0).any()):
                raise ConfigError(f"{path}: {key} holds {'non-finite' if not finite else 'zero or negative'} values; "
                                  f"the normalization statistics are damaged: {REPLACE_HINT}")
    return norm


def _json_type(value: Any) -> str:
    return {dict: "object", list: "list", str: "string", bool: "true/false", int: "number", float: "number",
            type(None): "null"}.get(type(value), type(value).__name__)


def _shape_text(shape: Any) -> str:
    if isinstance(shape, list) and len(shape) <= 4 and all(isinstance(v, (int, float)) for v in shape):
        return "[" + ", ".join(str(v) for v in shape) + "]"
    return f"a {_json_type(shape)}" + (f" of {len(shape)} items" if isinstance(shape, list) else "")


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def build_run_model(config: RunConfig, meta: dict, device: str | torch.device = "meta") -> nn.Module:
    """The run's model as config.json and classes.json describe it (on the meta device by
    default: shapes only, nothing allocated), or ConfigError saying why it cannot be built."""
    from core.models import create

    folder_hint = "the run's config.json and classes.json"
    try:
        with torch.device(device):
            return create(config.model.name, tuple(meta["input_shape"]), len(meta["class_names"]),
                          **config.model.hparams)
    except SigscopeError as e:
        raise ConfigError(f"{folder_hint} describe a model that cannot be built: {_one_line(e)}") from None
    except Exception as e:  # noqa: BLE001 - hand-edited hyperparameters can fail in any constructor
        raise ConfigError(f"{folder_hint} describe a model that cannot be built ({type(e).__name__}: "
                          f"{_one_line(e)[:160]}): {REPLACE_HINT}") from None


def check_resume_checkpoint(path: Path, folder: Path, config: RunConfig) -> dict:
    """The training state in `path` (last.pt) if a run can continue from it, else ConfigError:
    readable, with the model's weights (fitting the run's model, finite), optimizer state,
    epoch, step and RNG state. The model's shapes come from classes.json; when that file is
    damaged (a resume writes it again) the weights and optimizer are checked by the Trainer
    instead, inside the job, where a misfit ends the run `failed` with one line."""
    state = read_checkpoint(path)
    for key, kind in (("optimizer", dict), ("rng", dict), ("epoch", int), ("global_step", int)):
        value = state.get(key)
        if not isinstance(value, kind) or isinstance(value, bool) or (kind is int and value < 0):
            raise ConfigError(f"checkpoint {path} has no valid {key} to resume from; it is not a last.pt Sigscope "
                              "wrote: train the run again (or start a new run from its config)")
    try:
        skeleton = build_run_model(config, read_run_meta(folder))
    except ConfigError:
        skeleton = None
    from core.train.optimizers import build_optimizer

    part = "optimizer"
    try:  # into the meta-device model's optimizer and fresh generators: nothing allocated, no global state touched
        if skeleton is not None:
            check_model_state(skeleton, state["model"], path, config.model.name, state.get("model_name"))
            build_optimizer([p for p in skeleton.parameters() if p.requires_grad], config.optim).load_state_dict(
                state["optimizer"])
        part = "random-number generator"
        rng = state["rng"]
        torch.Generator().set_state(rng["torch"])
        random.Random().setstate((3, tuple(rng["python"]), rng.get("python_gauss", rng.get("python_pos"))))
        np.random.RandomState().set_state(("MT19937", rng["numpy"].numpy().astype(np.uint32), rng["numpy_pos"], 0, 0.0))
    except SigscopeError:
        raise
    except Exception as error:  # noqa: BLE001 - a foreign state fails in whichever loader meets it first
        raise ConfigError(f"checkpoint {path}: its {part} state does not fit the run ({type(error).__name__}); it "
                          "is not this run's last.pt: train the run again") from None
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

    which: "best" (falls back to "last" when there is no best.pt) or "last". Every file is
    checked first (see the module doc): a bad one is a one-line ConfigError, and the model is
    allocated only once the checkpoint is known to fit it."""
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
    config = read_run_config(folder)
    meta = read_run_meta(folder)
    normalization = read_normalization(folder)
    state = read_checkpoint(ckpt, "cpu")
    check_model_state(build_run_model(config, meta), state["model"], ckpt, config.model.name, state.get("model_name"))
    epoch = state.get("epoch", 0)
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise ConfigError(f"checkpoint {ckpt}: its epoch is not a whole number: {REPLACE_HINT}")
    model = build_run_model(config, meta, "cpu")
    model.load_state_dict(state["model"])
    model.to(device).eval()
    return LoadedModel(model=model, config=config, class_names=list(meta["class_names"]), normalization=normalization,
                       meta=meta, checkpoint_path=ckpt, epoch=epoch)
