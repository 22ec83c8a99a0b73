"""Export a trained model folder to a portable folder of ONNX graphs (:func:`export_onnx`).

The exported folder (layout: :mod:`medseg.inference.onnx_folder`) holds one ONNX graph per
fold (opset >= 17, dynamic batch axis, the plan's patch size on the spatial axes), the
checkpoint's metadata (plan: preprocessing, labels, channels) beside each, the model folder's
post-processing choice, and a manifest with the sha256 of every file. ``medseg predict
--model OUT`` runs it with ONNX Runtime or OpenVINO (no PyTorch needed for the network);
preprocessing, sliding windows, test-time mirroring and restoration are medseg's own code,
shared with the torch runtime. Loading verifies every file against its recorded sha256.
A two-stage cascade (:mod:`medseg.inference.cascade`) exports as a cascade of ONNX folders
(``stage_1/``, ``stage_2/``, its ``cascade.json``), which ``medseg predict`` runs the same way.

An nnU-Net v2 model folder (:mod:`medseg.nnunet`) exports the same way, with the manifest's
``kind`` ``nnunet``: one graph per fold of the network nnU-Net predicts with (no deep
supervision), ``plans.json``, ``dataset.json`` and ``postprocessing.json`` copied (never a
``.pkl``); ``medseg predict`` runs it with nnU-Net's own preprocessing, sliding window and
label conversion (layout and loading: :mod:`medseg.inference.nnunet_onnx`).
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from medseg._version import __version__
from medseg.errors import InputError, OutputError, OutputExistsError
from medseg.inference.cascade import is_cascade_folder
from medseg.inference.onnx_folder import (
    FORMAT,
    FORMAT_VERSION,
    GRAPH_FILE,
    MANIFEST,
    META_FILE,
    is_onnx_folder,
    load_onnx_model,
)
from medseg.io.atomic import discard_temporary, reserve_temporary
from medseg.io.files import sha256_file
from medseg.io.outputs import check_not_inputs
from medseg.model_folder import ModelFolder

#: export formats (``format`` argument)
FORMATS: tuple[str, ...] = ("onnx",)


def export_onnx(
    model_folder: str | Path,
    out: str | Path,
    *,
    folds: Sequence[int | str] | None = None,
    checkpoint: str = "last",
    opset: int = 17,
    overwrite: bool = False,
) -> Path:
    """Write the ONNX model folder ``out`` from a medseg model folder (or a checkpoint file).

    Args:
        model_folder: a model folder written by ``medseg train`` (``fold_K/checkpoint_*.pt``),
            one checkpoint file, a cascade's folder, or an nnU-Net v2 model folder
            (``TRAINER__PLANS__CONFIGURATION``, see :mod:`medseg.inference.nnunet_onnx`).
        out: the folder to write (must not exist, or be an earlier export with ``overwrite``;
            written in a temporary folder beside it and renamed when complete).
        folds: which folds (``[0, 2]``, ``["all"]``); default every CV fold, else ``fold_all``.
        checkpoint: ``"last"`` (default; ``"final"`` is a synonym, nnU-Net's name) or
            ``"best"``.
        opset: ONNX operator set, >= 17.
        overwrite: replace an earlier export at ``out`` (nothing else is ever replaced).

    Returns ``out``. Raises :class:`InputError` when ``model_folder`` is not a medseg or
    nnU-Net model folder or checkpoint (naming what was expected and found), and
    :class:`OutputExistsError` when ``out`` exists and may not be replaced.
    """
    from medseg.checkpoint import load_checkpoint
    from medseg.inference.runtimes import onnx_graph

    src, dst = Path(model_folder), Path(out)
    if not src.exists():
        raise InputError(src, "model folder not found")
    if src.is_dir() and is_onnx_folder(src):
        raise InputError(src, "this folder is already an ONNX export; pass the trained model")
    checkpoint = "last" if checkpoint == "final" else checkpoint
    if src.is_dir() and is_cascade_folder(src):
        return _export_cascade(src, dst, folds, checkpoint, opset, overwrite)
    if src.is_dir() and _is_nnunet_folder(src):
        return _export_nnunet(src, dst, folds, checkpoint, opset, overwrite)
    if src.is_dir():
        found = sorted(p.name for p in src.iterdir())[:5]
        if not ModelFolder(src).has_checkpoint():
            raise InputError(
                src,
                "expected a medseg model folder (fold_K/checkpoint_last.pt from medseg train) "
                "or an nnU-Net v2 model folder (plans.json, dataset.json, "
                f"fold_K/checkpoint_final.pth), found {', '.join(found) or 'an empty folder'}",
            )
        files = ModelFolder(src).checkpoints(None if folds is None else list(folds), checkpoint)
    else:
        files = [src]
    names: list[str] = []
    with _staging(src, dst, overwrite) as tmp:
        for path in files:
            ckpt = load_checkpoint(path, with_training=False)
            name = str(ckpt.meta.fold if ckpt.meta.fold is not None else len(names))
            if name in names:
                name = str(len(names))
            plan = ckpt.meta.plan
            graph = onnx_graph(
                ckpt.build_model("cpu"), len(plan.channel_names), plan.patch_size, opset=opset
            )
            fold_dir = tmp / f"fold_{name}"
            fold_dir.mkdir()
            (fold_dir / GRAPH_FILE).write_bytes(graph)
            (fold_dir / META_FILE).write_text(ckpt.meta.to_json(), encoding="utf-8")
            names.append(name)
        chosen = ModelFolder(src if src.is_dir() else src.parent).postprocessing
        if chosen.is_file():
            shutil.copyfile(chosen, tmp / chosen.name)
        _publish(
            tmp,
            dst,
            overwrite,
            kind="medseg",
            opset=int(opset),
            folds=names,
            checkpoint=checkpoint,
            source=str(src.resolve()),
            medseg_version=__version__,
            input="image (batch, channels, X, Y, Z) float32, X Y Z = the plan's patch size",
            output="logits (batch, classes, X, Y, Z) float32",
        )
    return dst


def _is_nnunet_folder(src: Path) -> bool:
    try:
        from medseg.nnunet import is_nnunet_folder
    except ModuleNotFoundError:  # an installation without the nnU-Net module
        return False
    return is_nnunet_folder(src)


def _export_nnunet(
    src: Path,
    dst: Path,
    folds: Sequence[int | str] | None,
    checkpoint: str,
    opset: int,
    overwrite: bool,
) -> Path:
    """An nnU-Net v2 model folder's export (layout: :mod:`medseg.inference.nnunet_onnx`): the
    folds' networks, built as :func:`medseg.nnunet.load_nnunet_model` builds them (which also
    refuses what medseg cannot run: cascades, 2-D configurations, ...), as ONNX graphs."""
    from medseg.inference.nnunet_onnx import NNUNET_FILES, POSTPROCESSING_FILE, training_record
    from medseg.inference.runtimes import onnx_graph
    from medseg.nnunet import load_nnunet_model

    with _staging(src, dst, overwrite) as tmp:
        model = load_nnunet_model(src, folds=folds, checkpoint=checkpoint, device="cpu")
        patch = model.config["patch_size"]
        for name, net in zip(model.folder.folds, model.models, strict=True):
            graph = onnx_graph(net, len(model.channel_names), patch, opset=opset)
            (tmp / f"fold_{name}").mkdir()
            (tmp / f"fold_{name}" / GRAPH_FILE).write_bytes(graph)
        for f in NNUNET_FILES:
            shutil.copyfile(src / f, tmp / f)
        if model.folder.postprocessing_file is not None:
            shutil.copyfile(model.folder.postprocessing_file, tmp / POSTPROCESSING_FILE)
        _publish(
            tmp,
            dst,
            overwrite,
            kind="nnunet",
            opset=int(opset),
            folds=list(model.folder.folds),
            checkpoint=model.folder.checkpoint,
            source=str(src.resolve()),
            medseg_version=__version__,
            nnunet=training_record(model.training),
            input="image (batch, channels, X, Y, Z) float32: the image preprocessed as "
            "plans.json says, nnU-Net's axis order; X Y Z = the configuration's patch size",
            output="logits (batch, classes or regions, X, Y, Z) float32",
        )
    return dst


def _publish(tmp: Path, dst: Path, overwrite: bool, **fields: Any) -> None:
    """Write the manifest of the export in ``tmp`` (``fields`` and the sha256 of every file
    in ``tmp``) and rename ``tmp`` to ``dst``; an earlier export at ``dst`` is checked again
    (files may have come meanwhile) and set aside first, so a kill leaves the old or the new."""
    digests = {
        p.relative_to(tmp).as_posix(): sha256_file(p) for p in sorted(tmp.rglob("*")) if p.is_file()
    }
    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, **fields, "sha256": digests}
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    if dst.exists():
        _check_replaceable(dst, overwrite)
        old = reserve_temporary(dst)
        dst.rename(old)
        tmp.rename(dst)
        _drop(old)
    else:
        tmp.rename(dst)


def _export_cascade(
    src: Path,
    dst: Path,
    folds: Sequence[int | str] | None,
    checkpoint: str,
    opset: int,
    overwrite: bool,
) -> Path:
    """A cascade's export: each stage exported into ``stage_N/`` (an ONNX folder of its own),
    the cascade's ``cascade.json`` and post-processing beside them, and a manifest with the
    sha256 of every file (so ``overwrite`` replaces only what this export wrote)."""
    from medseg.inference.cascade import read_cascade

    stages = read_cascade(src)
    with _staging(src, dst, overwrite) as tmp:
        for stage in stages:
            export_onnx(
                stage.root, tmp / stage.root.name, folds=folds, checkpoint=checkpoint, opset=opset
            )
        folder = ModelFolder(src)
        for f in (folder.cascade, folder.postprocessing):
            if f.is_file():
                shutil.copyfile(f, tmp / f.name)
        _publish(
            tmp,
            dst,
            overwrite,
            cascade=[s.root.name for s in stages],
            source=str(src.resolve()),
            medseg_version=__version__,
        )
    return dst


@contextlib.contextmanager
def _staging(src: Path, dst: Path, overwrite: bool) -> Iterator[Path]:
    """The checks every export kind makes before writing (``dst`` not inside or onto the
    model, and replaceable), then a temporary folder beside ``dst`` (medseg's temporary naming:
    removed if the run is killed) for the export to fill and :func:`_publish`; removed on the
    way out whatever happened."""
    check_not_inputs([src], folder=dst)
    if dst.exists() or dst.is_symlink():
        _check_replaceable(dst, overwrite)
    tmp = reserve_temporary(dst)
    tmp.mkdir()
    try:
        yield tmp
    finally:
        _drop(tmp)


def _drop(tmp: Path) -> None:
    """Remove a temporary folder of this export (if it is still there) and unregister it."""
    shutil.rmtree(tmp, ignore_errors=True)
    with contextlib.suppress(OSError):
        discard_temporary(tmp)


def _check_replaceable(dst: Path, overwrite: bool) -> None:
    """Refuse to replace ``dst`` unless ``overwrite`` and it is an earlier export holding only
    what the export wrote (the files its manifest records, their folders, the manifest): a
    folder medseg did not write, or a file someone added to an export, is never deleted."""
    if not (overwrite and dst.is_dir() and not dst.is_symlink() and is_onnx_folder(dst)):
        hint = None if is_onnx_folder(dst) else "choose a new folder (it is not an ONNX export)"
        raise OutputExistsError(dst, hint)
    try:
        recorded = set(json.loads((dst / MANIFEST).read_text(encoding="utf-8"))["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        recorded = set()
    owned = recorded | {MANIFEST} | {p for r in recorded for p in _parents(r)}
    for p in sorted(dst.rglob("*")):
        rel = p.relative_to(dst).as_posix()
        if rel not in owned or p.is_symlink() or (rel in recorded and not p.is_file()):
            raise OutputError(
                dst,
                f"holds {rel}, which medseg export did not write; it is never deleted: move "
                "it away or choose a new folder",
            )


def _parents(rel: str) -> list[str]:
    parts = rel.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


__all__ = ["FORMATS", "export_onnx", "is_onnx_folder", "load_onnx_model"]
