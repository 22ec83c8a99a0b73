"""Exported ONNX model folders (written by :func:`medseg.export.export_onnx`), read back.

Layout of a folder ``OUT`` exported from a medseg model folder::

    OUT/medseg_onnx.json        manifest: format, version, kind, opset, folds, source,
                                checkpoint, sha256 of every file below
    OUT/fold_K/model.onnx       the network of fold K (input ``image`` (B, C, X, Y, Z)
                                float32, dynamic B, X, Y, Z = the plan's patch size; output
                                ``logits`` (B, K, X, Y, Z))
    OUT/fold_K/meta.json        the checkpoint's metadata (plan: preprocessing, labels,
                                channels, patch size), as in a medseg checkpoint
    OUT/postprocessing.json     the source model folder's post-processing choice, if it had one

The manifest's ``kind`` says what was exported: ``"medseg"`` (the layout above; a manifest
without ``kind``, written before nnU-Net exports existed, is one too) or ``"nnunet"``, an
nnU-Net v2 model folder, whose layout (``fold_K/model.onnx``, ``plans.json``,
``dataset.json``, the configuration and trainer in the manifest) and loading are in
:mod:`medseg.inference.nnunet_onnx`. The format and its version are the same for both.

Every file is checked against its recorded sha256 before it is used: a changed or corrupt
file is refused with one error naming it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medseg.errors import InputError
from medseg.inference.predictor import Predictor

MANIFEST = "medseg_onnx.json"
FORMAT = "medseg-onnx"
FORMAT_VERSION = 1
GRAPH_FILE = "model.onnx"
META_FILE = "meta.json"
#: what an export holds (the manifest's ``kind``; absent means ``medseg``)
KINDS: tuple[str, ...] = ("medseg", "nnunet")


def is_onnx_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder written by :func:`medseg.export.export_onnx` (it holds
    ``medseg_onnx.json``)."""
    return (Path(path) / MANIFEST).is_file()


#: Files an export may hold directly in its folder (beside ``fold_K/`` or ``stage_N/``).
TOP_LEVEL_FILES = ("postprocessing.json", "cascade.json", "plans.json", "dataset.json")


def _read_document(path: Path) -> dict[str, Any]:
    """A manifest checked for its format, version and ``sha256`` mapping (every export kind)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(path, f"not a readable ONNX model manifest: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise InputError(path, f"expected format {FORMAT!r}, found {doc.get('format')!r}")
    if doc.get("format_version") != FORMAT_VERSION:
        raise InputError(
            path, f"format_version {doc.get('format_version')!r}, expected {FORMAT_VERSION}"
        )
    if not isinstance(doc.get("sha256"), dict):
        raise InputError(path, "expected a 'sha256' mapping")
    return doc


def verify_top_level(root: str | Path, manifest: dict[str, Any] | None = None) -> None:
    """Check the files an export holds directly in its folder (its post-processing choice, a
    cascade's ``cascade.json``, ...: every one the manifest lists, and any of
    :data:`TOP_LEVEL_FILES` present) against the manifest's sha256, before any is read: a
    changed, added or missing file is one :class:`InputError` naming it. ``manifest``: the
    folder's manifest when the caller has read it already."""
    base = Path(root)
    doc = manifest if manifest is not None else _read_document(base / MANIFEST)
    listed = {rel for rel in doc["sha256"] if "/" not in rel}
    present = {name for name in TOP_LEVEL_FILES if (base / name).is_file()}
    for rel in sorted(listed | present):
        verified_bytes(base, rel, doc)


def read_manifest(root: str | Path) -> dict[str, Any]:
    """The manifest of an exported folder of networks, checked for its format, version and
    keys."""
    path = Path(root) / MANIFEST
    doc = _read_document(path)
    folds = doc.get("folds")
    if not isinstance(folds, list) or not folds:
        raise InputError(path, "expected a non-empty 'folds' list and a 'sha256' mapping")
    if export_kind(doc) not in KINDS:
        raise InputError(path, f"kind: expected one of {KINDS}, found {doc.get('kind')!r}")
    return doc


def export_kind(manifest: dict[str, Any]) -> str:
    """What an export's manifest says it holds: ``medseg`` or ``nnunet`` (see :data:`KINDS`)."""
    return str(manifest.get("kind", "medseg"))


def verified_bytes(root: Path, rel: str, manifest: dict[str, Any]) -> bytes:
    """The bytes of ``root / rel``, checked against the sha256 the manifest records for
    ``rel``: a file not listed, unreadable or changed is refused with one
    :class:`InputError` naming it."""
    path = root / rel
    expected = manifest["sha256"].get(rel)
    if expected is None:
        raise InputError(path, f"not listed in {MANIFEST}; the folder is incomplete or altered")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(path, f"cannot be read ({exc.strerror or exc})") from None
    found = hashlib.sha256(data).hexdigest()
    if found != expected:
        raise InputError(
            path,
            f"sha256 {found[:12]}... differs from {expected[:12]}... recorded in {MANIFEST}: "
            "the file was changed or is corrupt; export the model again",
        )
    return data


def onnx_graphs(root: str | Path, *, folds: Sequence[int | str] | None = None) -> list[Any]:
    """The verified networks (:class:`~medseg.inference.runtimes.OnnxGraph`) of an exported
    folder: every fold it holds, or ``folds`` (e.g. ``[0, 2]``, ``["all"]``)."""
    from medseg.checkpoint import CheckpointMeta
    from medseg.inference.runtimes import OnnxGraph

    base = Path(root)
    manifest = read_manifest(base)
    verify_top_level(base, manifest)  # the post-processing choice the predictor will read
    if export_kind(manifest) != "medseg":
        raise InputError(
            base,
            f"an export of an nnU-Net model folder ({MANIFEST} kind "
            f"{export_kind(manifest)!r}): load it with medseg.load_model or medseg predict",
        )
    held = [str(f) for f in manifest["folds"]]
    wanted = held if folds is None else [str(f) for f in folds]
    missing = [f for f in wanted if f not in held]
    if missing:
        raise InputError(
            base, f"folds: expected some of {', '.join(held)}, found {', '.join(missing)}"
        )
    graphs = []
    for f in wanted:
        meta_rel, graph_rel = f"fold_{f}/{META_FILE}", f"fold_{f}/{GRAPH_FILE}"
        text = verified_bytes(base, meta_rel, manifest).decode("utf-8")
        meta = CheckpointMeta.from_json(text, base / meta_rel)
        graph = verified_bytes(base, graph_rel, manifest)
        graphs.append(OnnxGraph(base / graph_rel, meta, graph))
    return graphs


class OnnxPredictor(Predictor):
    """A :class:`~medseg.inference.predictor.Predictor` whose networks are the ONNX graphs of
    an exported folder (see :func:`load_onnx_model`); ``identity`` names the folder, its folds,
    the checkpoint they were exported from, the runtime and the sha256 of every file."""

    source: Path
    manifest: dict[str, Any]
    chosen_folds: list[str]

    @property
    def identity(self) -> dict[str, Any]:
        return {
            "kind": "onnx",
            "path": str(self.source),
            "folds": list(self.chosen_folds),
            "checkpoint": self.manifest.get("checkpoint", "last"),
            "weights_sha256": dict(self.manifest["sha256"]),
            "runtime": self.runtime,
        }


def load_onnx_model(
    path: str | Path, *, folds: Sequence[int | str] | None = None, **options: Any
) -> OnnxPredictor:
    """An :class:`OnnxPredictor` over the ONNX graphs of an exported folder (its folds
    ensembled, or ``folds``), with the folder's post-processing choice. ``options`` go to the
    predictor (``runtime``: ``auto`` (default), ``onnxruntime`` or ``openvino``; ``overlap``,
    ``tta``, ``batch_size``, ``device``, ...); ``checkpoint`` is accepted and ignored (the
    manifest names the checkpoint the graphs were exported from)."""
    if not is_onnx_folder(path):
        raise InputError(path, f"expected an exported ONNX model folder holding {MANIFEST}")
    options.pop("checkpoint", None)
    options.setdefault("runtime", "auto")
    predictor = OnnxPredictor.from_paths([path], folds=folds, **options)
    assert isinstance(predictor, OnnxPredictor)
    predictor.source = Path(path)
    predictor.manifest = read_manifest(path)
    held = [str(f) for f in predictor.manifest["folds"]]
    predictor.chosen_folds = held if folds is None else [str(f) for f in folds]
    return predictor


__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "GRAPH_FILE",
    "KINDS",
    "MANIFEST",
    "META_FILE",
    "TOP_LEVEL_FILES",
    "OnnxPredictor",
    "export_kind",
    "is_onnx_folder",
    "load_onnx_model",
    "onnx_graphs",
    "read_manifest",
    "verified_bytes",
    "verify_top_level",
]
