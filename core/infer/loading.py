"""Loading a trained run: the model in eval mode plus the exact pipeline it was trained with.

    predictor = load_run("20250101-120000-3fa9c2")       # rebuilt from config.json + best.pt
    predictor = load_run_dir("runs/<id>", which="last")
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from core.config import RunConfig
from core.data.audio import fit_clip
from core.data.features import featurize_audio
from core.data.normalize import apply_normalization
from core.data.windowing import seconds_or_samples
from core.errors import ConfigError, SigscopeError
from core.explain import token_spans

BATCH = 128  # windows per forward pass


@dataclass
class Predictor:
    """A trained run, ready to classify: the model in eval mode plus the exact pipeline.

    signal "audio": `window`/`stride` are samples at `sample_rate` (the training clip length
    and half of it); signal "imu": the run's window/stride in samples.
    """

    model: nn.Module
    config: RunConfig
    class_names: list[str]
    normalization: dict
    meta: dict
    signal: str
    sample_rate: float
    window: int
    stride: int
    channel_names: list[str]
    input_shape: tuple[int, ...]
    has_attention: bool
    run_id: str | None = None
    run_name: str = ""
    checkpoint: Path | None = None
    epoch: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    adapted: str = ""  # what its BatchNorm statistics were re-estimated on (adapt_batchnorm), if anything
    variant: str = ""  # the exported variant answering instead of the PyTorch model (core.infer.variants), if any

    @property
    def window_seconds(self) -> float:
        return self.window / self.sample_rate

    @property
    def features(self) -> str:
        return self.config.data.features if self.signal == "audio" else "raw"

    @property
    def step_seconds(self) -> float:
        """Seconds per step of the model input's time axis (a sample, or an STFT hop)."""
        if self.signal == "audio" and self.features != "raw":
            return self.config.data.hop_length / self.sample_rate
        return 1.0 / self.sample_rate

    @property
    def step_offset(self) -> float:
        """Centered STFT frames start half a hop before their centre."""
        return -0.5 * self.step_seconds if (self.signal == "audio" and self.features != "raw") else 0.0

    def spans(self, n_tokens: int) -> np.ndarray:
        """(n_tokens, 2) seconds inside a window covered by each of n tokens on the input's time axis."""
        return token_spans(n_tokens, self.input_shape[-1], self.step_seconds, self.step_offset, self.window_seconds)

    def describe(self) -> str:
        kind = "audio clips" if self.signal == "audio" else f"IMU windows ({', '.join(self.channel_names)})"
        return (f"{self.config.model.name} on {self.config.data.source}: {kind} of {self.window_seconds:g} s at "
                f"{self.sample_rate:g} Hz, {len(self.class_names)} classes" + (f"; {self.adapted}" if self.adapted else ""))

    # -- the pipeline ----------------------------------------------------------------------
    def inputs(self, signal: np.ndarray, starts: np.ndarray) -> np.ndarray:
        """Model inputs (N, *input_shape), normalized, for windows starting at `starts`.

        audio: signal (T,) at sample_rate -> clips zero-padded at the end -> features;
        imu: signal (T, C) -> (N, C, window)."""
        if self.signal == "audio":
            clips = np.stack([fit_clip(signal[s:s + self.window], self.window) for s in starts])  # (N, window)
            x = featurize_audio(clips, self.sample_rate, self.config.data)
        else:
            x = np.stack([signal[s:s + self.window].T for s in starts])  # (N, C, window)
        if tuple(x.shape[1:]) != self.input_shape:
            raise ConfigError(f"the run's stored pipeline gives inputs of shape {tuple(x.shape[1:])}, but the model "
                              f"was built for {self.input_shape}; the run folder's config.json and classes.json "
                              "disagree — retrain the run")
        return apply_normalization(x, self.normalization)

    def logits(self, x: np.ndarray) -> np.ndarray:
        """(N, *input_shape) -> (N, K) logits, in batches, without gradients."""
        out = []
        with torch.no_grad():
            for i in range(0, len(x), BATCH):
                out.append(self.model(torch.from_numpy(x[i:i + BATCH]).to(self.device)).float().cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, len(self.class_names)), np.float32)


def predictor_from_loaded(loaded, run_id: str | None = None, run_name: str = "") -> Predictor:
    """A Predictor from `core.train.load_checkpoint`'s LoadedModel."""
    from core.data.sources import get_source
    from core.models import registry

    cfg, meta = loaded.config, loaded.meta
    source = get_source(cfg.data.source)
    signal = source.signal
    rate = float(meta.get("sample_rate") or (cfg.data.sample_rate if signal == "audio" else 50.0))
    if signal == "audio":
        window = int(round(cfg.data.clip_seconds * rate))
        stride = max(1, window // 2)
    elif not source.windowed:  # whole fixed-length series (UEA/UCR): a window is the series the model was built for
        window = stride = int(meta["input_shape"][-1])
    else:
        window = seconds_or_samples(cfg.data.window, rate, "window")
        stride = seconds_or_samples(cfg.data.stride, rate, "stride")
    device = next(loaded.model.parameters()).device
    return Predictor(model=loaded.model, config=cfg, class_names=list(loaded.class_names),
                     normalization=loaded.normalization, meta=meta, signal=signal, sample_rate=rate,
                     window=window, stride=stride, channel_names=list(meta.get("channel_names") or []),
                     input_shape=tuple(int(v) for v in meta["input_shape"]),
                     has_attention=registry.spec(cfg.model.name).has_attention, run_id=run_id,
                     run_name=run_name, checkpoint=loaded.checkpoint_path, epoch=loaded.epoch, device=device)


def load_run_dir(folder: str | Path, which: str = "best", device: str = "cpu", run_id: str | None = None,
                 run_name: str = "") -> Predictor:
    """A Predictor from a run folder (config.json + classes.json + normalization.json + checkpoints/).

    Every failure is a SigscopeError of one line naming the file, what is wrong and what to do
    (a damaged or foreign checkpoint, a malformed classes.json, NaN weights: core.train.checkpoints)."""
    from core.train import load_checkpoint

    loaded = load_checkpoint(folder, which, device)
    try:
        return predictor_from_loaded(loaded, run_id or Path(folder).name, run_name)
    except SigscopeError as e:
        raise ConfigError(f"run folder {folder}: {' '.join(str(e).split())}") from None
    except Exception as e:  # noqa: BLE001 - a hand-edited run folder can fail anywhere in its pipeline
        raise ConfigError(f"run folder {folder} cannot be used to classify ({type(e).__name__}: its config.json "
                          "does not describe a pipeline Sigscope can rebuild); train the run again") from None


def load_run(run_id: str, store=None, which: str = "best", device: str = "cpu") -> Predictor:
    """A Predictor for a stored run by id: the model rebuilt from its config JSON, weights
    loaded with `weights_only=True` (best.pt, else last.pt), normalization as stored."""
    from core.store import Store

    store = store or Store()
    run = store.get_run(run_id)
    if run is None:
        raise ConfigError(f"no run {run_id!r} in {store.path}; see `python -m core runs list`")
    folder = Path(run["run_dir"] or "")
    ckpts = folder / "checkpoints"
    if not ((ckpts / "best.pt").is_file() or (ckpts / "last.pt").is_file()):
        raise ConfigError(f"run {run_id} ({run['status']}) has no checkpoint yet: it is saved at the end of "
                          "each epoch — wait for the first epoch, or pick a completed run")
    return load_run_dir(folder, which, device, run_id=run_id, run_name=run.get("name") or "")


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def one_blas_thread(threads: int | None = None):
    """numpy's BLAS single-threaded while classifying: its matrices here are small, and idle
    OpenBLAS threads spinning beside torch's made a 30 s clip 2-3x slower on a 2-core CPU.
    torch runs on `threads`, None = the count the caller has now (a page that wants the
    policy's wraps the call in compute_threads(inference_threads(store)); a benchmark that set
    its count keeps it). Through core.threads, so a job in another thread keeps its BLAS count."""
    from core.threads import compute_threads

    return compute_threads(threads or torch.get_num_threads(), purpose="inference", blas=1)
