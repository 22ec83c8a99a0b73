"""Edges: 3-D Sobel gradient magnitude and 3-D Canny, as an edge map or a filled region.

* :func:`gradient_magnitude` — the 3-D Sobel gradient magnitude in intensity units **per mm**
  (``scipy.ndimage.sobel`` along each axis, divided by ``32 · spacing``: the derivative
  ``[-1, 0, 1]`` spans two voxels and the ``[1, 2, 1]`` smoothing along each of the two other
  axes sums to 4), so a ramp of ``c`` HU/mm gives ``c`` whatever the spacing.
* :func:`sobel_edges` — voxels whose Sobel magnitude is above ``low`` (with ``high``:
  hysteresis, scikit-image ``apply_hysteresis_threshold``, which is N-D: voxels above ``low``
  connected to a voxel above ``high``).
* :func:`canny_edges` — SimpleITK's N-D ``CannyEdgeDetection`` (Gaussian of ``sigma_mm``,
  non-maximum suppression along the gradient, hysteresis between ``low`` and ``high``);
  scikit-image's ``canny`` is 2-D only. ITK measures the gradient per voxel step, not per mm,
  so medseg runs it on an isotropic grid of the finest spacing (linear interpolation; not
  needed when the grid is already isotropic) with the thresholds converted to per-step units,
  and maps the edge voxels back (an input voxel is an edge when any of the fine voxels whose
  centre lies in it is). Thresholds are therefore per mm on any grid.

With ``region=True`` the edges are closed by ``closing_mm`` (a ball, mm; 0 = not closed) and
their 3-D holes filled (:func:`medseg.postprocess.fill_holes`), and the result is the region
they enclose (label 1, ``region``); otherwise label 1 (``edge``) marks the edge voxels.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from medseg.classical._common import float_image, from_sitk, make_label_map, sitk_module, to_sitk
from medseg.errors import ConfigError
from medseg.postprocess import check_radius, closing, fill_holes
from medseg.volume import LabelMap, Volume


def _sobel_mm(
    arr: npt.NDArray[np.floating], spacing: tuple[float, float, float]
) -> npt.NDArray[Any]:
    sq = np.zeros(arr.shape, dtype=np.float64)
    for axis in range(3):
        g = ndimage.sobel(arr, axis=axis, mode="nearest", output=np.float64)
        g /= 32.0 * spacing[axis]
        sq += g * g
    return np.sqrt(sq)


def gradient_magnitude(volume: Volume) -> Volume:
    """3-D Sobel gradient magnitude, float32, intensity units per mm (e.g. HU/mm), on the
    input's grid (edges replicated at the image border)."""
    mag = _sobel_mm(float_image(volume), volume.spacing)
    return Volume(mag.astype(np.float32), volume.affine, None, volume.meta)


def _check_thresholds(low: float, high: float | None) -> tuple[float, float | None]:
    lo = float(low)
    if not (math.isfinite(lo) and lo >= 0):
        raise ConfigError(f"edge threshold low: expected a gradient >= 0 per mm, found {low!r}")
    if high is None:
        return lo, None
    hi = float(high)
    if not math.isfinite(hi) or hi < lo:
        raise ConfigError(f"edge thresholds: high ({high!r}) must be finite and >= low ({lo:g})")
    return lo, hi


def _output(
    volume: Volume,
    edges: npt.NDArray[Any],
    region: bool,
    closing_mm: float,
    method: str,
    **details: object,
) -> LabelMap:
    r = check_radius(closing_mm, "closing_mm")
    out: npt.NDArray[np.integer[Any]] = edges.astype(np.uint8)
    if region:
        if r > 0:
            out = closing(out, r, volume.spacing)
        out = fill_holes(out)
    name = "region" if region else "edge"
    return make_label_map(volume, out, {1: name}, method, region=region, closing_mm=r, **details)


def sobel_edges(
    volume: Volume,
    low: float,
    high: float | None = None,
    *,
    region: bool = False,
    closing_mm: float = 0.0,
) -> LabelMap:
    """Edge voxels of the Sobel magnitude (:func:`gradient_magnitude`, per mm): above ``low``,
    or with ``high`` the hysteresis of the two; ``region=True``: the region they enclose."""
    from skimage.filters import apply_hysteresis_threshold

    lo, hi = _check_thresholds(low, high)
    mag = _sobel_mm(float_image(volume), volume.spacing)
    edges = mag > lo if hi is None else apply_hysteresis_threshold(mag, lo, hi)
    return _output(volume, edges, region, closing_mm, "sobel", low=lo, high=hi)


def _isotropic_canny(
    arr: npt.NDArray[np.floating],
    spacing: tuple[float, float, float],
    sigma_mm: float,
    low: float,
    high: float,
) -> npt.NDArray[Any]:
    sitk = sitk_module()
    sp = np.asarray(spacing, dtype=np.float64)
    step = float(sp.min())
    image = to_sitk(arr.astype(np.float32, copy=False), spacing)
    isotropic = bool(np.allclose(sp, step, rtol=1e-3))
    if isotropic:
        fine = image
        fine_shape = arr.shape
    else:
        # Voxel centres of the fine grid: (f + 0.5)·step − 0.5·sp_a, covering the same extent.
        fine_shape = tuple(math.ceil(n * s / step) for n, s in zip(arr.shape, sp, strict=True))
        origin = tuple(float(-0.5 * s + 0.5 * step) for s in sp)
        image.SetOrigin((0.0, 0.0, 0.0))
        fine = sitk.Resample(
            image,
            list(fine_shape),
            sitk.Transform(),
            sitk.sitkLinear,
            origin,
            (step, step, step),
            image.GetDirection(),
            0.0,
            sitk.sitkFloat32,
            True,  # beyond the outermost voxel centres: nearest value, not a 0 border
        )
    # ITK's gradient is per voxel step (step mm): thresholds per mm times the step.
    edges_img = sitk.CannyEdgeDetection(
        fine,
        lowerThreshold=low * step,
        upperThreshold=high * step,
        variance=[sigma_mm**2] * 3,
        maximumError=[0.01] * 3,
    )
    fine_edges = from_sitk(edges_img) > 0
    if isotropic:
        return fine_edges
    idx = np.nonzero(fine_edges)
    out = np.zeros(arr.shape, dtype=bool)
    coarse = []
    for a in range(3):
        centre = (0.5 * step - 0.5 * sp[a]) + idx[a] * step  # mm from voxel 0's centre
        coarse.append(np.clip(np.rint(centre / sp[a]).astype(int), 0, arr.shape[a] - 1))
    out[coarse[0], coarse[1], coarse[2]] = True
    return out


def canny_edges(
    volume: Volume,
    low: float,
    high: float,
    *,
    sigma_mm: float = 1.0,
    region: bool = False,
    closing_mm: float = 0.0,
) -> LabelMap:
    """3-D Canny edges (SimpleITK) with hysteresis thresholds ``low <= high`` on the gradient
    magnitude of the image smoothed by a Gaussian of ``sigma_mm`` (intensity units per mm; see
    the module docstring for anisotropic grids); ``region=True``: the region they enclose."""
    lo, hi = _check_thresholds(low, high)
    if hi is None:  # pragma: no cover - high is required by the signature
        raise ConfigError("Canny needs both thresholds")
    if not (math.isfinite(sigma_mm) and sigma_mm > 0):
        raise ConfigError(f"sigma_mm: expected a Gaussian width > 0 mm, found {sigma_mm!r}")
    edges = _isotropic_canny(float_image(volume), volume.spacing, sigma_mm, lo, hi)
    return _output(
        volume, edges, region, closing_mm, "canny", low=lo, high=hi, sigma_mm=float(sigma_mm)
    )


__all__ = ["canny_edges", "gradient_magnitude", "sobel_edges"]
