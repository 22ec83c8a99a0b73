"""Intensity thresholds: a fixed window, Otsu's threshold and multi-level Otsu.

Output labels count the thresholds a voxel lies above: for :func:`threshold` 1 inside the
window and 0 outside; for :func:`otsu` 1 above Otsu's threshold; for :func:`multi_otsu` with
``K`` classes 0 (darkest class) to ``K - 1`` (brightest). Voxels outside ``mask`` are 0, and
the histograms of Otsu's methods are computed from the voxels inside it. The thresholds found
are stored in ``labels.meta.extra["thresholds"]`` (intensity units, e.g. HU).

Otsu's thresholds come from scikit-image (``threshold_otsu``, ``threshold_multiotsu``) on a
histogram of ``bins`` bins over the voxels' range.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medseg.classical._common import (
    MaskLike,
    check_classes,
    check_window,
    intensities,
    make_label_map,
    mask_array,
)
from medseg.config import check_range
from medseg.errors import ConfigError
from medseg.volume import LabelMap, Volume


def threshold(
    volume: Volume,
    lower: float | None = None,
    upper: float | None = None,
    *,
    mask: MaskLike = None,
    name: str = "foreground",
) -> LabelMap:
    """Label 1 where ``lower <= value <= upper`` (either bound may be None: open).

    E.g. bone in CT ``threshold(ct, lower=300)``, lungs ``threshold(ct, upper=-400)``.
    ``lower > upper`` raises :class:`~medseg.errors.ConfigError`.
    """
    lo, hi = check_window(lower, upper)
    arr = intensities(volume)
    m = mask_array(mask, volume)
    out = (arr >= lo) & (arr <= hi)
    if m is not None:
        out &= m
    return make_label_map(
        volume, out.astype(np.uint8), {1: name}, "threshold", lower=lower, upper=upper
    )


def _sample(arr: NDArray[Any], mask: NDArray[Any] | None) -> NDArray[Any]:
    vals = arr[mask] if mask is not None else arr.ravel()
    if vals.size == 0 or float(vals.min()) == float(vals.max()):
        raise ConfigError(
            "Otsu threshold: the voxels (inside the mask) have a single intensity "
            f"({float(vals.min()) if vals.size else 'none'}); nothing to separate"
        )
    return vals


def _check_bins(bins: int) -> int:
    return int(check_range("bins", bins))


#: Most threshold combinations multi-Otsu may search (``comb(bins, classes - 1)``; scikit-image
#: searches them all: 256 bins and 5 classes, 1.7e8, take ~10 s).
MULTI_OTSU_MAX_COMBINATIONS = 2e8


def otsu(volume: Volume, *, mask: MaskLike = None, bins: int = 256) -> LabelMap:
    """Label 1 above Otsu's threshold (the one that maximises the between-class variance of
    the intensity histogram, ``bins`` bins), 0 below; the threshold is in
    ``meta.extra["thresholds"]``."""
    from skimage.filters import threshold_otsu

    arr = intensities(volume)
    m = mask_array(mask, volume)
    t = float(threshold_otsu(_sample(arr, m), nbins=_check_bins(bins)))
    out = arr > t
    if m is not None:
        out &= m
    return make_label_map(volume, out.astype(np.uint8), {1: "above_otsu"}, "otsu", thresholds=[t])


def multi_otsu(
    volume: Volume, classes: int = 3, *, mask: MaskLike = None, bins: int = 256
) -> LabelMap:
    """``K = classes`` intensity classes separated by the ``K - 1`` multi-level Otsu thresholds
    (scikit-image ``threshold_multiotsu``): label ``c`` for the voxels above ``c`` thresholds,
    so 0 is the darkest class and ``K - 1`` the brightest; names ``class_1``...``class_{K-1}``.
    """
    from skimage.filters import threshold_multiotsu

    k = check_classes(classes)
    n_bins = _check_bins(bins)
    combos = math.comb(n_bins, k - 1)
    if combos > MULTI_OTSU_MAX_COMBINATIONS:
        raise ConfigError(
            f"classes, bins: multi-Otsu with {k} classes and {n_bins} bins searches {combos:.2g} "
            f"threshold combinations, more than {MULTI_OTSU_MAX_COMBINATIONS:.0e} (minutes to "
            "days); use fewer classes or bins"
        )
    arr = intensities(volume)
    m = mask_array(mask, volume)
    vals = _sample(arr, m)
    try:
        ts = np.asarray(threshold_multiotsu(vals, classes=k, nbins=n_bins), float)
    except ValueError as exc:  # e.g. fewer distinct values than classes
        raise ConfigError(f"multi-Otsu with {k} classes: {exc}") from None
    out = np.zeros(arr.shape, dtype=np.uint8)
    for t in ts:  # label = number of thresholds strictly below the value (skimage: > t)
        out += arr > t
    if m is not None:
        out[~m] = 0
    names = {c: f"class_{c}" for c in range(1, k)}
    return make_label_map(volume, out, names, "multi-otsu", thresholds=[float(t) for t in ts])


__all__ = ["multi_otsu", "otsu", "threshold"]
