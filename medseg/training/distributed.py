"""Multi-process training through ``torchrun`` (or any launcher that sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``).

One process per GPU (``nccl``) or per CPU worker (``gloo``). Each rank samples its own patches
(seeded by rank), gradients are averaged by ``DistributedDataParallel``, validation cases are
dealt round-robin to the ranks and the metric sums are all-reduced; only rank 0 writes files.
The placement (:class:`~medseg.runtime.DistInfo`) is read from the environment by
:func:`medseg.runtime.dist_info`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

from medseg.runtime import DistInfo, dist_info


def init_distributed(device_type: str) -> DistInfo:
    """Initialise the default process group when ``WORLD_SIZE > 1`` (``nccl`` for CUDA,
    ``gloo`` for CPU); a no-op otherwise or when already initialised."""
    info = dist_info()
    if info.enabled and not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend=backend, rank=info.rank, world_size=info.world_size)
    return info


def cleanup_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum a tensor over ranks (returns it unchanged when not distributed)."""
    if not info.enabled:
        return t
    if dist.get_backend() == "nccl":
        dev = t.device
        tc = t.to(f"cuda:{info.local_rank}")
        dist.all_reduce(tc, op=dist.ReduceOp.SUM)
        return tc.to(dev)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def gather_lists(items: list[Any], info: DistInfo) -> list[Any]:
    """Concatenate every rank's list of JSON-like items, on every rank (rank order)."""
    if not info.enabled:
        return list(items)
    parts: list[Any] = [None] * info.world_size
    dist.all_gather_object(parts, items)
    return [x for part in parts for x in part]


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


__all__ = [
    "DistInfo",
    "all_reduce_sum",
    "barrier",
    "cleanup_distributed",
    "gather_lists",
    "init_distributed",
]
