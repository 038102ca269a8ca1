"""Seconds to embed and project 10,000 windows per method, as ratios to PCA.

    .venv/bin/python bench/explore_speed.py [--windows 10000] [--methods pca,tsne,umap] [--seed 0] [--json]

Real data and a real model: the full HAPT dataset (/work/shared/data/hapt, 30 subjects,
the six basic activities, 128-sample windows every 32 samples: about 16,000 windows, more
than the bundled demo's stride of 64 gives), its first --windows windows in the explore
table's order (train, val, test), embedded by the bundled demo-imu run (har_transformer, the
same 6-channel 128-sample HAPT windows) with `core.explore.model_embedding` (forward_features
+ forward_head, batches of 256) and then projected with `core.explore.project` for each method
(caches off; t-SNE is scikit-learn's Barnes-Hut at its default angle, nothing is subsampled).
The data embedding before any model (inputs flattened, standardized, PCA to 50; what
`embed_data` does) on the same windows is timed too.

Every step runs on one thread, as core.explore runs it (torch, BLAS and OpenMP: on a shared
2-core CPU that is the fastest). Measured in one process, one after the other; each step is
timed once (t-SNE and UMAP on 10,000 windows take tens of seconds): wall seconds
(perf_counter) and CPU seconds (process_time, all threads). UMAP's first call on a machine
compiles with numba (core.explore.project.cache_numba caches what umap-learn leaves uncached,
so a later process loads it), and from 4,096 points on it takes pynndescent's approximate
neighbours, compiled on their first use: a warm-up UMAP on 4,200 of the windows runs first, so
its row measures the fit, not the compile; the warm-up's time is printed too.

Measured 2026-12-07 on the shared 2-core CPU (load ~2), one run, 10,000 windows, 32-D features:
  embed (model) 5.9 s, embed (data, flatten -> PCA 50) 2.7 s;
  projection wall s (ratio to PCA): PCA 0.01 (1), t-SNE 60.1 (~6,600), UMAP 10.6 (~1,200);
  embed + map vs embed + PCA: t-SNE 11.2x, UMAP 2.8x; the UMAP warm-up (compile) 49 s.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".cache" / "numba"))

import numpy as np  # noqa: E402

from core.config import DataConfig  # noqa: E402
from core.errors import SigscopeError  # noqa: E402
from core.explore import PROJECTIONS, SPLITS, Embedding, model_embedding, project, window_table  # noqa: E402
from core.explore.embed import MAX_DATA_DIMS  # noqa: E402
from core.explore.project import one_thread  # noqa: E402

FULL_HAPT = DataConfig(source="hapt", options={"classes": "basic6", "full": True}, split="subject",
                       window=128, stride=32)
WARM_UP = 4200  # windows: above umap-learn's 4,096, where it switches to pynndescent


def timed(fn):
    """(result, wall seconds, CPU seconds) of fn()."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def data_vectors(x: np.ndarray, seed: int) -> np.ndarray:
    """embed_data's reduction: flattened, standardized per feature, PCA to at most 50 dims."""
    from sklearn.decomposition import PCA

    flat = x.reshape(len(x), -1).astype(np.float64)
    std = flat.std(axis=0)
    flat = (flat - flat.mean(axis=0)) / np.where(std > 0, std, 1.0)
    with one_thread():
        return PCA(n_components=min(MAX_DATA_DIMS, *flat.shape), random_state=seed).fit_transform(flat)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--windows", type=int, default=10_000)
    parser.add_argument("--methods", default=",".join(PROJECTIONS), help="comma-separated PROJECTIONS names")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in PROJECTIONS]
    if unknown or "pca" not in methods:
        parser.error(f"--methods: {unknown or 'pca is the baseline and must be included'}; "
                     f"known: {', '.join(PROJECTIONS)}")

    with tempfile.TemporaryDirectory() as runs:
        os.environ["SIGSCOPE_RUNS_DIR"] = runs
        from core.data import load
        from core.demo import install_bundled
        from core.infer.evaluate import split_inputs
        from core.infer.loading import load_run
        from core.store import Store

        store = Store()
        run_id = install_bundled(store, "demo-imu")
        if run_id is None:
            print("the bundled demo-imu run is missing (data/demo-models/demo-imu)", file=sys.stderr)
            return 2
        predictor = load_run(run_id, store)
        bundle, load_wall, _ = timed(lambda: load(FULL_HAPT))
        table = window_table(bundle)
        x = np.concatenate([split_inputs(predictor, bundle, s) for s in SPLITS])
        if len(x) < args.windows:
            print(f"the full HAPT gives {len(x)} windows, fewer than --windows {args.windows}", file=sys.stderr)
            return 2
        x, table = x[:args.windows], table.subset(np.arange(args.windows))

        rows = {}
        (vectors, probs), wall, cpu = timed(lambda: model_embedding(predictor, x, batch_size=256))
        rows["embed: model forward_features"] = (wall, cpu)
        _, wall, cpu = timed(lambda: data_vectors(x, args.seed))
        rows["embed: data (flatten -> PCA 50)"] = (wall, cpu)
        emb = Embedding(table=table, vectors=vectors, kind="model", run_id=None, probabilities=probs)
        accuracy = float(emb.correct.mean())
        if "umap" in methods:  # numba compile (cached after the first run in a venv) is not the fit
            warm = Embedding(table=table.subset(np.arange(WARM_UP)), vectors=vectors[:WARM_UP], kind="model",
                             run_id=None, probabilities=None)
            _, warm_wall, _ = timed(lambda: project(warm, "umap", args.seed, use_cache=False))
        projections = {}
        for method in methods:
            try:
                proj, wall, cpu = timed(lambda: project(emb, method, args.seed, use_cache=False))
            except SigscopeError as e:
                print(f"{method}: {e}", file=sys.stderr)
                return 2
            projections[method] = (wall, cpu)

    embed_wall, embed_cpu = rows["embed: model forward_features"]
    base_wall, base_cpu = projections["pca"]
    result = {"windows": int(args.windows), "dim": int(vectors.shape[1]), "data": "full HAPT basic6, window 128, "
              "stride 32, split by subject (first windows in train, val, test order)", "model": "demo-imu "
              "(har_transformer)", "accuracy_on_these_windows": round(accuracy, 4),
              "data_load_seconds": round(load_wall, 2),
              "embed": {name: {"wall_s": round(w, 3), "cpu_s": round(c, 3)} for name, (w, c) in rows.items()},
              "project": {m: {"wall_s": round(w, 3), "cpu_s": round(c, 3), "wall_ratio_to_pca": round(w / base_wall, 1),
                              "cpu_ratio_to_pca": round(c / max(base_cpu, 1e-9), 1),
                              "embed_plus_project_wall_s": round(embed_wall + w, 2),
                              "embed_plus_project_ratio_to_pca": round((embed_wall + w) / (embed_wall + base_wall), 2)}
                          for m, (w, c) in projections.items()},
              "umap_warmup_wall_s": round(warm_wall, 2) if "umap" in methods else None}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{args.windows} windows of full HAPT (6 x 128) through demo-imu (har_transformer, {result['dim']}-D "
          f"features; accuracy on them {accuracy:.3f}); data loaded in {load_wall:.1f} s; every step on one "
          "thread, as core.explore runs them")
    print(f"  {'step':34s} {'wall s':>8s} {'CPU s':>8s}")
    for name, (w, c) in rows.items():
        print(f"  {name:34s} {w:8.2f} {c:8.2f}")
    print(f"  {'projection':34s} {'wall s':>8s} {'CPU s':>8s} {'wall/PCA':>9s} {'CPU/PCA':>8s} "
          f"{'embed+map':>10s} {'/ embed+PCA':>11s}")
    for m, r in result["project"].items():
        print(f"  {PROJECTIONS[m].label:34s} {r['wall_s']:8.2f} {r['cpu_s']:8.2f} {r['wall_ratio_to_pca']:9.1f} "
              f"{r['cpu_ratio_to_pca']:8.1f} {r['embed_plus_project_wall_s']:10.2f} "
              f"{r['embed_plus_project_ratio_to_pca']:11.2f}")
    if "umap" in methods:
        print(f"  (UMAP warm-up on {WARM_UP} windows first: {warm_wall:.1f} s wall, with numba's compile "
              "when not cached yet)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
