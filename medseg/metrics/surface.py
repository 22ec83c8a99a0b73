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
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from medseg.errors import ConfigError

SurfaceKind = Literal["border", "surfels"]
DistanceMethod = Literal["auto", "edt", "kdtree"]

SURFACES: tuple[str, ...] = ("border", "surfels")
_F64 = npt.NDArray[np.float64]
_IDX = npt.NDArray[np.intp]
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
    result: npt.NDArray[np.bool_] = m & ~inner
    return result


def _auto_method(bp: npt.NDArray[np.bool_], br: npt.NDArray[np.bool_]) -> DistanceMethod:
    # The EDT costs ~ the crop size, the KD-tree ~ the number of surface points (x log).
    n = int(np.count_nonzero(bp)) + int(np.count_nonzero(br))
    return "kdtree" if 8 * n < bp.size else "edt"


def _directed_distances(
    bp: npt.NDArray[np.bool_],
    br: npt.NDArray[np.bool_],
    spacing: tuple[float, float, float],
    method: DistanceMethod,
) -> tuple[
    npt.NDArray[np.float64], npt.NDArray[np.intp], npt.NDArray[np.float64], npt.NDArray[np.intp]
]:
    """Distances (mm) from each point of surface ``bp`` to the nearest point of ``br`` and back.

    Both are non-empty boolean grids of one shape, with spacing in mm per axis. Returns
    ``(d_pr, idx_p, d_rp, idx_r)``: ``d_pr[i]`` belongs to the point at flat index ``idx_p[i]``.
    Points on both surfaces have distance 0 and are not queried.
    """
    if method == "auto":
        method = _auto_method(bp, br)
    if method == "edt":
        idx_p, idx_r = np.flatnonzero(bp), np.flatnonzero(br)
        d_pr = ndimage.distance_transform_edt(~br, sampling=spacing).ravel()[idx_p]
        d_rp = ndimage.distance_transform_edt(~bp, sampling=spacing).ravel()[idx_r]
        return d_pr.astype(np.float64), idx_p, d_rp.astype(np.float64), idx_r
    if method != "kdtree":
        raise ConfigError(f"unknown distance method {method!r}; expected one of {METHODS}")
    from scipy.spatial import cKDTree

    # One scan of the crop for both surfaces, then two trees over surface points only.
    flat = np.flatnonzero(bp | br)
    in_p = bp.ravel()[flat]
    in_r = br.ravel()[flat]
    pts = np.stack(np.unravel_index(flat, bp.shape), axis=1).astype(np.float64)
    pts *= np.asarray(spacing, dtype=np.float64)
    pts_p, pts_r = pts[in_p], pts[in_r]
    shared_p, shared_r = in_r[in_p], in_p[in_r]
    kw: dict[str, Any] = {"leafsize": 32, "balanced_tree": False, "compact_nodes": False}
    d_pr = np.zeros(len(pts_p))
    d_rp = np.zeros(len(pts_r))
    if not shared_p.all():
        d_pr[~shared_p] = cKDTree(pts_r, **kw).query(pts_p[~shared_p], k=1)[0]
    if not shared_r.all():
        d_rp[~shared_r] = cKDTree(pts_p, **kw).query(pts_r[~shared_r], k=1)[0]
    return d_pr, flat[in_p], d_rp, flat[in_r]


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
    d_pr, _, d_rp, _ = _directed_distances(border_voxels(pred), border_voxels(ref), spacing, method)
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


def _neighbour_codes(mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.uint8]:
    """DeepMind's 2×2×2 neighbour code of every voxel corner, shape ``mask.shape + 1``.

    Corner ``(a, b, c)`` lies between voxels ``a-1`` and ``a`` (etc.); bit 7 is voxel
    ``(a-1, b-1, c-1)``, bit 0 voxel ``(a, b, c)`` (the kernel of ``surface_distance``).
    """
    padded = np.pad(mask.astype(np.uint8), 1)
    shape = tuple(s - 1 for s in padded.shape)
    code = np.zeros(shape, dtype=np.uint8)
    bit = 7
    for a in range(2):
        for b in range(2):
            for c in range(2):
                code |= np.left_shift(
                    padded[a : a + shape[0], b : b + shape[1], c : c + shape[2]], np.uint8(bit)
                )
                bit -= 1
    return code


def surfel_surface_distances(
    pred: npt.NDArray[np.bool_],
    ref: npt.NDArray[np.bool_],
    spacing: tuple[float, float, float],
    method: DistanceMethod = "auto",
) -> SurfaceDistances:
    """Area-weighted surfel distances (DeepMind ``surface-distance`` definition) between two
    **non-empty** 3-D boolean masks of the same shape; ``spacing`` in mm per array axis."""
    cp, cr = _neighbour_codes(pred), _neighbour_codes(ref)
    sp = (cp != 0) & (cp != 255)
    sr = (cr != 0) & (cr != 255)
    d_pr, idx_p, d_rp, idx_r = _directed_distances(sp, sr, spacing, method)
    table = _surfel_area_table(spacing)
    return SurfaceDistances(d_pr, d_rp, table[cp.ravel()[idx_p]], table[cr.ravel()[idx_r]])


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
    raise ConfigError(f"unknown surface definition {surface!r}; expected one of {SURFACES}")


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
