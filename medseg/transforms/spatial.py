"""Spatial transforms shared by training and inference: reorientation, cropping, resampling.

Reorientation policy
--------------------
Every case is brought to its **closest canonical RAS orientation** by an axis permutation and
axis flips only (nibabel's ``io_orientation``; no interpolation, so exactly invertible). After
that, array axis 0 points (mostly) Right, axis 1 Anterior, axis 2 Superior, whatever the file
stored (LPS DICOM-like NIfTI, LAS, oblique). Oblique directions are *not* resampled away: the
grid stays the scanner grid, only its axis order/sign change, so predictions map back onto the
exact original voxels. Resampling to the target spacing then happens in voxel space, axis by
axis, with the (permuted) axis spacings.

Resampling convention
---------------------
``resample_to_shape`` maps voxel *centres* with half-voxel alignment (``align_corners=False``
in torch terms, ``grid_mode=True`` in scipy terms): output voxel ``o`` samples input coordinate
``(o + 0.5) * in/out - 0.5``. Going to a shape and back therefore keeps the field of view.

We use :func:`scipy.ndimage.zoom` (``grid_mode=True``) instead of MONAI's ``Spacing`` /
``Resize`` because those choose the output shape themselves (``Spacing`` rounds the field of
view differently, ``Resize`` needs a torch round trip) and the inverse must produce *exactly*
the original crop shape; zoom with an explicit factor per axis gives that, torch-free.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage

if TYPE_CHECKING:  # pragma: no cover
    import torch

Box = tuple[tuple[int, int], tuple[int, int], tuple[int, int]]


@dataclass(frozen=True)
class Reorientation:
    """Axis permutation + flips taking a stored array to closest-canonical RAS.

    ``out_axis[i]`` is the canonical axis that stored axis ``i`` becomes; ``flip[i]`` says
    whether stored axis ``i`` is reversed first.
    """

    out_axis: tuple[int, int, int]
    flip: tuple[bool, bool, bool]

    @classmethod
    def from_affine(cls, affine: npt.ArrayLike) -> Reorientation:
        import nibabel as nib

        ornt = nib.orientations.io_orientation(np.asarray(affine, dtype=np.float64))
        out = tuple(int(a) for a in ornt[:, 0])
        flip = tuple(bool(f < 0) for f in ornt[:, 1])
        return cls((out[0], out[1], out[2]), (flip[0], flip[1], flip[2]))

    @property
    def is_identity(self) -> bool:
        return self.out_axis == (0, 1, 2) and not any(self.flip)

    @property
    def perm(self) -> tuple[int, int, int]:
        """Stored axis that becomes canonical axis k (``perm[k]``)."""
        p = np.argsort(self.out_axis)
        return (int(p[0]), int(p[1]), int(p[2]))

    def apply(self, array: npt.NDArray[Any]) -> npt.NDArray[Any]:
        """Stored → canonical; ``array`` is ``(X, Y, Z)`` or ``(C, X, Y, Z)``."""
        return np.ascontiguousarray(self.view(array))

    def view(self, array: npt.NDArray[Any]) -> npt.NDArray[Any]:
        """:meth:`apply` without the copy: a (generally non-contiguous) view of ``array``."""
        lead = array.ndim - 3
        for i, f in enumerate(self.flip):
            if f:
                array = np.flip(array, axis=lead + i)
        axes = list(range(lead)) + [lead + p for p in self.perm]
        return array.transpose(axes)

    def invert(self, array: npt.NDArray[Any]) -> npt.NDArray[Any]:
        """Canonical → stored (exact inverse of :meth:`apply`)."""
        lead = array.ndim - 3
        axes = list(range(lead)) + [lead + a for a in self.out_axis]
        array = array.transpose(axes)
        for i, f in enumerate(self.flip):
            if f:
                array = np.flip(array, axis=lead + i)
        return np.ascontiguousarray(array)

    def shape(self, stored_shape: Sequence[int]) -> tuple[int, int, int]:
        p = self.perm
        return (int(stored_shape[p[0]]), int(stored_shape[p[1]]), int(stored_shape[p[2]]))

    def spacing(self, stored_spacing: Sequence[float]) -> tuple[float, float, float]:
        p = self.perm
        return (
            float(stored_spacing[p[0]]),
            float(stored_spacing[p[1]]),
            float(stored_spacing[p[2]]),
        )

    def affine(self, stored_affine: npt.ArrayLike, stored_shape: Sequence[int]) -> npt.NDArray[Any]:
        """RAS+ affine of the canonical array."""
        import nibabel as nib

        ornt = np.array(
            [[a, -1 if f else 1] for a, f in zip(self.out_axis, self.flip, strict=True)],
            dtype=np.float64,
        )
        result: npt.NDArray[np.float64] = np.asarray(
            stored_affine, dtype=np.float64
        ) @ nib.orientations.inv_ornt_aff(ornt, tuple(stored_shape))
        return result


def nonzero_box(array: npt.NDArray[Any]) -> Box:
    """Bounding box ``((lo, hi), ...)`` (hi exclusive) of voxels non-zero in any channel.

    ``array`` is ``(X, Y, Z)`` or ``(C, X, Y, Z)``. An all-zero array gives the full box.
    """
    nz = array != 0
    if nz.ndim == 4:
        nz = nz.any(axis=0)
    shape = nz.shape
    if not nz.any():
        return ((0, shape[0]), (0, shape[1]), (0, shape[2]))
    out = []
    for ax in range(3):
        other = tuple(a for a in range(3) if a != ax)
        idx = np.flatnonzero(nz.any(axis=other))
        out.append((int(idx[0]), int(idx[-1]) + 1))
    return (out[0], out[1], out[2])


def crop(array: npt.NDArray[Any], box: Box) -> npt.NDArray[Any]:
    """Crop the last three axes of ``array`` to ``box``."""
    (a0, b0), (a1, b1), (a2, b2) = box
    return array[..., a0:b0, a1:b1, a2:b2]


def uncrop(
    array: npt.NDArray[Any], box: Box, full_shape: Sequence[int], fill: float | npt.NDArray[Any] = 0
) -> npt.NDArray[Any]:
    """Place ``array`` (cropped by ``box``) back into an array of spatial shape ``full_shape``.

    ``fill`` is the background value; for ``(C, ...)`` arrays it may be a per-channel vector.
    """
    lead = array.shape[:-3]
    out = np.empty((*lead, *full_shape), dtype=array.dtype)
    if np.ndim(fill) == 0:
        out[...] = fill
    else:
        out[...] = np.asarray(fill, dtype=array.dtype).reshape(*lead, 1, 1, 1)
    (a0, b0), (a1, b1), (a2, b2) = box
    out[..., a0:b0, a1:b1, a2:b2] = array
    return out


def target_shape(
    shape: Sequence[int], spacing: Sequence[float], target_spacing: Sequence[float]
) -> tuple[int, int, int]:
    """Shape after resampling ``shape`` voxels of ``spacing`` mm to ``target_spacing`` mm
    (field of view kept, rounded to whole voxels, at least 1)."""
    out = [max(1, round(n * s / t)) for n, s, t in zip(shape, spacing, target_spacing, strict=True)]
    return (out[0], out[1], out[2])


def resample_to_shape(
    array: npt.NDArray[Any], out_shape: Sequence[int], order: int
) -> npt.NDArray[Any]:
    """Resample the last three axes of ``array`` to ``out_shape`` (half-voxel aligned).

    Args:
        array: ``(X, Y, Z)`` or ``(C, X, Y, Z)``.
        out_shape: spatial output shape.
        order: spline order, 0 nearest (labels), 1 linear, 3 cubic.

    Returns the resampled array (float arrays stay float32, integer ones keep their dtype for
    ``order=0``). Edges are extended by nearest-value (no zero padding leaks in).
    """
    out_shape = tuple(int(s) for s in out_shape)
    in_shape = array.shape[-3:]
    if tuple(in_shape) == out_shape:
        return array.copy()
    if array.ndim == 4:
        return np.stack([resample_to_shape(a, out_shape, order) for a in array])
    zoom = [o / i for o, i in zip(out_shape, in_shape, strict=True)]
    src = array if order == 0 or array.dtype == np.float32 else array.astype(np.float32)
    out = ndimage.zoom(src, zoom, order=order, mode="nearest", grid_mode=True, prefilter=order > 1)
    if out.shape != out_shape:  # zoom rounds the shape; guard the exact contract
        raise AssertionError(f"resample produced {out.shape}, expected {out_shape}")
    result: npt.NDArray[Any] = out
    return result


def resample_labels_onehot(
    labels: npt.NDArray[Any], out_shape: Sequence[int], values: Sequence[int]
) -> npt.NDArray[Any]:
    """Resample a label array by linear interpolation of each one-hot channel, then argmax
    (smoother boundaries than nearest; nnU-Net's "one-hot linear" option).

    ``values`` are the label values to consider (0 included); the result has ``labels.dtype``.
    """
    best = np.full(tuple(out_shape), -1.0, dtype=np.float32)
    out = np.zeros(tuple(out_shape), dtype=labels.dtype)
    for v in values:
        p = resample_to_shape((labels == v).astype(np.float32), out_shape, order=1)
        take = p > best
        out[take] = v
        best[take] = p[take]
    return out


def pad_to_patch(image: torch.Tensor, patch: Sequence[int]) -> tuple[torch.Tensor, list[int]]:
    """``image (C, X, Y, Z)`` zero-padded on each spatial axis shorter than ``patch``, centred
    (the extra voxel after), as nnU-Net pads before sliding windows; returns the padded tensor
    and the padding before each axis (to crop the result back)."""
    from torch.nn import functional

    size = [int(s) for s in image.shape[1:]]
    lo = [max(int(p) - s, 0) // 2 for s, p in zip(size, patch, strict=True)]
    hi = [max(int(p) - s, 0) - a for s, p, a in zip(size, patch, lo, strict=True)]
    if any(lo) or any(hi):
        pads: list[int] = []
        for a in (2, 1, 0):
            pads += [lo[a], hi[a]]
        image = functional.pad(image, pads, mode="constant", value=0.0)
    return image, lo


__all__ = [
    "Box",
    "Reorientation",
    "crop",
    "nonzero_box",
    "pad_to_patch",
    "resample_labels_onehot",
    "resample_to_shape",
    "target_shape",
    "uncrop",
]
