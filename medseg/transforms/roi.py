"""Boxes around the foreground, for the second stage of a cascade (:mod:`medseg.inference.cascade`).

All boxes are ``((lo, hi), ...)`` in voxel indices of the preprocessed grid (``hi``
exclusive), as :data:`medseg.transforms.spatial.Box`. Millimetres become voxels with the
grid's spacing, rounded up, so a margin is never smaller than asked.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medseg.transforms.spatial import Box, nonzero_box


def foreground_box(label: NDArray[Any]) -> Box | None:
    """Bounding box of the voxels ``> 0`` of ``label`` ``(X, Y, Z)``; ``None`` when there are
    none."""
    fg = np.asarray(label) > 0
    return nonzero_box(fg) if fg.any() else None


def mm_to_voxels(mm: float, spacing: Sequence[float]) -> tuple[int, int, int]:
    """``mm`` as a whole number of voxels on each axis (rounded up)."""
    v = [math.ceil(mm / float(s) - 1e-9) for s in spacing]
    return (v[0], v[1], v[2])


def grow_box(box: Box, margin: Sequence[int], shape: Sequence[int]) -> Box:
    """``box`` grown by ``margin`` voxels on each side, clipped to ``shape``."""
    out = [
        (max(lo - m, 0), min(hi + m, n)) for (lo, hi), m, n in zip(box, margin, shape, strict=True)
    ]
    return (out[0], out[1], out[2])


def window_region(box: Box, patch: Sequence[int], shape: Sequence[int]) -> Box:
    """The region the sliding window runs over to cover ``box``: ``box`` grown symmetrically
    to at least ``patch`` on each axis (so each window has the context a training patch had),
    shifted to lie inside ``shape`` and clipped where the image is smaller than the patch."""
    out = []
    for (lo, hi), p, n in zip(box, patch, shape, strict=True):
        size = hi - lo
        if size < p:
            lo -= (p - size) // 2
            hi = lo + p
        if lo < 0:
            hi, lo = hi - lo, 0
        if hi > n:
            lo, hi = max(lo - (hi - n), 0), n
        out.append((int(lo), int(hi)))
    return (out[0], out[1], out[2])


def jittered_center(
    box: Box, jitter: Sequence[int], rng: np.random.Generator
) -> tuple[int, int, int]:
    """The centre voxel of ``box`` moved by a uniform integer offset in ``[-j, j]`` on each
    axis (``jitter`` voxels per axis)."""
    c = [
        (lo + hi) // 2 + int(rng.integers(-j, j + 1))
        for (lo, hi), j in zip(box, jitter, strict=True)
    ]
    return (c[0], c[1], c[2])


def box_mask(shape: Sequence[int], box: Box) -> NDArray[np.bool_]:
    """A boolean array of ``shape``, true inside ``box``."""
    m = np.zeros(tuple(int(n) for n in shape), dtype=bool)
    (a, b), (c, d), (e, f) = box
    m[a:b, c:d, e:f] = True
    return m


__all__ = [
    "box_mask",
    "foreground_box",
    "grow_box",
    "jittered_center",
    "mm_to_voxels",
    "window_region",
]
