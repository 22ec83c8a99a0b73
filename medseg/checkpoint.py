"""Checkpoints: a single file that is enough to predict, loaded without unpickling.

Two formats, chosen by suffix:

* ``.pt`` — a ``torch.save`` dictionary of plain containers and tensors, loaded with
  ``torch.load(path, weights_only=True)`` (no arbitrary objects are unpickled). Keys:
  ``format`` (``"medseg-checkpoint"``), ``format_version``, ``meta_json`` (a JSON string, see
  below), ``model`` (the network ``state_dict``) and, for resumable checkpoints, ``training``
  (optimizer, scheduler and grad-scaler ``state_dict``\\ s and RNG states, all plain values).
* ``.safetensors`` — the weights only, with ``meta_json`` in the safetensors header metadata.

``meta_json`` holds the :class:`CheckpointMeta` record: network spec, label names, channel
names, target spacing (mm, array axis order), normalisation, patch size, the resolved
plan/config, the medseg version, epoch and metrics. Writes are atomic (temporary file + rename).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medseg import __version__
from medseg.errors import InputError
from medseg.io.atomic import atomic_path
from medseg.models import NetworkSpec

if TYPE_CHECKING:  # pragma: no cover
    import torch

FORMAT = "medseg-checkpoint"
FORMAT_VERSION = 1


@dataclass
class CheckpointMeta:
    """What a checkpoint carries besides weights (stored as JSON).

    Attributes:
        network: the :class:`NetworkSpec` as a dict.
        label_names: ``{label value: name}``, 0 = background.
        channel_names: input channel names, in input order.
        spacing: target spacing in mm, array axis order, that the network was trained at.
        patch_size: training patch size in voxels (the sliding-window size at inference).
        normalization: per-channel normalisation (scheme and statistics) as the plan states it.
        plan: the resolved plan (JSON-compatible dict); ``config`` the resolved training config.
        medseg_version: version that wrote the checkpoint.
        epoch: epochs completed; metrics: last validation metrics (plain floats, NaN allowed).
    """

    network: dict[str, Any]
    label_names: dict[int, str]
    channel_names: list[str]
    spacing: list[float] | None
    patch_size: list[int]
    normalization: Any = None
    plan: dict[str, Any] | None = None
    config: dict[str, Any] | None = None
    medseg_version: str = __version__
    epoch: int = 0
    metrics: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        d = asdict(self)
        d["label_names"] = {str(k): v for k, v in self.label_names.items()}
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str | Path = "<checkpoint>") -> CheckpointMeta:
        try:
            d = json.loads(text)
            d["label_names"] = {int(k): str(v) for k, v in d["label_names"].items()}
            return cls(**d)
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError(source, f"checkpoint metadata is not valid: {exc}") from exc

    @property
    def network_spec(self) -> NetworkSpec:
        return NetworkSpec.model_validate(self.network)


@dataclass
class Checkpoint:
    """A loaded checkpoint: weights (``state_dict``), metadata, optional training state."""

    path: Path
    meta: CheckpointMeta
    state_dict: dict[str, torch.Tensor]
    training: dict[str, Any] | None = None

    def build_model(self, device: str | torch.device = "cpu") -> torch.nn.Module:
        """Rebuild the network and load the weights (evaluation mode)."""
        from medseg.models import build_network

        model = build_network(self.meta.network_spec)
        model.load_state_dict(self.state_dict)
        return model.to(device).eval()


def save_checkpoint(
    path: str | Path,
    state_dict: dict[str, torch.Tensor],
    meta: CheckpointMeta,
    training: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically (``.pt`` or ``.safetensors``), replacing an existing one.

    ``training`` (only for ``.pt``) must hold plain containers, numbers, strings and tensors.
    """
    import torch

    p = Path(path)
    sd = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    if p.suffix == ".safetensors":
        if training is not None:
            raise ValueError(f"{p}: training state cannot be stored in a .safetensors file")
        from safetensors.torch import save_file

        # safetensors refuses aliased tensors (DynUNet's skip_layers alias its blocks): copy.
        sd = {k: v.clone() for k, v in sd.items()}

        with atomic_path(p, overwrite=True) as tmp:
            save_file(sd, str(tmp), metadata={"format": FORMAT, "meta_json": meta.to_json()})
        return p
    if p.suffix != ".pt":
        raise ValueError(f"{p}: checkpoint suffix must be .pt or .safetensors")
    payload: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "meta_json": meta.to_json(),
        "model": sd,
    }
    if training is not None:
        payload["training"] = training
    with atomic_path(p, overwrite=True) as tmp:
        torch.save(payload, tmp)
    return p


def load_checkpoint(path: str | Path, *, with_training: bool = True) -> Checkpoint:
    """Load a checkpoint safely (``weights_only=True`` / safetensors). Raises
    :class:`InputError` naming the file when it is missing, corrupt or not a medseg checkpoint."""
    import torch

    p = Path(path)
    if not p.is_file():
        raise InputError(p, "checkpoint not found")
    if p.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(p), framework="pt") as f:
                md = f.metadata() or {}
                sd = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
        except Exception as exc:
            raise InputError(p, f"not a readable safetensors file: {exc}") from exc
        if md.get("format") != FORMAT or "meta_json" not in md:
            raise InputError(p, f"expected a {FORMAT} safetensors file, found no medseg metadata")
        return Checkpoint(p, CheckpointMeta.from_json(md["meta_json"], p), sd, None)
    try:
        payload = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InputError(p, f"not a readable checkpoint (weights-only load failed): {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise InputError(p, f"expected a {FORMAT} file, found another torch file")
    version = payload.get("format_version")
    if version != FORMAT_VERSION:
        raise InputError(p, f"checkpoint format version {version}, expected {FORMAT_VERSION}")
    meta = CheckpointMeta.from_json(payload["meta_json"], p)
    training = payload.get("training") if with_training else None
    return Checkpoint(p, meta, payload["model"], training)


__all__ = ["Checkpoint", "CheckpointMeta", "load_checkpoint", "save_checkpoint"]
