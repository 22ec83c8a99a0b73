"""Options shared by every classical method: smoothing before, post-processing after.

* :func:`smooth` — a Gaussian with ``sigma_mm`` millimetres along every axis (``sigma_mm /
  spacing`` voxels per axis, ``scipy.ndimage.gaussian_filter``, truncated at 4 sigma, image
  border replicated), so the blur is isotropic in space on an anisotropic grid.
* :class:`PostOptions` / :func:`postprocess` — on the label map, in this order: opening, then
  closing (balls of a radius in mm), hole filling, removal of the components below
  ``min_component_ml``, keeping only the largest component of each label
  (:mod:`medseg.postprocess`, the label-map post-processing meant for network predictions too).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
from scipy import ndimage

from medseg.classical._common import float_image
from medseg.components import check_connectivity
from medseg.config import check_range
from medseg.postprocess import (
    Postprocessing,
    PostprocessingStep,
    apply_postprocessing,
)
from medseg.volume import LabelMap, Volume


def smooth(volume: Volume, sigma_mm: float) -> Volume:
    """The volume blurred by a Gaussian of ``sigma_mm`` mm (isotropic in space; see the
    module docstring); float32 (float64 for float64 input), same grid. ``sigma_mm = 0``
    returns the volume unchanged."""
    s = float(check_range("smooth_mm", sigma_mm))
    if s == 0:
        return volume
    arr = float_image(volume)
    sig = [s / sp for sp in volume.spacing]
    out = ndimage.gaussian_filter(arr, sigma=sig, mode="nearest", truncate=4.0)
    return Volume(out, volume.affine, volume.source, volume.meta)


@dataclass(frozen=True)
class PostOptions:
    """Post-processing of a label map (all off by default).

    Attributes:
        opening_mm: radius (mm) of the ball of a morphological opening of each label.
        closing_mm: radius (mm) of the ball of a closing (after the opening).
        fill_holes: fill each label's 3-D holes.
        min_component_ml: remove the components of each label smaller than this (mL).
        keep_largest: keep only the largest component of each label.
        connectivity: 6, 18 or 26 (default), for the two component steps.

    The numeric fields accept the ranges of :data:`medseg.config.RANGES` (one definition,
    checked here and when ``medseg segment`` parses its options).
    """

    opening_mm: float = 0.0
    closing_mm: float = 0.0
    fill_holes: bool = False
    min_component_ml: float = 0.0
    keep_largest: bool = False
    connectivity: int = 26

    def __post_init__(self) -> None:
        for name in ("opening_mm", "closing_mm", "min_component_ml"):
            check_range(name, getattr(self, name))
        check_connectivity(self.connectivity)

    @property
    def active(self) -> bool:
        return bool(
            self.opening_mm
            or self.closing_mm
            or self.fill_holes
            or self.min_component_ml
            or self.keep_largest
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def as_postprocessing(self) -> Postprocessing:
        """The same steps as the one post-processing record of medseg (every label each)."""
        steps: list[PostprocessingStep] = []
        if self.opening_mm:
            steps.append(PostprocessingStep(kind="opening", radius_mm=self.opening_mm))
        if self.closing_mm:
            steps.append(PostprocessingStep(kind="closing", radius_mm=self.closing_mm))
        if self.fill_holes:
            steps.append(PostprocessingStep(kind="fill_holes"))
        if self.min_component_ml:
            steps.append(
                PostprocessingStep(kind="remove_small", min_volume_ml=self.min_component_ml)
            )
        if self.keep_largest:
            steps.append(PostprocessingStep(kind="keep_largest"))
        return Postprocessing(steps=steps, connectivity=self.connectivity)


def postprocess(labels: LabelMap, options: PostOptions) -> LabelMap:
    """Apply :class:`PostOptions` to every label of ``labels`` (see the module docstring,
    :meth:`PostOptions.as_postprocessing`); returns a new label map on the same grid with the
    same names."""
    arr = apply_postprocessing(
        np.asarray(labels.array),
        options.as_postprocessing(),
        labels.voxel_volume_ml,
        labels.spacing,
    )
    meta = labels.meta
    if options.active:
        meta = replace(meta, extra={**meta.extra, "postprocess": options.as_dict()})
    return LabelMap(arr, labels.affine, labels.source, meta, labels.label_names)


__all__ = ["PostOptions", "postprocess", "smooth"]
