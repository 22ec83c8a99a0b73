"""Prediction inside a box: the second stage of a cascade (``plan.roi``,
:mod:`medseg.inference.cascade`).

The box is the bounding box of a guide label map on the preprocessed grid (the first stage's
prediction at inference; the reference label during the second stage's own validation), grown
by ``margin_mm``. The sliding window runs over that box grown to at least one patch, so every
window has the image context a training patch had; outside the grown box the result is
background (probability 1 for class 0).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from numpy.typing import NDArray

from medseg.plan.schema import RoiPlan
from medseg.transforms.roi import foreground_box, grow_box, mm_to_voxels, window_region

if TYPE_CHECKING:  # pragma: no cover
    import torch


def roi_probabilities(
    window_probabilities: Callable[[torch.Tensor], torch.Tensor],
    image: torch.Tensor,
    guide: NDArray[Any],
    roi: RoiPlan,
    spacing: Sequence[float],
    patch_size: Sequence[int],
    num_classes: int,
) -> torch.Tensor:
    """Class probabilities ``(K, X, Y, Z)`` of ``image`` ``(C, X, Y, Z)`` computed only inside
    the box of ``guide > 0`` grown by ``roi.margin_mm`` (background elsewhere).

    ``window_probabilities`` maps an image region ``(C, x, y, z)`` to its probabilities
    ``(K, x, y, z)`` (a sliding window, one network or an ensemble). A guide without foreground
    gives background everywhere: the first stage found nothing to refine.
    """
    import torch

    shape = tuple(int(n) for n in image.shape[1:])
    if tuple(guide.shape) != shape:
        raise ValueError(f"guide shape {guide.shape} differs from the image's {shape}")
    full = torch.zeros((num_classes, *shape), dtype=torch.float32)
    full[0] = 1.0
    box = foreground_box(guide)
    if box is None:
        return full
    inner = grow_box(box, mm_to_voxels(roi.margin_mm, spacing), shape)
    region = window_region(inner, patch_size, shape)
    sub = image[
        :, region[0][0] : region[0][1], region[1][0] : region[1][1], region[2][0] : region[2][1]
    ]
    probs = window_probabilities(sub).to(full.device, torch.float32)
    src = [slice(None)] + [
        slice(a - r[0], b - r[0]) for (a, b), r in zip(inner, region, strict=True)
    ]
    dst = [slice(None)] + [slice(a, b) for a, b in inner]
    full[tuple(dst)] = probs[tuple(src)]
    return full


__all__ = ["roi_probabilities"]
