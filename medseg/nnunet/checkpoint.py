"""nnU-Net v2 checkpoints (``fold_K/checkpoint_final.pth``) read with
``torch.load(weights_only=True)``.

nnU-Net saves a dict (``nnUNetTrainer.save_checkpoint``)::

    network_weights   state dict of the network (tensors)
    optimizer_state   optimizer state dict (tensors, numbers, tuples)
    grad_scaler_state None or a dict of numbers
    logging           lists of numbers per epoch: NumPy float32 scalars (the mean of the
                      float32 losses) and float64 scalars (Dice, its moving average)
    _best_ema         a NumPy float64 scalar or None
    current_epoch     int
    init_args         {"plans": dict, "configuration": str, "fold": int|str,
                       "dataset_json": dict, "device": torch.device}
    trainer_name      str
    inference_allowed_mirroring_axes  tuple of ints or None

Everything but the NumPy scalars is allowed by torch's weights-only unpickler; the only extra
globals allowed are NumPy's scalar reconstructor, ``numpy.dtype`` and the float32 and float64
dtype classes (:data:`ALLOWED_NUMPY_SCALARS`). A checkpoint that needs any other type is
refused with :class:`~medseg.errors.InputError` naming the file and the type.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medseg.errors import InputError

#: NumPy scalar dtypes that nnU-Net's logging and ``_best_ema`` store (nothing else).
ALLOWED_NUMPY_SCALARS = ("float64", "float32")


def _allow_list() -> list[Any]:
    """The globals allowed beyond torch's defaults: NumPy's scalar reconstructor (under its
    NumPy 2 and NumPy 1 module names), ``numpy.dtype`` and the scalar dtype classes."""
    scalar = np._core.multiarray.scalar  # type: ignore[attr-defined]
    dtypes = [type(np.dtype(n)) for n in ALLOWED_NUMPY_SCALARS]
    return [scalar, (scalar, "numpy.core.multiarray.scalar"), np.dtype, *dtypes]


@dataclass(frozen=True)
class NnunetTraining:
    """How the folds of a model were trained, as far as prediction needs it (read from the
    first fold's checkpoint, or from an ONNX export's manifest).

    Attributes:
        configuration: the plans configuration (e.g. ``3d_fullres``).
        trainer_name: the trainer class (e.g. ``nnUNetTrainer``).
        mirror_axes: ``inference_allowed_mirroring_axes`` (axes of the preprocessed array,
            nnU-Net's order), or ``None`` when the trainer allows no mirroring.
    """

    configuration: str
    trainer_name: str
    mirror_axes: tuple[int, ...] | None


@dataclass(frozen=True)
class NnunetCheckpoint:
    """What prediction needs from one nnU-Net checkpoint.

    Attributes:
        path: the ``.pth`` file.
        weights: the network's state dict.
        trainer_name: the trainer class that wrote it (e.g. ``nnUNetTrainer``).
        configuration: the plans configuration it was trained with (e.g. ``3d_fullres``).
        mirror_axes: ``inference_allowed_mirroring_axes`` (axes of the preprocessed array,
            nnU-Net's order), or ``None`` when the trainer allows no mirroring.
    """

    path: Path
    weights: dict[str, Any]
    trainer_name: str
    configuration: str
    mirror_axes: tuple[int, ...] | None

    @property
    def training(self) -> NnunetTraining:
        """What prediction needs of how this fold was trained."""
        return NnunetTraining(self.configuration, self.trainer_name, self.mirror_axes)


def load_nnunet_checkpoint(path: str | Path) -> NnunetCheckpoint:
    """Read ``path`` with ``torch.load(weights_only=True)`` and the allow-list of the module
    docstring; raises :class:`InputError` for a file that is not such a checkpoint or needs
    other types."""
    import pickle

    import torch

    p = Path(path)
    try:
        with torch.serialization.safe_globals(_allow_list()):
            doc = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        m = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        what = (
            f"a type outside the allow-list ({m.group(1)})" if m else "types outside the allow-list"
        )
        raise InputError(
            p,
            f"the checkpoint needs {what}; medseg reads nnU-Net checkpoints with "
            "weights_only=True and refuses to unpickle other objects",
        ) from None
    except (OSError, RuntimeError, EOFError) as exc:
        raise InputError(p, f"expected an nnU-Net checkpoint, could not read it ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("network_weights"), dict):
        raise InputError(p, "expected an nnU-Net checkpoint dict with network_weights")
    init = doc.get("init_args")
    if not isinstance(init, dict) or not isinstance(init.get("configuration"), str):
        raise InputError(p, "expected init_args with the configuration name in the checkpoint")
    axes = doc.get("inference_allowed_mirroring_axes")
    return NnunetCheckpoint(
        path=p,
        weights=doc["network_weights"],
        trainer_name=str(doc.get("trainer_name", "")),
        configuration=init["configuration"],
        mirror_axes=None if axes is None else tuple(int(a) for a in axes),
    )


__all__ = [
    "ALLOWED_NUMPY_SCALARS",
    "NnunetCheckpoint",
    "NnunetTraining",
    "load_nnunet_checkpoint",
]
