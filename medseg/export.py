"""Export a trained model folder to a portable folder of ONNX graphs (:func:`export_onnx`).

The exported folder (layout: :mod:`medseg.inference.onnx_folder`) holds one ONNX graph per
fold (opset >= 17, dynamic batch axis, the plan's patch size on the spatial axes), the
checkpoint's metadata (plan: preprocessing, labels, channels) beside each, the model folder's
post-processing choice, and a manifest with the sha256 of every file. ``medseg predict
--model OUT`` runs it with ONNX Runtime or OpenVINO (no PyTorch needed for the network);
preprocessing, sliding windows, test-time mirroring and restoration are medseg's own code,
shared with the torch runtime. Loading verifies every file against its recorded sha256.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

from medseg._version import __version__
from medseg.errors import InputError, OutputExistsError
from medseg.inference.onnx_folder import (
    FORMAT,
    FORMAT_VERSION,
    GRAPH_FILE,
    MANIFEST,
    META_FILE,
    is_onnx_folder,
    load_onnx_model,
    sha256_file,
)
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
        model_folder: a model folder written by ``medseg train`` (``fold_K/checkpoint_*.pt``)
            or one checkpoint file.
        out: the folder to write (must not exist, or be an earlier export with ``overwrite``;
            written in a temporary folder beside it and renamed when complete).
        folds: which folds (``[0, 2]``, ``["all"]``); default every CV fold, else ``fold_all``.
        checkpoint: ``"last"`` (default) or ``"best"``.
        opset: ONNX operator set, >= 17.
        overwrite: replace an earlier export at ``out`` (nothing else is ever replaced).

    Returns ``out``. Raises :class:`InputError` when ``model_folder`` is not a medseg model
    folder or checkpoint (naming what was expected and found), and
    :class:`OutputExistsError` when ``out`` exists and may not be replaced.
    """
    from medseg.checkpoint import load_checkpoint
    from medseg.inference.runtimes import onnx_graph

    src, dst = Path(model_folder), Path(out)
    if not src.exists():
        raise InputError(src, "model folder not found")
    if src.is_dir() and is_onnx_folder(src):
        raise InputError(src, "this folder is already an ONNX export; pass the trained model")
    if src.is_dir():
        found = sorted(p.name for p in src.iterdir())[:5]
        if not ModelFolder(src).has_checkpoint():
            raise InputError(
                src,
                "expected a medseg model folder (fold_K/checkpoint_last.pt from medseg train), "
                f"found {', '.join(found) or 'an empty folder'}",
            )
        files = ModelFolder(src).checkpoints(None if folds is None else list(folds), checkpoint)
    else:
        files = [src]
    if dst.exists() and not (overwrite and is_onnx_folder(dst)):
        hint = None if is_onnx_folder(dst) else "choose a new folder (it is not an ONNX export)"
        raise OutputExistsError(dst, hint)
    tmp = dst.with_name(f".{dst.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    names: list[str] = []
    try:
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
        digests = {
            p.relative_to(tmp).as_posix(): sha256_file(p)
            for p in sorted(tmp.rglob("*"))
            if p.is_file()
        }
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "opset": int(opset),
            "folds": names,
            "checkpoint": checkpoint,
            "source": str(src.resolve()),
            "medseg_version": __version__,
            "input": "image (batch, channels, X, Y, Z) float32, X Y Z = the plan's patch size",
            "output": "logits (batch, classes, X, Y, Z) float32",
            "sha256": digests,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        if dst.exists():
            shutil.rmtree(dst)
        tmp.rename(dst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dst


__all__ = ["FORMATS", "export_onnx", "is_onnx_folder", "load_onnx_model"]
