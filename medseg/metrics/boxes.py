"""Per-label bounding boxes of a label array (one ``scipy.ndimage.find_objects`` pass) and the
crops built from them, so that each label's metrics look only at the voxels near it.

A box is a tuple of three slices (``find_objects``' form); a union box is ``(lo, hi)``, the
inclusive-exclusive voxel index bounds per axis.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage

Box = tuple[slice, ...]


def label_boxes(arr: npt.NDArray[Any], max_label: int) -> list[Box | None]:
    """Bounding box per label value 1..max_label (index v-1), one pass over ``arr``
    (non-negative integer labels)."""
    if max_label <= 0:
        return []
    a = arr if arr.dtype.kind in "ui" and arr.dtype.itemsize <= 4 else arr.astype(np.int32)
    return list(ndimage.find_objects(a, max_label=max_label))


def box_of(boxes: list[Box | None], v: int) -> Box | None:
    """The box of label ``v`` in a :func:`label_boxes` list (``None``: not present)."""
    return boxes[v - 1] if 0 < v <= len(boxes) else None


def union_box(boxes: Iterable[Box | None]) -> tuple[list[int], list[int]] | None:
    """``(lo, hi)`` bounds of the union of ``boxes`` (``None`` entries skipped; ``None`` when
    all are)."""
    lo: list[int] | None = None
    hi: list[int] | None = None
    for b in boxes:
        if b is None:
            continue
        bl = [s.start for s in b]
        bh = [s.stop for s in b]
        lo = bl if lo is None else [min(x, y) for x, y in zip(lo, bl, strict=True)]
        hi = bh if hi is None else [max(x, y) for x, y in zip(hi, bh, strict=True)]
    if lo is None or hi is None:
        return None
    return lo, hi


def crop_slices(
    box: tuple[list[int], list[int]], shape: tuple[int, int, int], margin: int
) -> tuple[slice, slice, slice]:
    """Slices of the ``(lo, hi)`` box grown by ``margin`` voxels, clipped to ``shape``."""
    lo, hi = box
    s = [slice(max(lo[a] - margin, 0), min(hi[a] + margin, shape[a])) for a in range(3)]
    return (s[0], s[1], s[2])


__all__ = ["Box", "box_of", "crop_slices", "label_boxes", "union_box"]
