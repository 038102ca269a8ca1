"""Where a source's data comes from. One rule, in this order:

1. `cfg.path` when given (a file or folder; it must exist);
2. the full shared dataset (`../shared/data/...` beside the repository) when
   `options["full"]` is true — refused with its expected location when absent;
3. otherwise the small real sample bundled in the repository's `data/` folder.

Tests and `make run` are therefore reproducible on any machine (the bundled sample),
and the full data is one option away.
"""
from __future__ import annotations

from pathlib import Path

from core.config import DataConfig
from core.errors import DataError

REPO_ROOT = Path(__file__).resolve().parents[2]
BUNDLED_DIR = REPO_ROOT / "data"
SHARED_DIR = REPO_ROOT / ".." / "shared" / "data"


def resolve_path(cfg: DataConfig, bundled: str | None, shared: str | None) -> Path:
    """The file/folder to read for `cfg` (see the module docstring for the order)."""
    if cfg.path:
        path = Path(cfg.path).expanduser()
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
