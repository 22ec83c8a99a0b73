"""Multi-process training through ``torchrun`` (or any launcher that sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``).

One process per GPU (``nccl``) or per CPU worker (``gloo``). Each rank samples its own patches
(seeded by rank), gradients are averaged by ``DistributedDataParallel``, validation cases are
dealt round-robin to the ranks and the metric sums are all-reduced; only rank 0 writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job (``world_size == 1`` when not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def env_dist_info() -> DistInfo:
    """Read ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` from the environment (defaults: 0, 1, 0)."""
    return DistInfo(
        rank=int(os.environ.get("RANK", "0")),
        world_size=int(os.environ.get("WORLD_SIZE", "1")),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
    )


def init_distributed(device_type: str) -> DistInfo:
    """Initialise the default process group when ``WORLD_SIZE > 1`` (``nccl`` for CUDA,
    ``gloo`` for CPU); a no-op otherwise or when already initialised."""
    info = env_dist_info()
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


def broadcast_flag(value: bool, info: DistInfo) -> bool:
    """Rank 0's boolean, on every rank."""
    if not info.enabled:
        return value
    t = torch.tensor([1 if value else 0], dtype=torch.int64)
    if dist.get_backend() == "nccl":
        t = t.to(f"cuda:{info.local_rank}")
    dist.broadcast(t, src=0)
    return bool(t.item())


__all__ = [
    "DistInfo",
    "all_reduce_sum",
    "barrier",
    "broadcast_flag",
    "cleanup_distributed",
    "env_dist_info",
    "gather_lists",
    "init_distributed",
]
