"""Surface extraction and surface-to-surface distances, in millimetres.

Two surface definitions are offered (``surface=`` in the public functions):

``"border"`` (default)
    A surface point is a **foreground voxel with at least one 6-connected neighbour in the
    background**; voxels outside the image count as background. Distances are exact Euclidean
    distances between voxel centres, scaled by the spacing of each array axis. Every surface point
    has weight 1. This is MONAI's definition (``get_mask_edges`` with ``spacing=None``, i.e.
    ``use_subvoxels=False``: ``binary_erosion(mask) ^ mask``) and nnU-Net/MetricsReloaded's
    border-voxel convention, so HD, HD95, ASSD and NSD match MONAI's functions exactly.

``"surfels"``
    DeepMind ``surface-distance`` surface elements: the surface is the marching-cubes-like mesh
    through the voxel corners; each corner point on the mesh carries the area (mm²) of its
    surface elements, and percentiles, means and the surface Dice are **area-weighted**. Points
    sit on the grid of voxel corners (offset by half a voxel). Uses the neighbour-code→area table
    that MONAI ships (a port of DeepMind's), so values match ``surface_distance`` exactly.

Both functions here work on small boolean crops; callers crop to the union bounding box with a
margin of one voxel so the result equals the whole-image computation.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import ndimage

SurfaceKind = Literal["border", "surfels"]
DistanceMethod = Literal["auto", "edt", "kdtree"]

SURFACES: tuple[str, ...] = ("border", "surfels")
METHODS: tuple[str, ...] = ("auto", "edt", "kdtree")


@dataclass(frozen=True)
class SurfaceDistances:
    """Directed surface distances (mm) between a prediction and a reference surface.

    ``pred_to_ref[i]`` is the distance from the i-th predicted surface point to the nearest
    reference surface point; ``ref_to_pred`` the other way. ``pred_weights`` / ``ref_weights``
    are 1 per point for border voxels and the surfel area (mm²) for surfels.
    """

    pred_to_ref: npt.NDArray[np.float64]
    ref_to_pred: npt.NDArray[np.float64]
    pred_weights: npt.NDArray[np.float64]
    ref_weights: npt.NDArray[np.float64]


def border_voxels(mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """Foreground voxels of a 3-D boolean ``mask`` with a 6-connected background neighbour.

    Voxels on the array edge count as border (outside = background), as with
    ``scipy.ndimage.binary_erosion(mask) ^ mask``. Same shape as ``mask``.
    """
    m = np.asarray(mask, dtype=bool)
    inner = m.copy()
    # Erosion with the 6-connected cross, border_value=0: each interior voxel needs both
    # neighbours along every axis. Array edges are eroded away.
    for ax in range(3):
        n = m.shape[ax]
        if n < 3:
            inner[...] = False
            break
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        mid = [slice(None)] * 3
        lo[ax], mid[ax], hi[ax] = slice(0, n - 2), slice(1, n - 1), slice(2, n)
        inner[tuple(mid)] &= m[tuple(lo)] & m[tuple(hi)]
        first = [slice(None)] * 3
        last = [slice(None)] * 3
        first[ax], last[ax] = slice(0, 1), slice(n - 1, n)
        inner[tuple(first)] = False
        inner[tuple(last)] = False
    return m & ~inner


def _nearest_distances(
    src: npt.NDArray[np.bool_],
    dst: npt.NDArray[np.bool_],
    spacing: tuple[float, float, float],
    method: DistanceMethod,
) -> npt.NDArray[np.float64]:
    """Distance (mm) from every true point of ``src`` to the nearest true point of ``dst``
    (both non-empty, same 3-D shape), in ``np.argwhere(src)`` order."""
    n_src = int(np.count_nonzero(src))
    n_dst = int(np.count_nonzero(dst))
    if method == "auto":
        # The EDT costs ~ the crop size, the KD-tree ~ the number of surface points (log).
        method = "kdtree" if 8 * (n_src + n_dst) < src.size else "edt"
    if method == "edt":
        dt = ndimage.distance_transform_edt(~dst, sampling=spacing)
        return np.asarray(dt[src], dtype=np.float64)
    if method == "kdtree":
        from scipy.spatial import cKDTree

        sp = np.asarray(spacing, dtype=np.float64)
        dst_pts = np.argwhere(dst).astype(np.float64) * sp
        src_pts = np.argwhere(src).astype(np.float64) * sp
        d, _ = cKDTree(dst_pts, leafsize=32, balanced_tree=False).query(src_pts, k=1)
        return np.asarray(d, dtype=np.float64)
    raise ValueError(f"unknown distance method {method!r}; expected one of {METHODS}")


def border_surface_distances(
    pred: npt.NDArray[np.bool_],
    ref: npt.NDArray[np.bool_],
    spacing: tuple[float, float, float],
    method: DistanceMethod = "auto",
) -> SurfaceDistances:
    """Symmetric border-voxel surface distances between two **non-empty** boolean masks.

    Args:
        pred, ref: 3-D boolean arrays of the same shape (voxel index order).
        spacing: mm per array axis.
        method: ``"edt"`` (scipy exact Euclidean distance transform), ``"kdtree"`` (nearest
            neighbour among surface points) or ``"auto"``; both are exact and agree to float
            rounding.
    """
    bp = border_voxels(pred)
    br = border_voxels(ref)
    d_pr = _nearest_distances(bp, br, spacing, method)
    d_rp = _nearest_distances(br, bp, spacing, method)
    return SurfaceDistances(d_pr, d_rp, np.ones(d_pr.shape), np.ones(d_rp.shape))


@lru_cache(maxsize=32)
def _surfel_area_table(spacing: tuple[float, float, float]) -> npt.NDArray[np.float64]:
    """256-entry table: 2×2×2 neighbour code → surface area (mm²) of that corner's surfels.

    MONAI's port of DeepMind's table (``create_table_neighbour_code_to_surface_area``);
    imported lazily (it imports torch) and only in ``surface="surfels"`` mode.
    """
    from monai.metrics.utils import create_table_neighbour_code_to_surface_area

    table, _ = create_table_neighbour_code_to_surface_area(spacing)
    return np.asarray(table.cpu().numpy(), dtype=np.float64)


_CODE_KERNEL = np.array([[[128, 64], [32, 16]], [[8, 4], [2, 1]]], dtype=np.int32)


def _surfels(
    mask: npt.NDArray[np.bool_], spacing: tuple[float, float, float]
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.float64]]:
    """Surfel corner points of ``mask`` (array one larger per axis than ``mask``) and their areas.

    Corner ``(a, b, c)`` of the returned grid lies between voxels ``a-1`` and ``a`` (etc.).
    The input must already carry one background voxel on every side (callers pad).
    """
    m = mask.astype(np.int32)
    # Neighbour code of each 2x2x2 block (DeepMind's correlate with origin -1 on a padded mask).
    padded = np.pad(m, 1)
    code = np.zeros(tuple(s - 1 for s in padded.shape), dtype=np.int32)
    for a in range(2):
        for b in range(2):
            for c in range(2):
                code += (
                    padded[
                        a : a + code.shape[0],
                        b : b + code.shape[1],
                        c : c + code.shape[2],
                    ]
                    * _CODE_KERNEL[a, b, c]
                )
    points = (code != 0) & (code != 255)
    areas = _surfel_area_table(spacing)[code[points]]
    return points, areas


def surfel_surface_distances(
    pred: npt.NDArray[np.bool_],
    ref: npt.NDArray[np.bool_],
    spacing: tuple[float, float, float],
    method: DistanceMethod = "auto",
) -> SurfaceDistances:
    """Area-weighted surfel distances (DeepMind ``surface-distance`` definition) between two
    **non-empty** 3-D boolean masks of the same shape; ``spacing`` in mm per array axis."""
    sp, ap = _surfels(pred, spacing)
    sr, ar = _surfels(ref, spacing)
    d_pr = _nearest_distances(sp, sr, spacing, method)
    d_rp = _nearest_distances(sr, sp, spacing, method)
    return SurfaceDistances(d_pr, d_rp, ap, ar)


def surface_distances(
    pred: npt.NDArray[np.bool_],
    ref: npt.NDArray[np.bool_],
    spacing: tuple[float, float, float],
    surface: SurfaceKind = "border",
    method: DistanceMethod = "auto",
) -> SurfaceDistances:
    """Dispatch to :func:`border_surface_distances` or :func:`surfel_surface_distances`."""
    if surface == "border":
        return border_surface_distances(pred, ref, spacing, method)
    if surface == "surfels":
        return surfel_surface_distances(pred, ref, spacing, method)
    raise ValueError(f"unknown surface definition {surface!r}; expected one of {SURFACES}")


def weighted_percentile(
    values: npt.NDArray[np.float64], weights: npt.NDArray[np.float64], q: float, *, border: bool
) -> float:
    """``q``-th percentile (0–100) of directed distances.

    Border voxels (equal weights): linear interpolation between order statistics (NumPy's default
    and ``torch.quantile``'s, as MONAI uses). Surfels: DeepMind's area-weighted rule, the smallest
    distance whose cumulative area fraction reaches ``q``/100.
    """
    if values.size == 0:
        return float("nan")
    if border:
        return float(np.percentile(values, q))
    order = np.lexsort((weights, values))  # DeepMind sorts (distance, area) pairs
    v, w = values[order], weights[order]
    cum = np.cumsum(w) / np.sum(w)
    idx = int(np.searchsorted(cum, q / 100.0))
    return float(v[min(idx, v.size - 1)])


__all__ = [
    "METHODS",
    "SURFACES",
    "DistanceMethod",
    "SurfaceDistances",
    "SurfaceKind",
    "border_surface_distances",
    "border_voxels",
    "surface_distances",
    "surfel_surface_distances",
    "weighted_percentile",
]
