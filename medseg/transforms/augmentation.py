"""Training augmentation, driven by :class:`~medseg.plan.schema.AugmentationPlan`.

Two steps, so that the result is a pure function of a seed:

* :func:`sample_params` draws every random decision for one sample from a numpy ``Generator``
  (which transforms fire and with which values) into an :class:`AugmentationParams` record;
* :func:`apply_augmentation` applies the record to an image region ``(C, X, Y, Z)`` and its label
  ``(X, Y, Z)`` and returns exactly ``patch_size`` voxels.

Spatial transforms act on a region larger than the patch (:func:`region_size`) so that rotated
or zoomed-out patches are filled with real data, not padding (as nnU-Net does).

What comes from MONAI and what does not, and why:

* rotation + scaling: MONAI ``Affine`` (torch ``grid_sample``; image bilinear, label nearest,
  the same matrix for both);
* elastic deformation (with the same rotation/scaling folded in, one resampling):
  MONAI ``Rand3DElastic``, seeded from the record;
* flips, Gaussian noise, blur, brightness, contrast, gamma, simulated low resolution: our own
  numpy/scipy/torch code. MONAI's random intensity transforms each keep their own
  ``RandomState`` and convert to torch tensors; with per-sample seeding (needed so results do
  not depend on the number of loader workers) that costs more than the arithmetic itself, and
  MONAI has no nnU-Net-style contrast (scale around the mean, clipped to the original range).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from medseg.plan.schema import AugmentationPlan

#: Extra voxels around the region used for elastic deformation (displacements after smoothing
#: are a few voxels for the default magnitudes).
ELASTIC_MARGIN = 8


@dataclass(frozen=True)
class AugmentationParams:
    """Every random decision for one sample (``None``: that transform does not fire)."""

    rotation_rad: tuple[float, float, float] | None = None
    scale: float | None = None
    elastic: tuple[float, float, int] | None = None  # (sigma, magnitude, seed)
    flip_axes: tuple[int, ...] = ()
    noise: tuple[float, int] | None = None  # (std, seed)
    blur_sigma: float | None = None
    brightness: float | None = None
    contrast: float | None = None
    low_resolution_zoom: float | None = None
    gamma: float | None = None

    @property
    def spatial(self) -> bool:
        return self.rotation_rad is not None or self.scale is not None or self.elastic is not None


def _u(rng: np.random.Generator, r: Sequence[float]) -> float:
    return float(rng.uniform(r[0], r[1])) if r[1] > r[0] else float(r[0])


def sample_params(aug: AugmentationPlan, rng: np.random.Generator) -> AugmentationParams:
    """Draw one sample's augmentation decisions (a fixed number of draws per transform, so
    changing one probability does not shift the others' random streams more than needed)."""
    rot = None
    if rng.random() < aug.rotation_prob:
        angles = [math.radians(_u(rng, aug.rotation_range_deg)) for _ in range(3)]
        rot = (angles[0], angles[1], angles[2]) if aug.rotation_3d else (0.0, 0.0, angles[2])
    scale = _u(rng, aug.scale_range) if rng.random() < aug.scale_prob else None
    elastic = None
    if rng.random() < aug.elastic_prob:
        elastic = (
            _u(rng, aug.elastic_sigma_range),
            _u(rng, aug.elastic_magnitude_range),
            int(rng.integers(2**31 - 1)),
        )
    flips = tuple(a for a in aug.flip_axes if rng.random() < aug.flip_prob)
    noise = None
    if rng.random() < aug.noise_prob:
        noise = (_u(rng, aug.noise_std_range), int(rng.integers(2**31 - 1)))
    blur = _u(rng, aug.blur_sigma_range) if rng.random() < aug.blur_prob else None
    bright = _u(rng, aug.brightness_range) if rng.random() < aug.brightness_prob else None
    contrast = _u(rng, aug.contrast_range) if rng.random() < aug.contrast_prob else None
    lowres = (
        _u(rng, aug.low_resolution_zoom_range) if rng.random() < aug.low_resolution_prob else None
    )
    gamma = _u(rng, aug.gamma_range) if rng.random() < aug.gamma_prob else None
    return AugmentationParams(
        rot, scale, elastic, flips, noise, blur, bright, contrast, lowres, gamma
    )


def _rotation_matrix(angles: Sequence[float]) -> NDArray[Any]:
    cx, cy, cz = (math.cos(a) for a in angles)
    sx, sy, sz = (math.sin(a) for a in angles)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    # MONAI composes in its own order; the elementwise max of both orders bounds either.
    result: NDArray[Any] = np.maximum(np.abs(rz @ ry @ rx), np.abs(rx @ ry @ rz))
    return result


def region_size(patch_size: Sequence[int], params: AugmentationParams) -> tuple[int, int, int]:
    """Input region (voxels) the spatial transform needs to fill ``patch_size`` with data:
    the bounding box of the rotated, scaled patch (+ a margin for elastic deformation)."""
    if not params.spatial:
        return (int(patch_size[0]), int(patch_size[1]), int(patch_size[2]))
    m = np.eye(3)
    if params.rotation_rad is not None:
        m = _rotation_matrix(params.rotation_rad)  # absolute values
    m = m * (params.scale if params.scale is not None else 1.0)
    half = np.asarray(patch_size, dtype=np.float64) / 2.0
    need = np.abs(m) @ half
    margin = ELASTIC_MARGIN if params.elastic is not None else 2
    out = [int(2 * math.ceil(n) + 2 * margin) for n in need]
    return (out[0], out[1], out[2])


def _spatial(
    image: NDArray[Any], label: NDArray[Any] | None, p: AugmentationParams, patch: Sequence[int]
) -> tuple[NDArray[Any], NDArray[Any] | None]:
    import torch
    from monai.transforms import Affine, Rand3DElastic

    size = tuple(int(s) for s in patch)
    rot = p.rotation_rad or (0.0, 0.0, 0.0)
    sc = p.scale if p.scale is not None else 1.0
    img_t = torch.from_numpy(np.ascontiguousarray(image))
    out_img: Any
    out_lab: Any
    lab_t = None if label is None else torch.from_numpy(label[None].astype(np.float32))
    if p.elastic is not None:
        sigma, mag, seed = p.elastic
        el = Rand3DElastic(
            sigma_range=(sigma, sigma),
            magnitude_range=(mag, mag),
            prob=1.0,
            rotate_range=tuple((r, r) for r in rot),
            scale_range=tuple((sc - 1.0, sc - 1.0) for _ in range(3)),
            spatial_size=size,  # type: ignore[arg-type]
            mode="bilinear",
            padding_mode="zeros",
        )
        el.set_random_state(seed=seed)
        out_img = el(img_t, randomize=True)
        out_lab = None if lab_t is None else el(lab_t, mode="nearest", randomize=False)
    else:
        aff = Affine(
            rotate_params=rot,
            scale_params=(sc, sc, sc),
            spatial_size=size,
            mode="bilinear",
            padding_mode="zeros",
            image_only=True,
        )
        out_img = aff(img_t)
        out_lab = None if lab_t is None else aff(lab_t, mode="nearest")
    img_np = np.asarray(out_img.detach().cpu().numpy() if hasattr(out_img, "detach") else out_img)
    lab_np = None
    if out_lab is not None:
        arr = out_lab.detach().cpu().numpy() if hasattr(out_lab, "detach") else out_lab
        lab_np = np.rint(np.asarray(arr)[0]).astype(label.dtype if label is not None else np.uint8)
    return img_np.astype(np.float32, copy=False), lab_np


def _simulate_low_resolution(image: NDArray[Any], zoom: float) -> NDArray[Any]:
    """Downsample (nearest) by ``zoom`` and upsample back (linear), half-voxel aligned.

    Same result as :func:`medseg.transforms.spatial.resample_to_shape` twice (order 0, then 1),
    computed with ``torch.nn.functional.interpolate`` (MONAI's ``RandSimulateLowResolution``
    draws its own random zoom, so it is not used here).
    """
    import torch
    from torch.nn import functional as tnf

    size = tuple(int(s) for s in image.shape[1:])
    low = tuple(max(1, round(s * zoom)) for s in size)
    t = torch.from_numpy(np.ascontiguousarray(image))[None]
    down = tnf.interpolate(t, size=low, mode="nearest-exact")
    up = tnf.interpolate(down, size=size, mode="trilinear", align_corners=False)
    return np.ascontiguousarray(up[0].numpy(), dtype=np.float32)


def _center_crop(a: NDArray[Any], size: Sequence[int]) -> NDArray[Any]:
    sh = a.shape[-3:]
    lo = [(n - s) // 2 for n, s in zip(sh, size, strict=True)]
    return a[..., lo[0] : lo[0] + size[0], lo[1] : lo[1] + size[1], lo[2] : lo[2] + size[2]]


def apply_augmentation(
    image: NDArray[Any],
    label: NDArray[Any] | None,
    params: AugmentationParams,
    patch_size: Sequence[int],
) -> tuple[NDArray[Any], NDArray[Any] | None]:
    """Apply ``params`` to an image region ``(C, X, Y, Z)`` (float32, normalised) and its label
    ``(X, Y, Z)``; the region is :func:`region_size` voxels, centred on the patch centre.

    Returns ``(image (C, *patch_size) float32, label (*patch_size) or None)``.
    """
    size = tuple(int(s) for s in patch_size)
    if params.spatial:
        image, label = _spatial(image, label, params, size)
    else:
        image = _center_crop(image, size)
        label = None if label is None else _center_crop(label, size)
    image = np.array(image, dtype=np.float32, copy=True)
    for ax in params.flip_axes:
        image = np.flip(image, axis=ax + 1)
        if label is not None:
            label = np.flip(label, axis=ax)
    image = np.ascontiguousarray(image)
    label = None if label is None else np.ascontiguousarray(label)
    if params.noise is not None:
        std, seed = params.noise
        g = np.random.default_rng(seed)
        image += g.standard_normal(image.shape, dtype=np.float32) * np.float32(std)
    if params.blur_sigma is not None:
        for c in range(image.shape[0]):
            image[c] = ndimage.gaussian_filter(image[c], params.blur_sigma, mode="nearest")
    if params.brightness is not None:
        image *= np.float32(params.brightness)
    if params.contrast is not None:
        for c in range(image.shape[0]):
            lo, hi, m = image[c].min(), image[c].max(), image[c].mean()
            image[c] = np.clip((image[c] - m) * np.float32(params.contrast) + m, lo, hi)
    if params.low_resolution_zoom is not None:
        image = _simulate_low_resolution(image, params.low_resolution_zoom)
    if params.gamma is not None:
        for c in range(image.shape[0]):
            lo, hi = float(image[c].min()), float(image[c].max())
            rng_ = max(hi - lo, 1e-7)
            image[c] = (((image[c] - lo) / rng_) ** np.float32(params.gamma)) * rng_ + lo
    return image, label


__all__ = [
    "AugmentationParams",
    "apply_augmentation",
    "region_size",
    "sample_params",
]
