"""Patch sampling with a foreground ratio, so that small structures are seen.

A patch is defined by its centre voxel. With probability ``foreground_ratio`` (decided per
sample by the caller) the centre is a random foreground voxel of a uniformly chosen label
class present in the case (rare classes are sampled as often as common ones); otherwise it is
uniform over the positions where the patch fits inside the image (or the image centre when the
image is smaller than the patch on an axis). Patches reaching outside the image are padded.

Plain numpy: MONAI's ``RandCropByPosNegLabel`` recomputes foreground indices from the full label
on every call (``np.where`` over the whole volume), which is the main cost on cached data; here
the foreground locations are computed once and cached (:mod:`medseg.cache`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

#: Foreground voxel locations kept per label class (random subset).
MAX_LOCATIONS_PER_CLASS = 10000


def foreground_locations(
    label: NDArray[Any], rng: np.random.Generator, max_per_class: int = MAX_LOCATIONS_PER_CLASS
) -> NDArray[Any]:
    """Sampled foreground voxels of an ``(X, Y, Z)`` label array.

    Returns ``int32 (N, 4)`` rows ``(label value, x, y, z)``: for every non-zero value, all its
    voxels or a random subset of ``max_per_class`` of them.
    """
    rows = []
    flat = label.ravel()
    for v in np.unique(flat):
        if v == 0:
            continue
        idx = np.flatnonzero(flat == v)
        if idx.size > max_per_class:
            idx = np.sort(rng.choice(idx, size=max_per_class, replace=False))
        xyz = np.stack(np.unravel_index(idx, label.shape), axis=1)
        rows.append(np.concatenate([np.full((idx.size, 1), int(v)), xyz], axis=1))
    if not rows:
        return np.zeros((0, 4), dtype=np.int32)
    result: NDArray[Any] = np.concatenate(rows).astype(np.int32)
    return result


def choose_center(
    shape: Sequence[int],
    patch_size: Sequence[int],
    rng: np.random.Generator,
    fg_locations: NDArray[Any] | None = None,
    force_foreground: bool = False,
) -> tuple[int, int, int]:
    """Centre voxel of the next patch (see the module docstring).

    ``force_foreground`` with no foreground in the case falls back to a uniform centre; the
    caller can tell from :func:`patch_has_foreground` (this is the documented behaviour for
    label-free cases, not a silent substitute: such cases have nothing to oversample).
    """
    if force_foreground and fg_locations is not None and len(fg_locations):
        classes = np.unique(fg_locations[:, 0])
        cls = classes[rng.integers(len(classes))]
        rows = fg_locations[fg_locations[:, 0] == cls]
        r = rows[rng.integers(len(rows))]
        return (int(r[1]), int(r[2]), int(r[3]))
    c = []
    for n, p in zip(shape, patch_size, strict=True):
        half = p // 2
        if n >= p:
            c.append(int(rng.integers(half, n - p + half + 1)))
        else:
            c.append(n // 2)
    return (c[0], c[1], c[2])


def extract_patch(
    array: NDArray[Any], center: Sequence[int], size: Sequence[int], pad_value: float = 0
) -> NDArray[Any]:
    """Cut ``size`` voxels around ``center`` from the last three axes of ``array``
    (``(X, Y, Z)`` or ``(C, X, Y, Z)``; memory-mapped arrays read only the patch). The patch
    starts at ``center - size // 2``; parts outside the array are ``pad_value``."""
    shape = array.shape[-3:]
    lo = [int(c) - int(s) // 2 for c, s in zip(center, size, strict=True)]
    hi = [a + int(s) for a, s in zip(lo, size, strict=True)]
    src = [slice(max(a, 0), min(b, n)) for a, b, n in zip(lo, hi, shape, strict=True)]
    region = np.asarray(array[..., src[0], src[1], src[2]])
    if region.shape[-3:] == tuple(int(s) for s in size):
        return np.array(region, copy=True)
    out = np.full((*array.shape[:-3], *(int(s) for s in size)), pad_value, dtype=array.dtype)
    dst = [
        slice(s.start - a, s.start - a + (s.stop - s.start)) for s, a in zip(src, lo, strict=True)
    ]
    out[..., dst[0], dst[1], dst[2]] = region
    return out


def patch_has_foreground(label_patch: NDArray[Any]) -> bool:
    return bool(np.any(label_patch > 0))


__all__ = [
    "MAX_LOCATIONS_PER_CLASS",
    "choose_center",
    "extract_patch",
    "foreground_locations",
    "patch_has_foreground",
]
