"""Helpers shared by the classical methods: arrays in and out of SimpleITK, masks, seeds in
world coordinates, and the construction of the output :class:`~medseg.volume.LabelMap`."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from medseg.config import RANGES
from medseg.errors import ConfigError, GeometryMismatchError
from medseg.volume import LabelMap, Volume, VolumeMeta

F64 = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
MaskLike = Volume | npt.NDArray[Any] | None


def sitk_module() -> Any:
    import SimpleITK as sitk

    return sitk


def to_sitk(array: npt.NDArray[Any], spacing: Sequence[float]) -> Any:
    """A SimpleITK image of ``array`` (medseg ``(i, j, k)`` order; ITK index ``(i, j, k)``) with
    the voxel spacing in mm. Only the spacing matters to the filters used here (they act along
    the array axes); origin and direction are left at ITK's defaults."""
    sitk = sitk_module()
    img = sitk.GetImageFromArray(np.ascontiguousarray(np.transpose(array, (2, 1, 0))))
    img.SetSpacing(tuple(float(s) for s in spacing))
    return img


def from_sitk(image: Any) -> npt.NDArray[Any]:
    """The voxels of a SimpleITK image in medseg's ``(i, j, k)`` order."""
    sitk = sitk_module()
    return np.ascontiguousarray(np.transpose(sitk.GetArrayFromImage(image), (2, 1, 0)))


def intensities(volume: Volume) -> npt.NDArray[Any]:
    """The volume's voxels (no copy), refusing non-numeric data and NaN/inf voxels (they
    break every method here)."""
    arr = np.asarray(volume.array)
    if arr.dtype.kind not in "biuf":
        raise ConfigError(f"{volume.name}: expected numeric voxels, found dtype {arr.dtype}")
    volume.check_finite()
    return arr


def float_image(volume: Volume) -> npt.NDArray[np.floating[Any]]:
    """The voxels as floats: float32 when that holds them exactly (8/16-bit integers,
    float32), else float64."""
    arr = intensities(volume)
    exact32 = arr.dtype == np.float32 or (arr.dtype.kind in "biu" and arr.dtype.itemsize <= 2)
    return arr.astype(np.float32 if exact32 else np.float64, copy=False)


def mask_array(mask: MaskLike, volume: Volume, what: str = "mask") -> BoolArray | None:
    """``mask`` (a Volume/LabelMap on the volume's grid, or a boolean/integer array of its
    shape; non-zero = inside) as a boolean array, or None. Raises on a different grid or an
    empty mask."""
    if mask is None:
        return None
    if isinstance(mask, Volume):
        volume.check_same_grid(mask)
        arr = np.asarray(mask.array) != 0
    else:
        arr = np.asarray(mask) != 0
        if arr.shape != volume.shape:
            raise GeometryMismatchError(
                f"{what}: shape {arr.shape} does not match {volume.name} {volume.shape}"
            )
    if not arr.any():
        raise ConfigError(f"{what}: the mask is empty; expected at least one voxel inside")
    result: npt.NDArray[np.bool_] = arr
    return result


def seeds_to_voxels(
    volume: Volume, seeds_mm: Sequence[Sequence[float]]
) -> list[tuple[int, int, int]]:
    """Voxel indices of seed points given in RAS+ world coordinates (mm): the voxel whose
    centre is nearest. A seed outside the image raises :class:`ConfigError` naming it and the
    image's extent."""
    if len(seeds_mm) == 0:
        raise ConfigError("seeds: expected at least one seed point (x, y, z) in mm")
    out: list[tuple[int, int, int]] = []
    for seed in seeds_mm:
        p = np.asarray(seed, dtype=np.float64)
        if p.shape != (3,) or not np.all(np.isfinite(p)):
            raise ConfigError(f"seed {tuple(seed)}: expected three finite coordinates in mm")
        ijk = np.rint(volume.world_to_voxel(p)).astype(int)
        if np.any(ijk < 0) or np.any(ijk >= np.asarray(volume.shape)):
            lo = volume.voxel_to_world(np.zeros(3))
            hi = volume.voxel_to_world(np.asarray(volume.shape) - 1)
            box = ", ".join(
                f"{min(a, b):.1f}..{max(a, b):.1f}" for a, b in zip(lo, hi, strict=True)
            )
            raise ConfigError(
                f"seed ({', '.join(f'{v:g}' for v in p)}) mm lies outside {volume.name} "
                f"(voxel {tuple(int(v) for v in ijk)}, shape {volume.shape}; "
                f"RAS+ extent x, y, z: {box} mm)"
            )
        out.append((int(ijk[0]), int(ijk[1]), int(ijk[2])))
    return out


def check_window(lower: float | None, upper: float | None) -> tuple[float, float]:
    """``(lower, upper)`` with None as -inf/+inf; refuses lower > upper and NaN."""
    lo = -math.inf if lower is None else float(lower)
    hi = math.inf if upper is None else float(upper)
    if math.isnan(lo) or math.isnan(hi):
        raise ConfigError(f"threshold window: NaN bound ({lower}, {upper})")
    if lo > hi:
        raise ConfigError(f"threshold window: lower {lo:g} is above upper {hi:g}")
    if lower is None and upper is None:
        raise ConfigError("threshold window: give a lower bound, an upper bound or both")
    return lo, hi


def check_classes(classes: int, what: str = "classes") -> int:
    """``classes`` as an int if it is an integer in 2..255 (the labels are uint8)."""
    rng = RANGES["classes"]
    if not rng.contains(classes):
        raise ConfigError(f"{what}: expected {rng.describe()}, found {classes!r}")
    return int(classes)


def output_dtype(n_max: int) -> type[np.integer[Any]]:
    for dt in (np.uint8, np.uint16, np.uint32):
        if n_max <= np.iinfo(dt).max:
            return dt
    return np.int64


def make_label_map(
    volume: Volume,
    labels: npt.NDArray[Any],
    names: Mapping[int, str],
    method: str,
    **details: Any,
) -> LabelMap:
    """The output label map on the input's grid (same affine), smallest unsigned dtype, with
    label names and, in ``meta.extra``, the method and what it found (thresholds, ...)."""
    arr = np.asarray(labels)
    top = int(arr.max()) if arr.size else 0
    extra = {"method": method, **details}
    return LabelMap(
        arr.astype(output_dtype(top), copy=False),
        volume.affine,
        source=None,
        meta=VolumeMeta(extra=extra),
        label_names=dict(names),
    )


__all__ = [
    "check_classes",
    "check_window",
    "float_image",
    "from_sitk",
    "intensities",
    "make_label_map",
    "mask_array",
    "seeds_to_voxels",
    "to_sitk",
]
