"""On-disk cache of featurized examples, keyed by (source files' paths+sizes+mtimes, parameters).

    key = cache_key(files, params)
    ex = read_cached(cache_dir, key)        # None on a miss
    write_cached(cache_dir, key, ex)

The folder is `cache_dir`, else $SIGSCOPE_CACHE_DIR, else ./runs/cache. A corrupt entry
counts as a miss and is rewritten.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from core.data.examples import Examples

CACHE_VERSION = 1


def default_cache_dir(cache_dir: str | Path | None = None) -> Path:
    from core.paths import cache_dir as folder

    return folder(cache_dir)


def cache_key(files: list[Path], params: dict) -> str:
    """sha256 over every file's resolved path, size and mtime plus the JSON of `params`."""
    h = hashlib.sha256(f"v{CACHE_VERSION}".encode())
    for f in sorted(Path(p).resolve() for p in files):
        st = f.stat()
        h.update(f"{f}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    h.update(json.dumps(params, sort_keys=True, default=str).encode())
    return h.hexdigest()[:32]


def read_cached(cache_dir: Path, key: str) -> Examples | None:
    arrays_path, meta_path = cache_dir / f"{key}.npz", cache_dir / f"{key}.json"
    if not (arrays_path.exists() and meta_path.exists()):
        return None
    try:
        meta = json.loads(meta_path.read_text())
        with np.load(arrays_path, allow_pickle=False) as z:
            fixed = z["fixed_test"] if meta["has_fixed_test"] else None
            train_only = z["train_only"] if meta.get("has_train_only") else None
            return Examples(x=z["x"], y=z["y"], groups=z["groups"], ids=z["ids"],
                            class_names=meta["class_names"], channel_names=meta["channel_names"],
                            sample_rate=meta["sample_rate"], signal=meta["signal"], info=meta["info"],
                            fixed_test=fixed, train_only=train_only)
    except (OSError, ValueError, KeyError, json.JSONDecodeError):
        return None


def write_cached(cache_dir: Path, key: str, ex: Examples) -> None:
    """Write atomically (temp file + rename) so a crash never leaves a half entry."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    meta = {"class_names": ex.class_names, "channel_names": ex.channel_names,
            "sample_rate": ex.sample_rate, "signal": ex.signal, "info": ex.info,
            "has_fixed_test": ex.fixed_test is not None, "has_train_only": ex.train_only is not None}
    arrays = {"x": ex.x, "y": ex.y, "groups": ex.groups.astype(str), "ids": ex.ids.astype(str),
              "fixed_test": ex.fixed_test if ex.fixed_test is not None else np.zeros(0, bool),
              "train_only": ex.train_only if ex.train_only is not None else np.zeros(0, bool)}
    fd, tmp = tempfile.mkstemp(dir=cache_dir, suffix=".npz.tmp")
    with os.fdopen(fd, "wb") as f:  # a file object: np.savez would append ".npz" to a name
        np.savez(f, **arrays)
    os.replace(tmp, cache_dir / f"{key}.npz")
    (cache_dir / f"{key}.json.tmp").write_text(json.dumps(meta, default=str))
    os.replace(cache_dir / f"{key}.json.tmp", cache_dir / f"{key}.json")
