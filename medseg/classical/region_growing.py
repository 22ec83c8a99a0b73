"""Region growing from seed points given in world coordinates (RAS+ mm).

* :func:`connected_threshold` — the voxels connected to a seed whose intensity lies in
  ``[lower, upper]`` (SimpleITK ``ConnectedThresholdImageFilter``).
* :func:`confidence_connected` — ITK's confidence-connected rule: the window is
  ``mean ± multiplier · std`` of the intensities in a neighbourhood of the seeds, widened to
  contain every seed's intensity; the region grown with it (as above) then gives a new mean and
  std, and the region is grown again, ``iterations`` times. This follows ITK's
  ``ConfidenceConnectedImageFilter`` step by step (pooled neighbourhood statistics with the
  ``n - 1`` variance, the seed-widening, stopping when the variance vanishes) with one
  difference: the initial neighbourhood is a box of half-width ``radius_mm`` **millimetres**
  along every axis (ITK's radius is in voxels, the same number along every axis, whatever the
  spacing), clipped to the image. On a 1 mm grid the two agree exactly (a test checks it).

Seeds are ``(x, y, z)`` in mm in medseg's RAS+ world (as 3D Slicer shows RAS coordinates;
ITK-SNAP shows LPS: negate x and y); each maps to the voxel whose centre is nearest. A seed
outside the image, or whose intensity lies outside the window, is a
:class:`~medseg.errors.ConfigError`. ``connectivity`` is 6 (faces, ITK's default) or 26
(faces, edges and corners). The output is label 1 (``region``) in the input's grid; the
window used is in ``meta.extra``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medseg.classical._common import (
    check_window,
    float_image,
    from_sitk,
    make_label_map,
    seeds_to_voxels,
    sitk_module,
    to_sitk,
)
from medseg.config import check_range
from medseg.errors import ConfigError
from medseg.volume import LabelMap, Volume

Seeds = Sequence[Sequence[float]]


def _check_growing_connectivity(connectivity: int) -> int:
    if connectivity not in (6, 26):
        raise ConfigError(
            f"region growing connectivity: expected 6 or 26 (ITK's face or full "
            f"connectivity), found {connectivity!r}"
        )
    return int(connectivity)


def _grow(
    image: Any, seeds: list[tuple[int, int, int]], lower: float, upper: float, connectivity: int
) -> NDArray[Any]:
    sitk = sitk_module()
    f = sitk.ConnectedThresholdImageFilter()
    f.SetSeedList([list(s) for s in seeds])
    f.SetLower(float(lower))
    f.SetUpper(float(upper))
    f.SetReplaceValue(1)
    f.SetConnectivity(f.FullConnectivity if connectivity == 26 else f.FaceConnectivity)
    return from_sitk(f.Execute(image)).astype(bool)


def _check_seed_values(
    arr: NDArray[Any], seeds: list[tuple[int, int, int]], seeds_mm: Seeds, lo: float, hi: float
) -> None:
    for s, mm in zip(seeds, seeds_mm, strict=True):
        v = float(arr[s])
        if not lo <= v <= hi:
            raise ConfigError(
                f"seed ({', '.join(f'{c:g}' for c in mm)}) mm (voxel {s}) has intensity "
                f"{v:g}, outside the window [{lo:g}, {hi:g}]; nothing would grow from it"
            )


def connected_threshold(
    volume: Volume,
    seeds_mm: Seeds,
    lower: float | None = None,
    upper: float | None = None,
    *,
    connectivity: int = 6,
) -> LabelMap:
    """The region of voxels with ``lower <= value <= upper`` connected to any seed.

    Args:
        volume: the image (e.g. CT in HU).
        seeds_mm: seed points ``(x, y, z)``, RAS+ mm.
        lower, upper: the window (None: open on that side; ``lower > upper`` is an error).
        connectivity: 6 (default) or 26.
    """
    lo, hi = check_window(lower, upper)
    conn = _check_growing_connectivity(connectivity)
    arr = float_image(volume)
    seeds = seeds_to_voxels(volume, seeds_mm)
    _check_seed_values(arr, seeds, seeds_mm, lo, hi)
    # ITK needs finite bounds; the data's own range is equivalent to an open side.
    lo_f = float(arr.min()) if math.isinf(lo) else lo
    hi_f = float(arr.max()) if math.isinf(hi) else hi
    region = _grow(to_sitk(arr, volume.spacing), seeds, lo_f, hi_f, conn)
    return _region(volume, region, seeds, "connected-threshold", lower=lower, upper=upper)


def _region(
    volume: Volume,
    region: NDArray[Any],
    seeds: list[tuple[int, int, int]],
    method: str,
    **found: Any,
) -> LabelMap:
    seeds_voxel = [list(s) for s in seeds]
    return make_label_map(
        volume, region.astype(np.uint8), {1: "region"}, method, seeds_voxel=seeds_voxel, **found
    )


def _neighbourhood_values(
    arr: NDArray[Any], seeds: list[tuple[int, int, int]], radius_mm: float, spacing: Sequence[float]
) -> NDArray[Any]:
    reach = [math.floor(radius_mm / s * (1 + 1e-9)) for s in spacing]
    parts = []
    for s in seeds:
        box = tuple(
            slice(max(c - r, 0), min(c + r + 1, n))
            for c, r, n in zip(s, reach, arr.shape, strict=True)
        )
        parts.append(arr[box].ravel())
    result: NDArray[Any] = np.concatenate(parts).astype(np.float64)
    return result


def confidence_connected(
    volume: Volume,
    seeds_mm: Seeds,
    *,
    multiplier: float = 2.5,
    iterations: int = 1,
    radius_mm: float = 2.0,
    connectivity: int = 6,
) -> LabelMap:
    """Confidence-connected region growing (see the module docstring).

    Args:
        volume: the image.
        seeds_mm: seed points ``(x, y, z)``, RAS+ mm.
        multiplier: width of the window in standard deviations (> 0; ITK's default 2.5).
        iterations: times the statistics are re-estimated from the grown region (>= 0).
        radius_mm: half-width (mm, per axis) of the box around each seed that gives the
            initial statistics (0: the seed voxels alone, which needs >= 2 seeds).
        connectivity: 6 (default) or 26.
    """
    check_range("multiplier", multiplier)
    iterations = check_range("iterations", iterations)
    check_range("radius_mm", radius_mm)
    conn = _check_growing_connectivity(connectivity)
    arr = float_image(volume)
    seeds = seeds_to_voxels(volume, seeds_mm)
    seed_vals = np.array([float(arr[s]) for s in seeds])
    vals = _neighbourhood_values(arr, seeds, radius_mm, volume.spacing)
    if vals.size < 2:
        raise ConfigError(
            "confidence connected: the initial neighbourhood holds one voxel; give "
            "radius_mm larger than half the voxel size or several seeds"
        )

    def window(v: NDArray[Any]) -> tuple[float, float, float, float]:
        mean = float(v.mean())
        std = float(np.sqrt(max(float(v.var(ddof=1)), 0.0)))
        lo = min(mean - multiplier * std, float(seed_vals.min()))
        hi = max(mean + multiplier * std, float(seed_vals.max()))
        return lo, hi, mean, std

    lo, hi, mean, std = window(vals)
    image = to_sitk(arr, volume.spacing)
    region = _grow(image, seeds, lo, hi, conn)
    for _ in range(int(iterations)):
        v = arr[region].astype(np.float64)
        if v.size < 2 or math.isclose(float(v.var(ddof=1)), 0.0, abs_tol=1e-300):
            break
        lo, hi, mean, std = window(v)
        region = _grow(image, seeds, lo, hi, conn)
    return _region(
        volume, region, seeds, "confidence-connected", lower=lo, upper=hi, mean=mean, std=std
    )


__all__ = ["confidence_connected", "connected_threshold"]
