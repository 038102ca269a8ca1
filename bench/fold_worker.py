"""One bench/accuracy.py run in a worker process, for `accuracy.py --parallel N`.

A module of its own so that a spawned worker can import it by name (the bench script itself
runs as __main__, or under another name in the tests). The worker opens its own Store on the
same SQLite database (WAL: several writers' runs interleave safely).
"""
from __future__ import annotations


def execute_in_process(db_path: str, cfg_dict: dict, threads: int) -> dict:
    import torch

    import accuracy  # bench/ is on sys.path: accuracy.py put it there, and spawned workers inherit it
    from core.config import RunConfig
    from core.store import Store

    torch.set_num_threads(threads)
    store = Store(db_path)
    try:
        return accuracy.execute_run(store, RunConfig.from_dict(cfg_dict))
    finally:
        store.close()
