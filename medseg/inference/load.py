"""Loading a segmentation model of any kind behind one interface.

:class:`SegmentationModel` is what batch prediction (:func:`medseg.inference.batch.
predict_folder`) needs of a model: medseg's :class:`~medseg.inference.predictor.Predictor`,
an imported nnU-Net model, an ONNX export and a two-stage cascade all offer it.
:func:`load_model` opens a model path by its kind: a cascade's folder
(:mod:`medseg.inference.cascade`), an nnU-Net results folder (:mod:`medseg.nnunet`; on an
ONNX runtime: :mod:`medseg.inference.nnunet_onnx`), an ONNX export folder of a medseg or an
nnU-Net model (:mod:`medseg.export`), otherwise medseg checkpoints or model folders
(:meth:`Predictor.from_paths`).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol, runtime_checkable

from numpy.typing import NDArray

from medseg.errors import ConfigError
from medseg.volume import LabelMap, Volume


@runtime_checkable
class SegmentationModel(Protocol):
    """A loaded model that segments one case at a time.

    ``predict_case(images)`` takes the case's channels (original grids, in the order of
    ``channel_names``) and returns the label map on the grid of ``images[0]`` and, with
    ``with_probabilities``, the class probabilities ``(K, I, J, K)`` on that grid.
    ``identity`` is a JSON-able record of what the model is (``kind``, ``path``, ``folds``,
    ``checkpoint``, ``weights_sha256``), written into run manifests."""

    @property
    def label_names(self) -> dict[int, str]: ...

    @property
    def channel_names(self) -> list[str]: ...

    @property
    def identity(self) -> dict[str, Any]: ...

    def predict_case(
        self, images: Sequence[Volume], *, with_probabilities: bool = False
    ) -> tuple[LabelMap, NDArray[Any] | None]: ...

    def predict(self, images: Sequence[Volume]) -> LabelMap: ...


def _optional(module: str) -> ModuleType | None:
    """``module`` if this installation has it (the nnU-Net and ONNX model kinds)."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name == module:
            return None
        raise


def device_for_rank(device: str) -> tuple[str, Any]:
    """``(device, AMP dtype)`` for ``device`` (``auto``, ``cpu``, ``cuda``); under
    ``torchrun`` with several ranks each rank gets its own GPU (``cuda:<LOCAL_RANK>``)
    (:mod:`medseg.runtime`)."""
    from medseg.runtime import dist_info, resolve_amp, resolve_device

    torch_device = resolve_device(device, local_rank=dist_info().local_rank)
    return str(torch_device), resolve_amp("auto", torch_device)


def load_model(
    model: str | Path | Sequence[str | Path],
    *,
    folds: Sequence[int | str] | None = None,
    checkpoint: str = "last",
    **options: Any,
) -> SegmentationModel:
    """Load ``model`` (a checkpoint file, a model folder, several of them to ensemble, an
    nnU-Net results folder or an ONNX export folder) for prediction.

    Args:
        model: path(s) of the model.
        folds: folds of a model folder to ensemble (default: its cross-validation folds).
        checkpoint: ``"last"`` (final weights) or ``"best"`` (nnU-Net: ``"final"``, ...).
        options: ``device`` (``auto``, ``cpu``, ``cuda``), ``runtime`` (``auto``, the
            default: the fastest runtime installed for the device, logged — on the CPU
            OpenVINO, then ONNX Runtime, then torch, as measured; on CUDA torch; ``torch``,
            ``onnxruntime``, ``openvino``: see :mod:`medseg.inference.runtimes`; trained
            networks are converted to ONNX once, here), ``overlap``, ``batch_size`` (>= 1),
            ``tta``,
            ``model_postprocessing`` (False: skip the model folder's chosen post-processing);
            further keywords go to the model kind's loader.
    """
    paths = [Path(model)] if isinstance(model, (str, Path)) else [Path(m) for m in model]
    if not paths:
        raise ConfigError("model: expected at least one model path, found none")
    batch_size = options.get("batch_size", 2)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size: expected an integer >= 1, found {batch_size!r}")
    from medseg.postprocess import Postprocessing

    kw = dict(options)
    dev, amp = device_for_rank(str(kw.pop("device", "auto")))
    if not kw.pop("model_postprocessing", True):
        kw["postprocessing"] = Postprocessing()
    kw.update(device=dev, amp_dtype=amp)
    runtime = str(kw.pop("runtime", "auto"))
    if len(paths) == 1 and paths[0].is_dir():
        from medseg.inference.cascade import is_cascade_folder, load_cascade

        if is_cascade_folder(paths[0]):
            which = "last" if checkpoint == "final" else checkpoint
            return load_cascade(paths[0], folds=folds, checkpoint=which, runtime=runtime, **kw)
        nnunet = _optional("medseg.nnunet")
        if nnunet is not None and nnunet.is_nnunet_folder(paths[0]):
            from medseg.inference.nnunet_onnx import load_nnunet_on_runtime

            return load_nnunet_on_runtime(
                paths[0], runtime=runtime, folds=folds, checkpoint=checkpoint, **kw
            )
        from medseg.inference.onnx_folder import (
            export_kind,
            is_onnx_folder,
            load_onnx_model,
            read_manifest,
        )

        if is_onnx_folder(paths[0]) and export_kind(read_manifest(paths[0])) == "nnunet":
            from medseg.inference.nnunet_onnx import load_nnunet_export

            return load_nnunet_export(paths[0], folds=folds, runtime=runtime, **kw)
        if is_onnx_folder(paths[0]):
            return load_onnx_model(paths[0], folds=folds, runtime=runtime, **kw)
    from medseg.inference.predictor import Predictor

    which = "last" if checkpoint == "final" else checkpoint  # nnU-Net's name for the same
    return Predictor.from_paths(paths, folds=folds, checkpoint=which, runtime=runtime, **kw)


__all__ = ["SegmentationModel", "device_for_rank", "load_model"]
