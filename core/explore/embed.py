"""Embeddings of every window: through a trained run's model, or of the data before any model.

    emb = embed_run(run_id)                      # the run's forward_features on train+val+test windows
    emb.vectors, emb.table, emb.predicted, emb.confidence, emb.correct
    emb = embed_data(DataConfig(source="hapt"))  # before training: inputs flattened -> PCA (<= 50 dims)

A run's embedding is computed in one pass: `forward_features` on each batch, then
`forward_head` on those features gives the run's probabilities, so the map and the answers
agree window for window. It is cached in the run's folder (`explore/`), keyed on the
checkpoint file (its mtime and size), the run's data config and the splits asked for.
"""
from __future__ import annotations

import hashlib
import json
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from core.errors import ConfigError
from core.explore.windows import SPLITS, WindowTable, split_inputs, window_table

Progress = Callable[[int, int, str], None]
CACHE_DIR = "explore"  # inside a run's folder
CACHE_VERSION = 1
MAX_DATA_DIMS = 50  # embed_data's PCA keeps at most this many components


class EmbeddingError(ConfigError):
    """A run cannot be embedded (no checkpoint, a model without forward_features, no windows)."""


@dataclass
class Embedding:
    """One vector per window of `table`, and (for a run) the run's probabilities for it.

    kind "model": a run's forward_features; "features": the inputs flattened, standardized and
    reduced by PCA (embed_data), before any model: then probabilities, predicted, confidence
    and correct are None.
    """

    table: WindowTable
    vectors: np.ndarray              # (N, D) float32
    kind: str                        # "model" | "features"
    run_id: str | None
    probabilities: np.ndarray | None  # (N, K) the run's answers (None for "features")
    key: str = ""                    # what the embedding was computed from (projection cache key)
    seconds: float = 0.0             # how long computing it took (also when read from the cache)
    cached: bool = False             # read from the run's cache this time
    info: dict = field(default_factory=dict)  # model name, checkpoint, data source, ...

    def __len__(self) -> int:
        return len(self.vectors)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1]) if self.vectors.ndim == 2 else 0

    @property
    def predicted(self) -> np.ndarray | None:
        """(N,) int the run's predicted class index."""
        return None if self.probabilities is None else self.probabilities.argmax(axis=1)

    @property
    def confidence(self) -> np.ndarray | None:
        """(N,) float the probability of the predicted class."""
        return None if self.probabilities is None else self.probabilities.max(axis=1)

    @property
    def correct(self) -> np.ndarray | None:
        """(N,) bool predicted == true label."""
        return None if self.probabilities is None else self.predicted == self.table.labels


# ---- a run's model --------------------------------------------------------------------------
def model_embedding(predictor, x: np.ndarray, batch_size: int = 256,
                    progress: Progress | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(N, *input_shape) normalized inputs -> ((N, D) forward_features, (N, K) probabilities),
    batched, without gradients, on one thread (torch's and numpy's BLAS)."""
    import torch

    from core.infer.loading import softmax

    model = predictor.model
    name = predictor.config.model.name
    if not callable(getattr(model, "forward_features", None)) or not callable(getattr(model, "forward_head", None)):
        raise _no_features(predictor)
    batch_size = max(1, int(batch_size))
    features, logits = [], []
    total = len(x)
    model.eval()
    with _one_torch_thread():
        for start in range(0, total, batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(x[start:start + batch_size], dtype=np.float32))
            batch = batch.to(predictor.device)
            try:
                f = model.forward_features(batch)
            except NotImplementedError:
                raise _no_features(predictor) from None
            f = f.reshape(len(batch), -1)
            logits.append(model.forward_head(f).float().cpu().numpy())
            features.append(f.float().cpu().numpy())
            if progress is not None:
                progress(min(start + batch_size, total), total, "embedding")
    if not features:
        raise EmbeddingError(f"run {predictor.run_id} ({name}): no windows to embed")
    return np.concatenate(features).astype(np.float32), softmax(np.concatenate(logits)).astype(np.float32)


@contextmanager
def _one_torch_thread():
    """torch and numpy's BLAS single-threaded and without gradients while embedding: on a
    shared 2-core CPU, 2,000 HAPT windows through demo-imu took 4.7 s at torch's 2 threads and
    1.2 s at one (OpenMP barriers stall when other processes hold the cores). Only this
    thread's count changes (core.threads): a job in another thread keeps its own."""
    import torch

    from core.threads import compute_threads

    with compute_threads(1, purpose="embedding"), torch.no_grad():
        yield torch


def _no_features(predictor) -> EmbeddingError:
    return EmbeddingError(f"run {predictor.run_id}'s model {predictor.config.model.name} has no forward_features "
                          "embedding; explore a run of another model, or the data itself before any model "
                          "(embed_data)")


def checkpoint_file(run_dir: Path) -> Path | None:
    """The checkpoint a run is loaded from (best.pt, else last.pt), or None."""
    for name in ("best.pt", "last.pt"):
        path = Path(run_dir) / "checkpoints" / name
        if path.is_file():
            return path
    return None


def run_folder(run_id: str, store=None) -> Path:
    """The run's folder (as the store records it)."""
    from core.store import Store

    store = store or Store()
    run = store.get_run(run_id)
    if run is None:
        raise EmbeddingError(f"no run {run_id!r} in {store.path}; see `python -m core runs list`")
    if run.get("run_dir"):
        return Path(run["run_dir"])
    from core.paths import run_dir
    return run_dir(run_id, create=False)


def embed_run(run_id: str, store=None, splits: tuple[str, ...] = SPLITS, batch_size: int = 256,
              progress: Progress | None = None, use_cache: bool = True) -> Embedding:
    """The run's forward_features embedding of every window of its `splits`, with its
    probabilities; cached in the run's folder (explore/) until its checkpoint file changes.
    progress(done, total, stage) is called per batch (and once when loading the data)."""
    from core.store import Store

    store = store or Store()
    splits = _check_splits(splits)
    folder = run_folder(run_id, store)
    ckpt = checkpoint_file(folder)
    if ckpt is None:
        raise EmbeddingError(f"run {run_id} has no checkpoint (no best.pt or last.pt in {folder / 'checkpoints'}): "
                             "its weights were deleted or its first epoch has not ended; pick a run with weights")
    stat = ckpt.stat()
    run = store.get_run(run_id) or {}
    key = _key({"version": CACHE_VERSION, "checkpoint": ckpt.name, "mtime_ns": stat.st_mtime_ns,
                "size": stat.st_size, "splits": list(splits), "config": run.get("config")})
    cache = folder / CACHE_DIR / f"embedding-{'-'.join(splits)}"
    if use_cache:
        hit = _read_embedding(cache, key, run_id)
        if hit is not None:
            return hit

    from core.data import load
    from core.infer.loading import load_run

    started = time.perf_counter()
    predictor = load_run(run_id, store)
    if progress is not None:
        progress(0, 1, "loading data")
    bundle = load(predictor.config.data)
    table = window_table(bundle, splits)
    if len(table) == 0:
        raise EmbeddingError(f"run {run_id} has no windows in its {', '.join(splits)} split(s)")
    x = np.concatenate([split_inputs(predictor, bundle, s) for s in splits])
    vectors, probs = model_embedding(predictor, x, batch_size, progress)
    info = {"model": predictor.config.model.name, "checkpoint": str(ckpt), "source": predictor.config.data.source,
            "run_name": predictor.run_name, "splits": list(splits), "cache_dir": str(cache.parent)}
    emb = Embedding(table=table, vectors=vectors, kind="model", run_id=run_id, probabilities=probs, key=key,
                    seconds=time.perf_counter() - started, info=info)
    if use_cache:
        _write_embedding(cache, emb)
    return emb


# ---- the data before any model --------------------------------------------------------------
def embed_data(data_config, max_windows: int | None = None, seed: int = 0,
               progress: Progress | None = None) -> Embedding:
    """The data's windows (all splits), before any model: inputs as a model would see them
    (featurized, normalized with the training split's statistics), flattened, standardized per
    feature and reduced by PCA (seeded) to at most 50 dimensions. max_windows: a seeded random
    subset of that many windows (all when None)."""
    from sklearn.decomposition import PCA

    from core.config import DataConfig
    from core.data import load
    from core.infer.evaluate import dataset_inputs
    from core.explore.project import one_thread

    cfg = DataConfig.from_dict(data_config) if isinstance(data_config, dict) else data_config
    started = time.perf_counter()
    if progress is not None:
        progress(0, 3, "loading data")
    bundle = load(cfg)
    table = window_table(bundle)
    x = np.concatenate([dataset_inputs(getattr(bundle, s), bundle.normalization, bundle.sample_rate, cfg)
                        .reshape(len(getattr(bundle, s)), -1) for s in SPLITS])
    if max_windows is not None and len(x) > max_windows:
        if max_windows < 2:
            raise EmbeddingError(f"max_windows={max_windows}; embed at least 2 windows")
        keep = np.sort(np.random.default_rng(seed).choice(len(x), size=int(max_windows), replace=False))
        x, table = x[keep], table.subset(keep)
    if len(x) < 2:
        raise EmbeddingError(f"{cfg.source}: {len(x)} window(s); embedding the data needs at least 2")
    if progress is not None:
        progress(1, 3, "standardizing")
    x = x.astype(np.float64)
    x = (x - x.mean(axis=0)) / np.where(x.std(axis=0) > 0, x.std(axis=0), 1.0)
    if progress is not None:
        progress(2, 3, "PCA")
    dims = min(MAX_DATA_DIMS, x.shape[0], x.shape[1])
    with one_thread("PCA"):
        vectors = PCA(n_components=dims, random_state=seed).fit_transform(x).astype(np.float32)
    if progress is not None:
        progress(3, 3, "PCA")
    key = _key({"version": CACHE_VERSION, "data": cfg.to_dict(), "max_windows": max_windows, "seed": seed})
    return Embedding(table=table, vectors=vectors, kind="features", run_id=None, probabilities=None, key=key,
                     seconds=time.perf_counter() - started,
                     info={"source": cfg.source, "input_dims": int(x.shape[1]), "pca_dims": dims})


# ---- helpers ----------------------------------------------------------------------------------
def _check_splits(splits) -> tuple[str, ...]:
    splits = tuple(dict.fromkeys(splits))
    bad = [s for s in splits if s not in SPLITS]
    if bad or not splits:
        raise EmbeddingError(f"splits={list(splits)}; use one or more of train, val, test")
    return tuple(s for s in SPLITS if s in splits)


def _key(what: dict) -> str:
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _read_embedding(cache: Path, key: str, run_id: str) -> Embedding | None:
    meta_path, data_path = cache.with_suffix(".json"), cache.with_suffix(".npz")
    try:
        meta = json.loads(meta_path.read_text())
        if meta.get("key") != key:
            return None
        with np.load(data_path, allow_pickle=False) as z:
            arrays = {name: z[name] for name in z.files}
    except (OSError, ValueError, KeyError):
        return None
    try:
        table = WindowTable(ids=arrays["ids"], split=arrays["split"], labels=arrays["labels"],
                            groups=arrays["groups"], source=arrays["source"], start_s=arrays["start_s"],
                            class_names=list(meta["class_names"]))
        return Embedding(table=table, vectors=arrays["vectors"], kind="model", run_id=run_id,
                         probabilities=arrays["probabilities"], key=key, seconds=float(meta.get("seconds", 0.0)),
                         cached=True, info={**(meta.get("info") or {}), "cache_dir": str(cache.parent)})
    except KeyError:
        return None


def _write_embedding(cache: Path, emb: Embedding) -> None:
    """Best effort: a read-only run folder costs speed next time, not the embedding."""
    t = emb.table
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.parent / f".{cache.name}.tmp.npz"
        np.savez(tmp, vectors=emb.vectors, probabilities=emb.probabilities, ids=t.ids.astype(str),
                 split=t.split.astype(str), labels=t.labels, groups=t.groups.astype(str),
                 source=t.source.astype(str), start_s=t.start_s)
        tmp.replace(cache.with_suffix(".npz"))
        _forget_projections(cache, emb.key)
        meta = {"key": emb.key, "class_names": t.class_names, "seconds": emb.seconds, "n": len(emb),
                "dim": emb.dim, "info": emb.info}
        cache.with_suffix(".json").write_text(json.dumps(meta, indent=1, default=str))
    except OSError:
        pass


def _forget_projections(cache: Path, key: str) -> None:
    """Remove the maps of the embedding this one replaces (its checkpoint or data changed)."""
    try:
        old = json.loads(cache.with_suffix(".json").read_text()).get("key")
    except (OSError, ValueError, AttributeError):
        return
    if old and old != key:
        for path in cache.parent.glob(f"projection-{old}-*"):
            path.unlink(missing_ok=True)


__all__ = ["CACHE_DIR", "Embedding", "EmbeddingError", "checkpoint_file", "embed_data", "embed_run",
           "model_embedding", "run_folder"]
