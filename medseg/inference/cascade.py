"""Two-stage (coarse-to-fine) cascades: the first stage finds the structure, the second
segments it finely inside the first stage's box.

**Stage 1** is an ordinary medseg model (whole image at a coarse spacing). **Stage 2** is a
model whose plan has ``roi`` (:class:`medseg.plan.schema.RoiPlan`): it was trained at a finer
spacing on patches centred on the reference foreground's bounding box, moved by up to
``jitter_mm`` (so it learns from boxes like those stage 1 finds), and it predicts only inside
the box of stage 1's foreground grown by ``margin_mm``, on the case's original grid. Stage 1's
own post-processing (its model folder's ``postprocessing.json``, e.g. keep the largest
component) is applied before its box is taken, so a far false positive does not stretch the
box; the cascade's post-processing (chosen by the cascade's cross-validation) is applied to the
final labels.

How this differs from nnU-Net's ``3d_lowres`` -> ``3d_cascade_fullres``: nnU-Net's second stage
takes stage 1's segmentation, upsampled and one-hot encoded, as extra input channels and runs
its sliding window over the *whole* image at full resolution; it must be trained on stage 1's
out-of-fold predictions (so stage 1's cross-validation has to finish first). medseg's second
stage sees only the image, inside a box: it trains on reference boxes with jitter, so the two
stages train independently (in parallel if you like), and inference at the fine spacing costs
a few windows around the structure instead of the whole image. The price: stage 2 cannot
recover a structure stage 1 missed entirely or that lies outside the grown box, and it does
not use stage 1's labels as a prior inside the box.

The folder layout is in :mod:`medseg.model_folder`; training is
:func:`medseg.training.cascade.train_cascade`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medseg.errors import InputError
from medseg.inference.predictor import Predictor
from medseg.model_folder import Fold, ModelFolder
from medseg.postprocess import Postprocessing, apply_postprocessing
from medseg.volume import LabelMap, Volume

log = logging.getLogger("medseg.inference")

#: the version of ``cascade.json``
CASCADE_FORMAT = 1


def is_cascade_folder(path: str | Path) -> bool:
    """True when ``path`` is a cascade's model folder (it holds ``cascade.json``)."""
    return ModelFolder(Path(path)).cascade.is_file()


def read_cascade(path: str | Path) -> list[ModelFolder]:
    """The stage folders a cascade's ``cascade.json`` lists, first stage first; each must be a
    folder inside the cascade's folder.

    Raises :class:`InputError` naming ``cascade.json`` when it is unreadable, of another
    format, or lists other than two stages or a stage outside the folder."""
    folder = ModelFolder(Path(path))
    f = folder.cascade
    try:
        doc = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f, f"cannot read the cascade's description: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != CASCADE_FORMAT:
        found = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise InputError(f, f"expected cascade format {CASCADE_FORMAT}, found {found!r}")
    stages = doc.get("stages")
    if not isinstance(stages, list) or len(stages) != 2:
        raise InputError(f, f"expected two stages, found {stages!r}")
    out = []
    for name in stages:
        if not isinstance(name, str) or "/" in name or "\\" in name or name in ("", ".", ".."):
            raise InputError(f, f"expected a stage folder name inside the cascade, found {name!r}")
        out.append(ModelFolder(folder.root / name))
    return out


def write_cascade(path: str | Path) -> Path:
    """Write ``cascade.json`` (stages ``stage_1``, ``stage_2``) into a cascade's folder."""
    from medseg.io.atomic import atomic_write_text

    folder = ModelFolder(Path(path))
    names = [folder.stage(1).root.name, folder.stage(2).root.name]
    doc = {"format": CASCADE_FORMAT, "stages": names}
    return atomic_write_text(folder.cascade, json.dumps(doc, indent=2) + "\n", overwrite=True)


class CascadeModel:
    """A loaded two-stage cascade (see the module docstring); a
    :class:`~medseg.inference.load.SegmentationModel`.

    ``coarse`` and ``fine`` are the stages' predictors (``fine.plan.roi`` set, same label
    names); ``postprocessing`` is applied to the final labels."""

    def __init__(
        self,
        coarse: Predictor,
        fine: Predictor,
        *,
        postprocessing: Postprocessing | None = None,
        path: Path | None = None,
    ) -> None:
        if fine.plan.roi is None:
            raise InputError(fine.paths[0], "a cascade's second stage needs plan.roi; found none")
        if coarse.plan.roi is not None:
            raise InputError(coarse.paths[0], "a cascade's first stage must not have plan.roi")
        if coarse.label_names != fine.label_names:
            raise InputError(
                fine.paths[0],
                f"label names {fine.label_names} differ from the first stage's "
                f"{coarse.label_names}",
            )
        self.coarse = coarse
        self.fine = fine
        self.postprocessing = postprocessing
        self.path = path

    @property
    def label_names(self) -> dict[int, str]:
        return self.fine.label_names

    @property
    def channel_names(self) -> list[str]:
        return self.fine.channel_names

    @property
    def identity(self) -> dict[str, Any]:
        return {
            "kind": "medseg-cascade",
            "path": str(self.path) if self.path is not None else None,
            "stages": [self.coarse.identity, self.fine.identity],
        }

    def predict_case(
        self, images: Sequence[Volume], *, with_probabilities: bool = False
    ) -> tuple[LabelMap, NDArray[Any] | None]:
        """Stage 1 on the whole image, stage 2 inside its box; labels (and, with
        ``with_probabilities``, stage 2's probabilities) on the grid of ``images[0]``."""
        guide, _ = self.coarse.predict_case(images)
        if not np.any(guide.array):
            log.warning(
                "%s: the first stage found no foreground; the cascade's output is empty",
                images[0].source,
            )
        seg, probs = self.fine.predict_case(
            images, with_probabilities=with_probabilities, guide=guide
        )
        if self.postprocessing is not None:
            arr = apply_postprocessing(
                np.asarray(seg.array), self.postprocessing, images[0].voxel_volume_ml
            )
            seg = LabelMap(arr, seg.affine, None, seg.meta, self.label_names)
        return seg, probs

    def predict(self, images: Sequence[Volume]) -> LabelMap:
        return self.predict_case(images)[0]


def load_cascade(
    path: str | Path,
    *,
    folds: Sequence[Fold] | None = None,
    checkpoint: str = "last",
    postprocessing: Postprocessing | None = None,
    **kwargs: Any,
) -> CascadeModel:
    """Load a cascade's folder: both stages with the same ``folds`` (default: each stage's
    cross-validation folds, ensembled), stage 1 with its own post-processing, the cascade's
    ``postprocessing.json`` unless ``postprocessing`` is given. Keyword arguments go to both
    :class:`Predictor`\\ s (``device``, ``runtime``, ``tta``, ...)."""
    root = Path(path)
    from medseg.inference.onnx_folder import is_onnx_folder, verify_top_level

    if is_onnx_folder(root):  # an export: cascade.json and post-processing as exported
        verify_top_level(root)
    coarse_dir, fine_dir = read_cascade(root)
    common = {"folds": folds, "checkpoint": checkpoint, **kwargs}
    coarse = Predictor.from_paths([coarse_dir.root], **common)
    fine = Predictor.from_paths([fine_dir.root], postprocessing=Postprocessing(), **common)
    if postprocessing is None:
        postprocessing = ModelFolder(root).load_postprocessing()
    return CascadeModel(coarse, fine, postprocessing=postprocessing, path=root)


__all__ = [
    "CASCADE_FORMAT",
    "CascadeModel",
    "is_cascade_folder",
    "load_cascade",
    "read_cascade",
    "write_cascade",
]
