"""One bench/accuracy.py run in a worker process, for `accuracy.py --parallel N`.

A module of its own so that a spawned worker imports it by its package name (the bench
script itself runs as __main__). The worker opens its own Store on the same SQLite
database (WAL: several writers' runs interleave safely).
"""
from __future__ import annotations


def execute_in_process(db_path: str, cfg_dict: dict, threads: int) -> dict:
    import torch

    from bench.accuracy_parts.running import execute_run
    from core.config import RunConfig
    from core.store import Store

    torch.set_num_threads(threads)
    store = Store(db_path)
    try:
        return execute_run(store, RunConfig.from_dict(cfg_dict))
    finally:
        store.close()
