"""Checkpoints: a single file that is enough to predict, loaded without unpickling.

Two formats, chosen by suffix:

* ``.pt`` — a ``torch.save`` dictionary of plain containers and tensors, loaded with
  ``torch.load(path, weights_only=True)`` (no arbitrary objects are unpickled). Keys:
  ``format`` (``"medseg-checkpoint"``), ``format_version``, ``meta_json`` (a JSON string, see
  below), ``model`` (the network ``state_dict``) and, for resumable checkpoints, ``training``
  (optimizer, scheduler and grad-scaler ``state_dict``\\ s and RNG states, all plain values).
* ``.safetensors`` — the weights only, with ``meta_json`` in the safetensors header metadata.

Both carry ``weights_sha256``: the SHA-256 of the weights (:func:`weights_sha256`: every tensor
in sorted key order, its name, dtype, shape and raw bytes), verified on every load; a mismatch
(flipped bytes, a damaged copy) is refused naming the file. Format 3 introduced the hash;
checkpoints of formats 1 and 2 (written before it, by unreleased versions) are refused with a
message saying so: retrain, or re-save the weights with :func:`save_checkpoint`.

``meta_json`` holds the :class:`CheckpointMeta` record, one record per fact: the resolved plan
(preprocessing, labels, channels, patch size and the network description, after the training
config's overrides), the resolved training config, the fold, the medseg version, the epoch and
the last metrics. Labels, channels, spacing and patch size are read from the plan, never stored
twice. Writes are atomic (temporary file + rename).
"""

from __future__ import annotations

import hashlib
import json
import pickle
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medseg._version import __version__
from medseg.errors import ConfigError, InputError
from medseg.io.atomic import atomic_path
from medseg.io.files import path_problem
from medseg.plan.files import plan_from_dict
from medseg.plan.schema import Plan

if TYPE_CHECKING:  # pragma: no cover
    import torch

FORMAT = "medseg-checkpoint"
#: 3: ``weights_sha256`` stored and verified; 2: the plan holds the network; 1: a separate
#: network record beside a version-1 plan. Formats 1 and 2 are refused (no weights hash).
FORMAT_VERSION = 3
#: Format versions without a weights hash (refused, see the module docstring).
_UNHASHED_VERSIONS = (1, 2)


@dataclass(frozen=True)
class CheckpointMeta:
    """What a checkpoint carries besides weights (stored as JSON).

    Attributes:
        plan: the resolved plan the network was trained with (the training config's overrides
            applied); it describes the network, the preprocessing, labels and channels.
        config: the resolved training config (plain JSON values), or ``None``.
        fold: the cross-validation fold (an int), ``"all"`` (trained on every case) or ``None``.
        epoch: epochs completed.
        metrics: the last epoch's log row (plain floats, NaN allowed).
        medseg_version: version that wrote the checkpoint.
    """

    plan: Plan
    config: dict[str, Any] | None = None
    fold: int | str | None = None
    epoch: int = 0
    metrics: dict[str, Any] = field(default_factory=dict)
    medseg_version: str = __version__

    @property
    def label_names(self) -> dict[int, str]:
        return dict(self.plan.label_names)

    @property
    def channel_names(self) -> list[str]:
        return list(self.plan.channel_names)

    def to_json(self) -> str:
        return json.dumps(
            {
                "plan": self.plan.model_dump(mode="json"),
                "config": self.config,
                "fold": self.fold,
                "epoch": self.epoch,
                "metrics": self.metrics,
                "medseg_version": self.medseg_version,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str, source: str | Path = "<checkpoint>") -> CheckpointMeta:
        """Parse the metadata; :class:`InputError` names ``source`` when it is not valid."""
        try:
            d = json.loads(text)
            if not isinstance(d, dict) or "plan" not in d:
                raise ValueError("no 'plan' record")
            plan = plan_from_dict(d["plan"], f"{source} (plan)")
            return cls(
                plan=plan,
                config=d.get("config"),
                fold=d.get("fold"),
                epoch=int(d.get("epoch", 0)),
                metrics=dict(d.get("metrics") or {}),
                medseg_version=str(d.get("medseg_version", "?")),
            )
        except ConfigError as exc:
            raise InputError(source, f"checkpoint metadata is not valid: {exc}") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError(source, f"checkpoint metadata is not valid: {exc}") from None


@dataclass
class Checkpoint:
    """A loaded checkpoint: weights (``state_dict``), metadata, optional training state."""

    path: Path
    meta: CheckpointMeta
    state_dict: dict[str, torch.Tensor]
    training: dict[str, Any] | None = None

    def build_model(self, device: str | torch.device = "cpu") -> torch.nn.Module:
        """Rebuild the network from the plan and load the weights (evaluation mode).

        Raises :class:`InputError` naming the file when the weights do not fit the network
        the metadata describes."""
        from medseg.models import build_model

        model = build_model(self.meta.plan)
        try:
            model.load_state_dict(self.state_dict)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()
            detail = "; ".join(line.strip() for line in first[:3])
            raise InputError(
                self.path, f"weights do not fit the network its metadata describes: {detail}"
            ) from None
        return model.to(device).eval()


def weights_sha256(state_dict: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 (hex) of a ``state_dict``'s content: for every tensor in sorted key order, its
    name, dtype and shape, then its raw bytes (C order, on the CPU). Aliased tensors count once
    per key, so a ``.pt`` and a ``.safetensors`` copy of the same weights hash alike."""
    import torch

    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().to("cpu").contiguous()
        h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().data)
    return h.hexdigest()


def save_checkpoint(
    path: str | Path,
    state_dict: dict[str, torch.Tensor],
    meta: CheckpointMeta,
    training: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically (``.pt`` or ``.safetensors``), replacing an existing one,
    with the :func:`weights_sha256` of ``state_dict``.

    ``training`` (only for ``.pt``) must hold plain containers, numbers, strings and tensors.
    """
    import torch

    p = Path(path)
    sd = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    digest = weights_sha256(sd)
    if p.suffix == ".safetensors":
        if training is not None:
            raise ConfigError(
                f"{p}: training state cannot be stored in a .safetensors file; use .pt"
            )
        from safetensors.torch import save_file

        # safetensors refuses aliased tensors (DynUNet's skip_layers alias its blocks): copy.
        sd = {k: v.clone() for k, v in sd.items()}
        metadata = {
            "format": FORMAT,
            "format_version": str(FORMAT_VERSION),
            "meta_json": meta.to_json(),
            "weights_sha256": digest,
        }
        with atomic_path(p, overwrite=True) as tmp:
            save_file(sd, str(tmp), metadata=metadata)
        return p
    if p.suffix != ".pt":
        raise ConfigError(f"{p}: expected a checkpoint path ending in .pt or .safetensors")
    payload: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "meta_json": meta.to_json(),
        "weights_sha256": digest,
        "model": sd,
    }
    if training is not None:
        payload["training"] = training
    with atomic_path(p, overwrite=True) as tmp:
        torch.save(payload, tmp)
    return p


def _link_note(p: Path) -> str:
    """``" (a link to TARGET)"`` when ``p`` is a symbolic link, else ``""``."""
    return f" ({p.name} is a link to {p.resolve()})" if p.is_symlink() else ""


def _check_version(p: Path, version: Any) -> None:
    try:
        v = int(version)
    except (TypeError, ValueError):
        v = -1
    if v in _UNHASHED_VERSIONS:
        raise InputError(
            p,
            f"checkpoint format version {v} carries no weights hash (written before medseg "
            f"verified weights); expected format {FORMAT_VERSION}: retrain, or re-save the "
            "weights with medseg.checkpoint.save_checkpoint",
        )
    if v != FORMAT_VERSION:
        raise InputError(p, f"checkpoint format version {version!r}, expected {FORMAT_VERSION}")


def _verify(p: Path, sd: Mapping[str, Any], stored: Any) -> None:
    import torch

    if not all(isinstance(t, torch.Tensor) for t in sd.values()):
        raise InputError(p, "checkpoint weights ('model') hold values other than tensors")
    if not isinstance(stored, str):
        raise InputError(p, "checkpoint lacks its weights hash ('weights_sha256')")
    found = weights_sha256(sd)
    if found != stored:
        raise InputError(
            p,
            f"damaged weights: their SHA-256 is {found[:16]}..., the checkpoint recorded "
            f"{stored[:16]}...; refusing to load altered weights (copy the file again)",
        )


#: First bytes of what ``torch.save`` writes: a zip archive, or (legacy) a pickle stream.
_TORCH_MAGIC = (b"PK\x03\x04", b"\x80")


def _torch_load(p: Path) -> Any:
    """``torch.load(p, weights_only=True)``; every failure is an :class:`InputError`."""
    import torch

    with open(p, "rb") as f:
        head = f.read(4)
    if not head.startswith(_TORCH_MAGIC):
        raise InputError(
            p,
            f"not a readable checkpoint: expected a torch file (a zip archive), found a file "
            f"starting with {head!r}{_link_note(p)}",
        )
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols it then refuses
            warnings.simplefilter("ignore")
            return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # weights_only=True refuses with an UnpicklingError whatever its wording (which changes
        # between torch versions); the global it names, when it names one, is a detail.
        found = re.search(r"GLOBAL (\S+?)(?: was not| whose|\s|$)", str(exc))
        what = f" ({found.group(1)})" if found else ""
        raise InputError(
            p,
            f"refused: the checkpoint holds objects other than tensors and plain "
            f"containers{what}; medseg loads checkpoints with weights_only=True and never "
            "unpickles such objects",
        ) from None
    except Exception as exc:  # torch raises RuntimeError, EOFError, zipfile errors, ...
        lines = str(exc).strip().splitlines() or ["the file ends early"]
        raise InputError(
            p, f"not a readable checkpoint: {type(exc).__name__}: {lines[0]}{_link_note(p)}"
        ) from None


def load_checkpoint(path: str | Path, *, with_training: bool = True) -> Checkpoint:
    """Load a checkpoint safely (``weights_only=True`` / safetensors) and verify its weights
    against the stored :func:`weights_sha256`.

    Raises :class:`InputError` naming the file (and a link's target) when it is missing,
    corrupt, not a medseg checkpoint, holds Python objects beyond tensors and plain containers
    (refused, never unpickled), has no weights hash or weights that do not match it, or its
    metadata is not valid."""
    p = Path(path)
    problem = path_problem(p)
    if problem is not None:
        raise InputError(p, "checkpoint not found" if problem.startswith("no such") else problem)
    if p.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(p), framework="pt") as f:
                md = f.metadata() or {}
                sd = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
        except Exception as exc:  # safetensors raises its own error types for corrupt headers
            raise InputError(p, f"not a readable safetensors file: {exc}{_link_note(p)}") from None
        if md.get("format") != FORMAT or "meta_json" not in md:
            raise InputError(
                p, f"expected a {FORMAT} safetensors file, found no medseg metadata{_link_note(p)}"
            )
        _check_version(p, md.get("format_version", 1))
        _verify(p, sd, md.get("weights_sha256"))
        return Checkpoint(p, CheckpointMeta.from_json(md["meta_json"], p), sd, None)
    payload = _torch_load(p)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise InputError(p, f"expected a {FORMAT} file, found another torch file{_link_note(p)}")
    _check_version(p, payload.get("format_version"))
    if not isinstance(payload.get("meta_json"), str) or not isinstance(payload.get("model"), dict):
        raise InputError(p, "checkpoint lacks its metadata or weights ('meta_json', 'model')")
    _verify(p, payload["model"], payload.get("weights_sha256"))
    meta = CheckpointMeta.from_json(payload["meta_json"], p)
    training = payload.get("training") if with_training else None
    return Checkpoint(p, meta, payload["model"], training)


__all__ = [
    "FORMAT_VERSION",
    "Checkpoint",
    "CheckpointMeta",
    "load_checkpoint",
    "save_checkpoint",
    "weights_sha256",
]
