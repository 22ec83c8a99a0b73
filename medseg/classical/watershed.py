"""Marker-based watershed on the gradient magnitude, to split touching objects.

The landscape is the 3-D Sobel gradient magnitude (per mm, :func:`~medseg.classical.edges.
gradient_magnitude`) of the image, after a Gaussian of ``sigma_mm`` (0: none); it is flooded
from markers (scikit-image ``watershed``, 6-connected flooding) inside ``mask``:

* **markers given** — a label map (or array) on the image's grid whose non-zero values are the
  markers; each value becomes one object (the output keeps the values). Without a mask the
  whole image is divided among the markers, so give a background marker too.
* **markers from the distance-transform peak rule** (``markers=None``; needs ``mask``, the
  foreground to split) — the Euclidean distance (mm) of every mask voxel to the background
  (``scipy.ndimage.distance_transform_edt`` with the spacing) has one peak near the middle of
  each convex blob; a peak is a voxel where the distance is largest within a ball of
  ``min_distance_mm`` (scikit-image ``peak_local_max`` with that ball as footprint, per
  connected component of the mask, so every component gets a marker) and, when
  ``min_peak_mm`` is set, at least that deep. Peaks closer than one voxel merge. Objects are
  numbered ``1..N`` from the deepest peak (the largest inscribed ball) down.

The distance-peak rule is the usual one for splitting touching round objects (cells, nodules,
vertebral bodies); ``min_distance_mm`` about the radius of the smallest object to separate.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from medseg.classical._common import MaskLike, float_image, make_label_map, mask_array
from medseg.components import connected_components
from medseg.errors import ConfigError, GeometryMismatchError
from medseg.postprocess import structuring_element
from medseg.volume import LabelMap, Volume


def _markers_array(markers: Volume | np.ndarray, volume: Volume) -> np.ndarray:
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
    mask: np.ndarray,
    spacing: tuple[float, float, float],
    min_distance_mm: float,
    min_peak_mm: float = 0.0,
) -> np.ndarray:
    """Markers ``int32 (X, Y, Z)`` at the peaks of the mask's distance transform (mm), numbered
    from the deepest peak; see the module docstring."""
    from skimage.feature import peak_local_max

    dist = ndimage.distance_transform_edt(mask, sampling=spacing)
    comps, _ = connected_components(mask, 26)
    footprint = structuring_element(min_distance_mm, spacing)
    coords = peak_local_max(
        dist,
        footprint=footprint,
        labels=comps.astype(np.int64),
        exclude_border=False,
        threshold_abs=min_peak_mm if min_peak_mm > 0 else None,
    )
    peaks = np.zeros(mask.shape, dtype=bool)
    if len(coords):
        peaks[tuple(np.asarray(coords).T)] = True
    blobs, n = connected_components(peaks, 26)
    if n == 0:
        raise ConfigError(
            f"watershed: no distance peak deeper than {min_peak_mm:g} mm inside the mask"
        )
    # Number the markers by decreasing depth of their peak.
    depth = ndimage.maximum(dist, blobs, index=np.arange(1, n + 1))
    order = np.argsort(-np.asarray(depth), kind="stable")
    relabel = np.zeros(n + 1, dtype=np.int32)
    relabel[order + 1] = np.arange(1, n + 1, dtype=np.int32)
    return relabel[blobs]


def watershed(
    volume: Volume,
    *,
    mask: MaskLike = None,
    markers: Volume | np.ndarray | None = None,
    min_distance_mm: float = 5.0,
    min_peak_mm: float = 0.0,
    sigma_mm: float = 1.0,
) -> LabelMap:
    """Marker-based watershed of the gradient magnitude (see the module docstring).

    Args:
        volume: the image.
        mask: the region to divide (required without ``markers``); voxels outside are 0.
        markers: marker label map on the image's grid, or None for the distance-peak rule.
        min_distance_mm: radius of the ball within which a distance peak must be the maximum.
        min_peak_mm: smallest depth (mm to the background) of a peak (0: any).
        sigma_mm: Gaussian smoothing before the gradient (mm; 0 for none).
    """
    from skimage.segmentation import watershed as sk_watershed

    from medseg.classical.edges import gradient_magnitude
    from medseg.classical.options import smooth

    if not (math.isfinite(sigma_mm) and sigma_mm >= 0):
        raise ConfigError(f"sigma_mm: expected a width >= 0 mm, found {sigma_mm!r}")
    if not (math.isfinite(min_distance_mm) and min_distance_mm > 0):
        raise ConfigError(f"min_distance_mm: expected a distance > 0 mm, found {min_distance_mm!r}")
    if not (math.isfinite(min_peak_mm) and min_peak_mm >= 0):
        raise ConfigError(f"min_peak_mm: expected a depth >= 0 mm, found {min_peak_mm!r}")
    float_image(volume)  # numeric and finite
    m = mask_array(mask, volume)
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
    landscape = gradient_magnitude(smooth(volume, sigma_mm) if sigma_mm > 0 else volume).array
    out = sk_watershed(landscape, markers=mk, mask=m, connectivity=1)
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
    )


__all__ = ["distance_peak_markers", "watershed"]
