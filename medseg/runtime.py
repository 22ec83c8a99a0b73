"""Where and how tensors run: the device, the autocast precision, and this process's place in
a distributed job. The one module that decides ``cuda`` or ``cpu`` and reads the launcher's
environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, set by ``torchrun``), for training and
inference alike.

torch is imported inside the functions that need it, so this module stays cheap to import.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from medseg.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    import torch

log = logging.getLogger("medseg")

#: ``device`` values: ``auto`` is CUDA when available, else the CPU (logged).
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")
#: ``amp`` values: ``auto`` is bf16 on a GPU that supports it, else fp16 on a GPU, none on CPU.
PRECISIONS: tuple[str, ...] = ("auto", "none", "bf16", "fp16")


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


def _env_int(env: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    text = env.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise ConfigError(
            f"{name}: expected an integer >= {minimum} in the environment, found {text!r}",
            param=name,
        )
    return value


def dist_info(environ: Mapping[str, str] | None = None) -> DistInfo:
    """``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` of the environment (defaults 0, 1, and the
    rank for ``LOCAL_RANK``); a rank outside ``0 .. WORLD_SIZE - 1`` is a :class:`ConfigError`."""
    env = os.environ if environ is None else environ
    rank = _env_int(env, "RANK", 0, 0)
    world = _env_int(env, "WORLD_SIZE", 1, 1)
    local = _env_int(env, "LOCAL_RANK", rank, 0)
    if rank >= world:
        raise ConfigError(
            f"RANK: expected 0 .. {world - 1} (WORLD_SIZE {world}), found {rank}", param="RANK"
        )
    return DistInfo(rank=rank, world_size=world, local_rank=local)


def resolve_device(device: str = "auto", *, local_rank: int = 0) -> torch.device:
    """The torch device for ``device``: ``auto`` (CUDA when available, logged), ``cpu``,
    ``cuda`` (GPU ``local_rank``, this process's GPU under ``torchrun``) or ``cuda:N``.

    Raises :class:`ConfigError` (``param="device"``) for another value, or for CUDA on a
    machine without a CUDA device."""
    import torch

    kind = str(device)
    index: int | None = None
    if kind.startswith("cuda:") and kind[5:].isdigit():
        kind, index = "cuda", int(kind[5:])
    if kind not in DEVICES:
        raise ConfigError(
            f"device: expected {', '.join(DEVICES)} or cuda:N, found {device!r}", param="device"
        )
    if kind == "auto":
        kind = "cuda" if torch.cuda.is_available() else "cpu"
        log.info("device auto -> %s", kind)
    if kind == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError("device: cuda requested but no CUDA device is available", param="device")
    return torch.device("cuda", local_rank if index is None else index)


def resolve_amp(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``amp`` on ``device``, or ``None`` for full float32 (see
    :data:`PRECISIONS`). ``fp16`` needs a CUDA device (:class:`ConfigError`)."""
    import torch

    if amp not in PRECISIONS:
        raise ConfigError(f"amp: expected {', '.join(PRECISIONS)}, found {amp!r}", param="amp")
    if amp == "none":
        return None
    if amp == "bf16":
        return torch.bfloat16
    if amp == "fp16":
        if device.type != "cuda":
            raise ConfigError("amp: fp16 needs a CUDA device; use bf16 or none on CPU", param="amp")
        return torch.float16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return None


__all__ = ["DEVICES", "PRECISIONS", "DistInfo", "dist_info", "resolve_amp", "resolve_device"]
