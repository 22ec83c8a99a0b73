"""nnU-Net v2 model folders run by ONNX Runtime or OpenVINO: an ONNX export of one (written by
:func:`medseg.export.export_onnx`) read back and run (:func:`load_nnunet_export`), or an
nnU-Net folder whose networks are converted to ONNX once, when it is loaded
(:func:`load_nnunet_on_runtime`).

Either way the model is a :class:`medseg.nnunet.NnunetModel` whose networks are
:class:`~medseg.inference.runtimes.RuntimeNetwork` objects (:class:`NnunetRuntimeModel`):
nnU-Net's preprocessing, the Gaussian sliding window (step 0.5), test-time mirroring,
resampling back and the label or region conversion are the same code as with torch.

Layout of an export ``OUT`` of an nnU-Net folder::

    OUT/medseg_onnx.json     the manifest (:mod:`medseg.inference.onnx_folder`) with
                             kind "nnunet", and "nnunet": the configuration, the trainer
                             and the checkpoint's mirroring axes; the sha256 of every file
    OUT/fold_K/model.onnx    the network of fold K: input ``image`` (B, C, X, Y, Z) float32
                             (the preprocessed image in nnU-Net's axis order), dynamic B,
                             X Y Z = the configuration's patch size; output ``logits``
                             (B, K, X, Y, Z), the full-resolution head
    OUT/plans.json           the nnU-Net folder's files, copied
    OUT/dataset.json
    OUT/postprocessing.json  when the folder has one for the exported folds

No checkpoint and no ``.pkl`` file is copied: an export runs without PyTorch checkpoints and
without ``dynamic-network-architectures``. Every file is checked against its sha256 before it
is used.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from medseg.errors import InputError
from medseg.inference.onnx_folder import (
    GRAPH_FILE,
    MANIFEST,
    export_kind,
    read_manifest,
    verified_bytes,
)
from medseg.inference.runtimes import RuntimeNetwork, onnx_graph, resolve_runtime
from medseg.nnunet.checkpoint import NnunetTraining
from medseg.nnunet.folder import NnunetFolder
from medseg.nnunet.model import NnunetModel, load_nnunet_model

#: the nnU-Net folder's files an export carries (``postprocessing.json`` too, when present)
NNUNET_FILES: tuple[str, ...] = ("plans.json", "dataset.json")
POSTPROCESSING_FILE = "postprocessing.json"


class NnunetRuntimeModel(NnunetModel):
    """An :class:`~medseg.nnunet.NnunetModel` whose networks run in ONNX Runtime or OpenVINO
    (:attr:`runtime`). ``identity`` says so: for an export, ``format: onnx``, the sha256 of
    the graphs as ``weights_sha256`` and of every file of the export; for a folder converted
    at load, the checkpoints' sha256 and ``onnx: converted at load``."""

    runtime: str
    #: the export's manifest, or ``None`` for an nnU-Net folder converted at load
    manifest: dict[str, Any] | None

    @property
    def identity(self) -> dict[str, Any]:
        if self.manifest is None:
            return {**super().identity, "runtime": self.runtime, "onnx": "converted at load"}
        digests = dict(self.manifest["sha256"])
        graphs = [f"fold_{f}/{GRAPH_FILE}" for f in self.folder.folds]
        return {
            "kind": "nnunet",
            "format": "onnx",
            "path": str(self.folder.root),
            "source": self.manifest.get("source"),
            "folds": list(self.folder.folds),
            "checkpoint": self.folder.checkpoint,
            "configuration": self.configuration_name,
            "trainer": self.trainer_name,
            "weights_sha256": {g: digests[g] for g in graphs},
            "files_sha256": digests,
            "runtime": self.runtime,
        }


def _runtime_model(
    folder: NnunetFolder,
    networks: Sequence[torch.nn.Module],
    training: NnunetTraining,
    runtime: str,
    manifest: dict[str, Any] | None,
    options: dict[str, Any],
) -> NnunetRuntimeModel:
    model = NnunetRuntimeModel(folder, networks=networks, training=training, **options)
    model.runtime = runtime
    model.manifest = manifest
    return model


def training_record(training: NnunetTraining) -> dict[str, Any]:
    """The manifest's ``nnunet`` entry of an export (read back by :func:`load_nnunet_export`)."""
    axes = training.mirror_axes
    return {
        "configuration": training.configuration,
        "trainer": training.trainer_name,
        "mirror_axes": None if axes is None else list(axes),
    }


def _training(manifest: dict[str, Any], where: Path) -> NnunetTraining:
    info: Any = manifest.get("nnunet")  # a dict, else refused below
    try:
        axes = info["mirror_axes"]
        return NnunetTraining(
            configuration=str(info["configuration"]),
            trainer_name=str(info["trainer"]),
            mirror_axes=None if axes is None else tuple(int(a) for a in axes),
        )
    except (KeyError, TypeError, ValueError):
        raise InputError(
            where, "expected 'nnunet' with configuration, trainer and mirror_axes"
        ) from None


def _json(root: Path, rel: str, manifest: dict[str, Any]) -> dict[str, Any]:
    try:
        doc = json.loads(verified_bytes(root, rel, manifest).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise InputError(root / rel, f"expected a JSON file, could not read it ({exc})") from None
    if not isinstance(doc, dict):
        raise InputError(root / rel, f"expected a JSON object, found {type(doc).__name__}")
    return doc


def load_nnunet_export(
    path: str | Path,
    *,
    folds: Sequence[int | str] | None = None,
    runtime: str = "auto",
    **options: Any,
) -> NnunetRuntimeModel:
    """An exported nnU-Net model folder (layout: this module's docstring) ready to predict.

    Args:
        path: the export (``medseg_onnx.json`` with kind ``nnunet``).
        folds: folds to ensemble (default: every fold exported).
        runtime: ``auto`` (the fastest ONNX runtime installed), ``onnxruntime`` or
            ``openvino``; torch cannot run an export.
        options: :class:`~medseg.nnunet.NnunetModel`'s keywords (``device``, ``amp_dtype``,
            ``tta``, ``overlap``, ``batch_size``, ``postprocessing``); ``checkpoint`` is
            accepted and ignored (the manifest names the checkpoint exported).

    Every file used is checked against the manifest's sha256 first; a changed, missing or
    unlisted file is refused with one :class:`InputError` naming it.
    """
    root = Path(path)
    manifest = read_manifest(root)
    if export_kind(manifest) != "nnunet":
        kind = export_kind(manifest)
        raise InputError(root / MANIFEST, f"expected an nnU-Net export, found kind {kind!r}")
    options.pop("checkpoint", None)
    held = [str(f) for f in manifest["folds"]]
    wanted = held if folds is None else [str(f) for f in folds]
    missing = [f for f in wanted if f not in held]
    if missing:
        raise InputError(root, f"folds: expected some of {', '.join(held)}, found {missing}")
    training = _training(manifest, root / MANIFEST)
    plans, dataset = (_json(root, name, manifest) for name in NNUNET_FILES)
    pp = None
    if POSTPROCESSING_FILE in manifest["sha256"]:
        verified_bytes(root, POSTPROCESSING_FILE, manifest)
        pp = root / POSTPROCESSING_FILE
    rels = [f"fold_{f}/{GRAPH_FILE}" for f in wanted]
    graphs = [verified_bytes(root, rel, manifest) for rel in rels]
    chosen = resolve_runtime(runtime, str(options.get("device", "cpu")), onnx_only=True)
    folder = NnunetFolder(
        root=root,
        plans=plans,
        dataset=dataset,
        checkpoints=tuple(root / rel for rel in rels),
        folds=tuple(wanted),
        checkpoint="best" if manifest.get("checkpoint") == "best" else "final",
        postprocessing_file=pp,
    )
    nets = [RuntimeNetwork(g, chosen) for g in graphs]
    return _runtime_model(folder, nets, training, chosen, manifest, options)


def load_nnunet_on_runtime(
    path: str | Path,
    *,
    runtime: str,
    folds: Sequence[int | str] | None = None,
    checkpoint: str = "final",
    **options: Any,
) -> NnunetModel:
    """An nnU-Net v2 model folder run by ``runtime`` (``torch``, ``onnxruntime``, ``openvino``
    or ``auto``: the fastest installed for the device, see
    :func:`~medseg.inference.runtimes.resolve_runtime`): for an ONNX runtime each fold's network
    is converted to an ONNX graph once, here, in memory. ``folds``, ``checkpoint`` and
    ``options`` are :func:`~medseg.nnunet.load_nnunet_model`'s."""
    chosen = resolve_runtime(runtime, str(options.get("device", "cpu")))
    model = load_nnunet_model(path, folds=folds, checkpoint=checkpoint, **options)
    if chosen == "torch":
        return model
    patch = model.config["patch_size"]
    nets = [
        RuntimeNetwork(onnx_graph(net, len(model.channel_names), patch), chosen)
        for net in model.models
    ]
    return _runtime_model(model.folder, nets, model.training, chosen, None, options)


__all__ = [
    "NNUNET_FILES",
    "POSTPROCESSING_FILE",
    "NnunetRuntimeModel",
    "load_nnunet_export",
    "load_nnunet_on_runtime",
    "training_record",
]
