"""2-D maps of an embedding: PCA, t-SNE (scikit-learn) or UMAP (umap-learn), seeded.

    proj = project(embedding, "tsne", seed=0)     # Projection(xy (N, 2), method, seed, seconds)
    PROJECTIONS["umap"].label, .help, .min_windows  # the one list of methods (CLI, page, bench)

The same embedding, method and seed give the same map: each method is seeded, and a run's
maps are cached next to its embedding (keyed on the embedding's key, the method and seed).
t-SNE and UMAP first reduce embeddings wider than 50 dimensions to 50 by PCA (as their
authors advise); t-SNE uses scikit-learn's Barnes-Hut approximation at its default angle,
started from the PCA layout plus a small seeded jitter (so the seed matters). Nothing is
subsampled: `bench/explore_speed.py` measures 10,000 windows per method. Fits run on one
thread (BLAS and OpenMP), which on a shared 2-core machine is the fastest.
"""
from __future__ import annotations

import importlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from core.explore.embed import Embedding, EmbeddingError, Progress

PRE_PCA_DIMS = 50  # t-SNE / UMAP inputs wider than this are reduced by PCA first


@dataclass(frozen=True)
class ProjectionMethod:
    """One way to draw an embedding in 2-D."""

    name: str
    label: str
    help: str
    min_windows: int
    fit: Callable[[np.ndarray, int], np.ndarray]  # (N, D) vectors, seed -> (N, 2)
    module: str = ""  # imported before the clock starts: seconds measure the fit, not the import


@dataclass
class Projection:
    """An embedding's 2-D map: one (x, y) per window, in the embedding's row order."""

    xy: np.ndarray  # (N, 2) float32
    method: str
    seed: int
    seconds: float  # computing it (also when read from the cache)
    cached: bool = False


def _pca(vectors: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.decomposition import PCA

    xy = PCA(n_components=min(2, *vectors.shape), random_state=seed).fit_transform(vectors.astype(np.float64))
    if xy.shape[1] < 2:  # a 1-D embedding: its one component on x, nothing on y
        xy = np.pad(xy, ((0, 0), (0, 2 - xy.shape[1])))
    return xy


def _reduced(vectors: np.ndarray, seed: int) -> np.ndarray:
    """At most PRE_PCA_DIMS dimensions (PCA, seeded) for the neighbour-graph methods."""
    from sklearn.decomposition import PCA

    vectors = vectors.astype(np.float64)
    if vectors.shape[1] <= PRE_PCA_DIMS or len(vectors) <= PRE_PCA_DIMS:
        return vectors
    return PCA(n_components=PRE_PCA_DIMS, random_state=seed).fit_transform(vectors)


def _tsne(vectors: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.manifold import TSNE

    vectors = _reduced(vectors, seed)
    n = len(vectors)
    perplexity = float(min(30.0, max(2.0, (n - 1) / 3)))  # scikit-learn needs perplexity < n
    # init="pca" as scikit-learn does it (first two components scaled to std 1e-4), plus a seeded
    # jitter of a tenth of that: with a pure PCA start the seed would change nothing at all
    start = _pca(vectors, seed)
    start = start / (np.std(start[:, 0]) or 1.0) * 1e-4
    start = start + np.random.default_rng(seed).normal(0.0, 1e-5, size=start.shape)
    return TSNE(n_components=2, perplexity=perplexity, init=start.astype(np.float32), random_state=seed,
                method="barnes_hut").fit_transform(vectors)


def cache_numba(*packages: str) -> int:
    """Give every numba function of the loaded `packages` an on-disk cache, as `cache=True`
    would; the number newly cached. umap-learn declares most of its functions without one, so
    each process compiled them again: 17-21 s of CPU for a 200-window map on the dev machine,
    every time a dashboard or a test process first drew UMAP. Cached (under NUMBA_CACHE_DIR,
    or beside the package), a later process loads them: 0.3 s for the same map. A function
    numba cannot cache is compiled as before."""
    import sys

    from numba.core.caching import NullCache
    from numba.core.dispatcher import Dispatcher

    done = 0
    for name, module in list(sys.modules.items()):
        if module is None or name.split(".")[0] not in packages:
            continue
        for value in list(vars(module).values()):
            if isinstance(value, Dispatcher) and isinstance(value._cache, NullCache):
                value.enable_caching()
                done += 1
    return done


def _umap(vectors: np.ndarray, seed: int) -> np.ndarray:
    import warnings

    import umap

    cache_numba("umap")
    with warnings.catch_warnings():  # "n_jobs overridden to 1 by setting random_state": wanted, for determinism
        warnings.filterwarnings("ignore", message=".*n_jobs.*", category=UserWarning)
        return umap.UMAP(n_components=2, n_neighbors=min(15, len(vectors) - 1), random_state=seed) \
            .fit_transform(_reduced(vectors, seed))


PROJECTIONS: dict[str, ProjectionMethod] = {m.name: m for m in (
    ProjectionMethod("pca", "PCA", "the two directions of largest variance: linear, instant; distances along the "
                     "axes mean something, but classes often overlap", min_windows=3, fit=_pca,
                     module="sklearn.decomposition"),
    ProjectionMethod("tsne", "t-SNE", "keeps each window's nearest neighbours together (scikit-learn, Barnes-Hut): "
                     "clear clusters; distances between clusters and cluster sizes mean little", min_windows=20,
                     fit=_tsne, module="sklearn.manifold"),
    ProjectionMethod("umap", "UMAP", "neighbour graph laid out in 2-D (umap-learn): clusters like t-SNE, with more "
                     "of the global layout kept; its first call on a machine compiles (numba: 25-50 s)",
                     min_windows=20, fit=_umap, module="umap"),
)}


def check_method(method: str, n_windows: int, run_id: str | None = None) -> "ProjectionMethod":
    """The method record, or an EmbeddingError saying why it cannot draw n_windows."""
    if method not in PROJECTIONS:
        raise EmbeddingError(f"projection method {method!r}; use one of {', '.join(PROJECTIONS)}")
    spec = PROJECTIONS[method]
    if n_windows < spec.min_windows:
        what = f"run {run_id} has" if run_id else "this embedding has"
        raise EmbeddingError(f"{spec.label} needs at least {spec.min_windows} windows; {what} {n_windows} — "
                             f"use PCA, or more windows (other splits, more data)")
    return spec


def project(embedding: Embedding, method: str = "pca", seed: int = 0, progress: Progress | None = None,
            use_cache: bool = True) -> Projection:
    """The embedding drawn in 2-D by `method` (a PROJECTIONS name), seeded; a run's maps are
    cached next to its embedding. progress(done, total, stage) before and after the fit."""
    spec = check_method(method, len(embedding), embedding.run_id)
    seed = int(seed)
    cache = _cache_path(embedding, method, seed) if use_cache else None
    if cache is not None:
        hit = _read(cache, embedding.key, len(embedding), method, seed)
        if hit is not None:
            return hit
    stage = f"projecting ({spec.label})"
    if progress is not None:
        progress(0, 1, stage)
    if spec.module:
        importlib.import_module(spec.module)
    started = time.perf_counter()
    with one_thread():
        xy = np.asarray(spec.fit(embedding.vectors, seed), dtype=np.float32)
    result = Projection(xy=xy, method=method, seed=seed, seconds=time.perf_counter() - started)
    if progress is not None:
        progress(1, 1, stage)
    if cache is not None:
        _write(cache, result, embedding.key)
    return result


def one_thread(purpose: str = "projection"):
    """BLAS, OpenMP and torch single-threaded while fitting: on a shared 2-core CPU,
    scikit-learn's OpenMP t-SNE at 2 threads took 77 s (wall) for 1,257 windows against 16 s
    at one thread. core.threads owns the counts, so a job in another thread keeps its own."""
    from core.threads import compute_threads

    return compute_threads(1, purpose=purpose)


def _cache_path(embedding: Embedding, method: str, seed: int) -> Path | None:
    folder = embedding.info.get("cache_dir")
    if embedding.run_id is None or not embedding.key or not folder:
        return None  # embed_data: nothing of a run to keep it beside
    return Path(folder) / f"projection-{embedding.key}-{method}-{seed}"


def _read(cache: Path, key: str, n: int, method: str, seed: int) -> Projection | None:
    try:
        meta = json.loads(cache.with_suffix(".json").read_text())
        with np.load(cache.with_suffix(".npz"), allow_pickle=False) as z:
            xy = z["xy"]
    except (OSError, ValueError, KeyError):
        return None
    if meta.get("key") != key or xy.shape != (n, 2):
        return None
    return Projection(xy=xy, method=method, seed=seed, seconds=float(meta.get("seconds", 0.0)), cached=True)


def _write(cache: Path, projection: Projection, key: str) -> None:
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.parent / f".{cache.name}.tmp.npz"
        np.savez(tmp, xy=projection.xy)
        tmp.replace(cache.with_suffix(".npz"))
        cache.with_suffix(".json").write_text(json.dumps({"key": key, "method": projection.method,
                                                          "seed": projection.seed, "seconds": projection.seconds}))
    except OSError:
        pass


__all__ = ["PROJECTIONS", "Projection", "ProjectionMethod", "check_method", "project"]
