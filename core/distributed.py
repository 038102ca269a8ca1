"""The same run under torch.distributed (DDP), launched by `torchrun`.

torchrun starts one process per rank with RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and
MASTER_PORT set; `init_from_env` joins the process group (gloo on CPU, NCCL on GPU). A run
is one process when WORLD_SIZE is unset or 1, and everything here is then a no-op, so the
Trainer has one code path.

Who does what: every rank trains on its shard of the training split (a DistributedSampler
drawing one permutation per epoch from the run's seed) with `train.batch_size / world` examples
per step, so the global batch is the configured one and DDP's all-reduced gradients equal a
single process's; rank 0 alone writes to the store, keeps checkpoints, runs the probes and
evaluates the validation and test splits in full, then broadcasts the epoch's metrics so
early stopping and the plateau schedule decide the same on every rank. A stop (cancel,
divergence, early stopping) is agreed at the end of every step with one all-reduce, so no
rank waits for a partner that has left.
"""
from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from core.errors import ConfigError


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_distributed() -> bool:
    return world_size() > 1


def is_main() -> bool:
    return rank() == 0


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1") or 1) > 1


def backend_for(device: str) -> str:
    return "nccl" if device.startswith("cuda") and torch.cuda.is_available() else "gloo"


def init_from_env(device: str = "auto", timeout_s: float = 600.0) -> str:
    """Join the process group torchrun describes in the environment; returns this rank's
    device ("cuda:LOCAL_RANK" with NCCL on a GPU machine, else "cpu" with gloo)."""
    if not launched_by_torchrun():
        return device
    wants_gpu = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if wants_gpu:
        if not torch.cuda.is_available():
            raise ConfigError(f"train.device={device!r} under torchrun but no CUDA GPU is visible; use 'cpu'")
        torch.cuda.set_device(local)
        rank_device = f"cuda:{local}"
    else:
        rank_device = "cpu"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend_for(rank_device), timeout=timedelta(seconds=timeout_s))
    return rank_device


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def broadcast(obj: Any) -> Any:
    """Rank 0's `obj` on every rank (a picklable object; other ranks' argument is ignored)."""
    if not is_distributed():
        return obj
    holder = [obj if is_main() else None]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def any_rank(flag: bool) -> bool:
    """True on every rank when any rank passes True (one all-reduce)."""
    if not is_distributed():
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=_collective_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def mean(value: float) -> float:
    """The mean of a number over the ranks (e.g. the step's loss over the global batch)."""
    if not is_distributed():
        return value
    t = torch.tensor([float(value)], dtype=torch.float64, device=_collective_device())
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return float(t.item()) / world_size()


def total(values: list[float]) -> list[float]:
    """Each number summed over the ranks (one all-reduce)."""
    if not is_distributed():
        return list(values)
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=_collective_device())
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def gather_to_main(tensors: list[torch.Tensor]) -> list[torch.Tensor] | None:
    """Every rank's list of tensors concatenated, on rank 0 (None elsewhere); shapes may differ
    between ranks (each rank's last batch)."""
    if not is_distributed():
        return tensors
    local = [t.detach().cpu() for t in tensors]
    gathered: list[Any] = [None] * world_size() if is_main() else None
    dist.gather_object(local, gathered, dst=0)
    return [t for part in gathered for t in part] if is_main() else None


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def _collective_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
