"""Other ITK formats (``.nrrd``, ``.nhdr``, ``.mha``, ``.mhd``) through SimpleITK.

SimpleITK is imported lazily: it is needed only for these formats. ITK stores geometry in
LPS+; it is converted to medseg's RAS+ here and nowhere else. ITK's array is ``(z, y, x)``;
it is transposed to medseg's ``(i, j, k)`` index order.

String key/value fields of a NRRD header (``key:=value``) are written from ``metadata`` and,
when they describe a 3D Slicer segmentation (:mod:`medseg.io.slicer`), their label names are
read back into ``meta.extra["label_names"]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medseg.errors import InputError, InvalidVolumeError, OutputError
from medseg.io.atomic import atomic_files, atomic_path
from medseg.volume import LPS_TO_RAS, Volume, VolumeMeta


def _sitk() -> Any:
    import SimpleITK as sitk

    return sitk


def itk_geometry_to_affine(
    spacing: tuple[float, ...], origin: tuple[float, ...], direction: tuple[float, ...]
) -> NDArray[Any]:
    """RAS+ affine from ITK's LPS+ spacing, origin and row-major direction."""
    d = np.asarray(direction, dtype=np.float64).reshape(3, 3)
    aff = np.eye(4)
    aff[:3, :3] = d * np.asarray(spacing, dtype=np.float64)[None, :]
    aff[:3, 3] = origin
    return LPS_TO_RAS @ aff


def affine_to_itk_geometry(
    affine: NDArray[Any],
) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
    """ITK (spacing, origin, row-major direction) in LPS+ from a RAS+ affine."""
    lps = LPS_TO_RAS @ np.asarray(affine, dtype=np.float64)
    sp = np.linalg.norm(lps[:3, :3], axis=0)
    d = lps[:3, :3] / sp[None, :]
    return (
        tuple(float(s) for s in sp),
        tuple(float(o) for o in lps[:3, 3]),
        tuple(float(v) for v in d.reshape(-1)),
    )


def read_itk(path: str | Path, channel: int | None = None) -> Volume:
    """Read a 3-D image in an ITK format; vector images need ``channel``."""
    p = Path(path)
    if not p.exists():
        raise InputError(p, "file not found")
    sitk = _sitk()
    try:
        img = sitk.ReadImage(str(p))
    except RuntimeError as exc:
        lines = str(exc).strip().splitlines()
        default = lines[-1] if lines else ""
        reason = next((ln for ln in lines if "error" in ln.lower()), default)
        raise InputError(p, f"SimpleITK could not read the file: {reason.strip()}") from exc
    if img.GetDimension() == 4:
        raise InvalidVolumeError(p, f"4-D image of size {img.GetSize()}; expected 3-D")
    if img.GetDimension() != 3:
        raise InvalidVolumeError(
            p, f"{img.GetDimension()}-D image of size {img.GetSize()}; expected 3-D"
        )
    arr = sitk.GetArrayFromImage(img)  # (z, y, x[, c])
    extra: dict[str, object] = {}
    ncomp = img.GetNumberOfComponentsPerPixel()
    if ncomp > 1:
        if channel is None:
            raise InvalidVolumeError(
                p, f"vector image with {ncomp} components per voxel; choose one with channel=K"
            )
        if not 0 <= channel < ncomp:
            raise InvalidVolumeError(p, f"channel {channel} out of range: file has {ncomp}")
        arr = arr[..., channel]
        extra["channel"] = channel
    data = np.ascontiguousarray(np.transpose(arr, (2, 1, 0)))
    if img.HasMetaDataKey("Segment0_LabelValue"):
        from medseg.io.slicer import label_names_from_fields

        fields = {k: img.GetMetaData(k) for k in img.GetMetaDataKeys() if k.startswith("Segment")}
        names = label_names_from_fields(fields)
        if names is not None:
            extra["label_names"] = names
    affine = itk_geometry_to_affine(img.GetSpacing(), img.GetOrigin(), img.GetDirection())
    return Volume(data, affine, p, VolumeMeta(extra=extra))


def write_itk(
    volume: Volume,
    path: str | Path,
    overwrite: bool = False,
    *,
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write ``volume`` in the ITK format named by the suffix of ``path``, atomically;
    ``metadata`` becomes string fields of the header (NRRD ``key:=value`` lines)."""
    sitk = _sitk()
    arr = volume.array
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8)
    img = sitk.GetImageFromArray(np.ascontiguousarray(np.transpose(arr, (2, 1, 0))))
    spacing, origin, direction = affine_to_itk_geometry(volume.affine)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    img.SetDirection(direction)
    for key, value in (metadata or {}).items():
        img.SetMetaData(key, value)
    target = Path(path)
    try:
        if target.name.lower().endswith(".mhd"):
            _write_mhd(sitk, img, target, overwrite)
        else:
            with atomic_path(target, overwrite) as tmp:
                sitk.WriteImage(img, str(tmp), True)
    except RuntimeError as exc:  # SimpleITK reports write failures (disk full, ...) this way
        lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
        reason = next((ln for ln in lines if "error" in ln.lower()), lines[-1] if lines else "")
        raise OutputError(target, f"SimpleITK could not write the file: {reason}") from exc
    return target


def _write_mhd(sitk: Any, img: Any, target: Path, overwrite: bool) -> None:
    """``.mhd`` keeps voxels in a separate file named inside the header (``.zraw``): both are
    written under their final names in a temporary folder beside the target and moved by
    :func:`~medseg.io.atomic.atomic_files` (data file first, header last; an existing data
    file is refused like the header unless ``overwrite``)."""
    with atomic_files(target, overwrite) as tmpdir:
        sitk.WriteImage(img, str(tmpdir / target.name), True)
