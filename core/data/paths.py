"""Where a source's data comes from. One rule, in this order:

1. `cfg.path` when given (a file or folder; it must exist);
2. the full shared dataset (`../shared/data/...` beside the repository) when
   `options["full"]` is true — refused with its expected location when absent;
3. otherwise the small real sample bundled in the repository's `data/` folder.

Tests and `make run` are therefore reproducible on any machine (the bundled sample),
and the full data is one option away.

A given path is read only under the allowed roots (`allowed_roots()`): the bundled `data/`,
the shared data folder, the runs folder, and each folder of `$SIGSCOPE_DATA_ROOTS`
(separated by `os.pathsep`). The Train page takes a typed server path, so without this a
visitor could make the server read any file it can (`/etc/passwd`); symlinks and `..` are
resolved before the check, and a path outside is refused before its existence is told.
"""
from __future__ import annotations

import os
from pathlib import Path

from core import paths as run_paths
from core.config import DataConfig
from core.errors import DataError

REPO_ROOT = Path(__file__).resolve().parents[2]
BUNDLED_DIR = REPO_ROOT / "data"
SHARED_DIR = REPO_ROOT / ".." / "shared" / "data"
ROOTS_ENV = "SIGSCOPE_DATA_ROOTS"


def allowed_roots() -> list[Path]:
    """The folders a data path may point into (resolved): the bundled data, the shared data
    folder, the runs folder and each folder of $SIGSCOPE_DATA_ROOTS."""
    extra = [Path(p.strip()).expanduser() for p in os.environ.get(ROOTS_ENV, "").split(os.pathsep) if p.strip()]
    roots = [BUNDLED_DIR, SHARED_DIR, run_paths.runs_dir(create=False), *extra]
    return list(dict.fromkeys(root.resolve() for root in roots))


def checked_path(cfg: DataConfig) -> Path:
    """`cfg.path` resolved (symlinks, `..`, `~`) when it lies under an allowed root; DataError
    naming the roots and the variable otherwise (nothing of the file is read or told)."""
    given = str(cfg.path)
    path = Path(given).expanduser().resolve()
    roots = allowed_roots()
    if not any(path.is_relative_to(root) for root in roots):
        where = "" if str(path) == given else f" (resolved: {path})"
        raise DataError(f"{cfg.source}: path {given}{where} is outside the folders data is read from "
                        f"({', '.join(str(r) for r in roots)}); move the data under one of them or add its "
                        f"folder to {ROOTS_ENV} (several separated by '{os.pathsep}')")
    return path


def resolve_path(cfg: DataConfig, bundled: str | None, shared: str | None) -> Path:
    """The file/folder to read for `cfg` (see the module docstring for the order)."""
    if cfg.path:
        path = checked_path(cfg)
        if not path.exists():
            raise DataError(f"{cfg.source}: {path} does not exist; give an existing file or folder as path")
        return path
    if cfg.options.get("full"):
        if shared is None:
            raise DataError(f"{cfg.source}: has no full shared dataset; give path")
        path = (SHARED_DIR / shared).resolve()
        if not path.exists():
            raise DataError(f"{cfg.source}: the full dataset is not at {path}; copy it there or give its path")
        return path
    if bundled is None:
        raise DataError(f"{cfg.source}: needs path (a file or folder of your data)")
    path = BUNDLED_DIR / bundled
    if not path.exists():
        raise DataError(f"{cfg.source}: the bundled sample {path} is missing from this checkout; "
                        "restore data/ from git or give path")
    return path
