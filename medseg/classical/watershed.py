"""Marker-based watershed, to split touching objects.

The landscape flooded from the markers (scikit-image ``watershed``, 6-connected flooding,
inside ``mask``) is, with ``landscape``:

* ``"gradient"`` (default) — the 3-D Sobel gradient magnitude (per mm, :func:`~medseg.
  classical.edges.gradient_magnitude`) of the image after a Gaussian of ``sigma_mm`` (0:
  none): objects are divided along their edges (touching vertebrae meeting at a darker disc,
  organs of different intensity). Inside a region of uniform intensity the gradient is only
  noise, and where objects meet is then decided by which flood spreads first;
* ``"distance"`` — minus the distance (mm) of each mask voxel to the background: the classic
  split of touching objects of one intensity along the "neck" between them (needs ``mask``).

Markers:

* **given** — a label map (or array) on the image's grid whose non-zero values are the
  markers; each value becomes one object (the output keeps the values). Without a mask the
  whole image is divided among the markers, so give a background marker too. Markers are
  best blobs (a few mm), not single voxels, on noisy data.
* **distance-transform peak rule** (``markers=None``; needs ``mask``, the foreground to
  split) — the Euclidean distance (mm) of every mask voxel to the background
  (``scipy.ndimage.distance_transform_edt`` with the spacing) peaks near the middle of each
  convex blob. Candidates are its local maxima (no deeper voxel among the 26 neighbours) at
  least ``min_peak_mm`` deep; they are taken from the deepest down, and one closer than
  ``min_distance_mm`` (Euclidean, mm) to a peak already kept in the same connected
  component of the mask is dropped (non-maximum suppression with a KD-tree; this also
  resolves plateaus and equal peaks). The deepest point of every component is kept, so each
  component gets a marker. Objects are numbered ``1..N`` from the deepest peak down.

``min_distance_mm`` is about the radius of the smallest object to separate.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from medseg.classical._common import MaskLike, float_image, make_label_map, mask_array
from medseg.components import connected_components
from medseg.config import check_range
from medseg.errors import ConfigError, GeometryMismatchError
from medseg.volume import LabelMap, Volume

#: Landscapes the markers flood (see the module docstring).
LANDSCAPES: tuple[str, ...] = ("gradient", "distance")


def _markers_array(markers: Volume | NDArray[Any], volume: Volume) -> NDArray[Any]:
    if isinstance(markers, Volume):
        volume.check_same_grid(markers)
        arr = np.asarray(markers.array)
    else:
        arr = np.asarray(markers)
        if arr.shape != volume.shape:
            raise GeometryMismatchError(
                f"markers: shape {arr.shape} does not match {volume.name} {volume.shape}"
            )
    if arr.dtype.kind not in "biu" or (arr.size and int(arr.min()) < 0):
        raise ConfigError("markers: expected a label map of non-negative integers (0 = none)")
    if not arr.any():
        raise ConfigError("markers: the marker image is empty; expected at least one marker")
    return arr.astype(np.int32)


def distance_peak_markers(
    mask: NDArray[Any],
    spacing: tuple[float, float, float],
    min_distance_mm: float,
    min_peak_mm: float = 0.0,
) -> NDArray[Any]:
    """Markers ``int32 (X, Y, Z)``, one voxel each, at the peaks of the mask's distance
    transform (mm), numbered from the deepest peak; see the module docstring."""
    from scipy.spatial import cKDTree

    dist = ndimage.distance_transform_edt(mask, sampling=spacing)
    comps, _ = connected_components(mask, 26)
    candidates = mask & (dist >= ndimage.maximum_filter(dist, size=3))
    if min_peak_mm > 0:
        candidates &= dist >= min_peak_mm
    coords = np.argwhere(candidates)
    if len(coords) == 0:
        raise ConfigError(
            f"watershed: no distance peak deeper than {min_peak_mm:g} mm inside the mask"
        )
    idx = tuple(coords.T)
    # Deepest first; equal depths in scan order.
    order = np.lexsort((np.ravel_multi_index(idx, mask.shape), -dist[idx]))
    coords = coords[order]
    comp_of = comps[tuple(coords.T)]
    pts = coords * np.asarray(spacing, dtype=np.float64)
    tree = cKDTree(pts)
    keep = np.ones(len(coords), dtype=bool)
    for i in range(len(coords)):  # over candidates; only the kept ones query the tree
        if keep[i]:
            near = np.asarray(tree.query_ball_point(pts[i], r=min_distance_mm), dtype=int)
            near = near[(near > i) & (comp_of[near] == comp_of[i])]
            keep[near] = False
    markers = np.zeros(mask.shape, dtype=np.int32)
    kept = coords[keep]
    markers[tuple(kept.T)] = np.arange(1, len(kept) + 1, dtype=np.int32)
    return markers


def watershed(
    volume: Volume,
    *,
    mask: MaskLike = None,
    markers: Volume | NDArray[Any] | None = None,
    min_distance_mm: float = 5.0,
    min_peak_mm: float = 0.0,
    sigma_mm: float = 1.0,
    landscape: str = "gradient",
) -> LabelMap:
    """Marker-based watershed of the gradient magnitude (see the module docstring).

    Args:
        volume: the image.
        mask: the region to divide (required without ``markers``); voxels outside are 0.
        markers: marker label map on the image's grid, or None for the distance-peak rule.
        min_distance_mm: radius of the ball within which a distance peak must be the maximum.
        min_peak_mm: smallest depth (mm to the background) of a peak (0: any).
        sigma_mm: Gaussian smoothing before the gradient (mm; 0 for none).
        landscape: ``"gradient"`` (default) or ``"distance"`` (needs ``mask``).
    """
    from skimage.segmentation import watershed as sk_watershed

    from medseg.classical.edges import gradient_magnitude
    from medseg.classical.options import smooth

    check_range("sigma_mm", sigma_mm)
    check_range("min_distance_mm", min_distance_mm)
    check_range("min_peak_mm", min_peak_mm)
    if landscape not in LANDSCAPES:
        raise ConfigError(
            f"landscape: expected one of {', '.join(LANDSCAPES)}, found {landscape!r}"
        )
    float_image(volume)  # numeric and finite
    m = mask_array(mask, volume)
    if landscape == "distance" and m is None:
        raise ConfigError("watershed: the distance landscape needs a mask")
    if markers is None:
        if m is None:
            raise ConfigError(
                "watershed: give a mask (the foreground to split) or markers; the "
                "distance-peak rule needs a mask"
            )
        mk = distance_peak_markers(m, volume.spacing, min_distance_mm, min_peak_mm)
        source = "distance peaks"
    else:
        mk = _markers_array(markers, volume)
        if m is not None:
            mk = np.where(m, mk, 0)
            if not mk.any():
                raise ConfigError("watershed: no marker lies inside the mask")
        source = "given"
    if landscape == "distance":
        relief = -ndimage.distance_transform_edt(m, sampling=volume.spacing)
    else:
        relief = gradient_magnitude(smooth(volume, sigma_mm) if sigma_mm > 0 else volume).array
    out = sk_watershed(relief, markers=mk, mask=m, connectivity=1)
    values = [int(v) for v in np.unique(mk) if v != 0]
    names = {v: f"object_{v}" for v in values}
    return make_label_map(
        volume,
        out,
        names,
        "watershed",
        markers=source,
        n_objects=len(values),
        min_distance_mm=float(min_distance_mm),
        sigma_mm=float(sigma_mm),
        landscape=landscape,
    )


__all__ = ["distance_peak_markers", "watershed"]
