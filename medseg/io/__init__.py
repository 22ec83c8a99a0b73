"""Reading and writing volumes: one reader per format, chosen by path, no silent fallback.

=================  ==========================  ===========================
format             suffixes                    backend
=================  ==========================  ===========================
NIfTI              ``.nii``, ``.nii.gz``        nibabel
ITK formats        ``.nrrd``, ``.mha``, ``.mhd``  SimpleITK (imported lazily)
DICOM              a folder, or ``.dcm`` / files with the ``DICM`` preamble  pydicom
=================  ==========================  ===========================

All readers return a :class:`~medseg.volume.Volume` in medseg's conventions (array in voxel
index order, RAS+ affine in mm). Writers write atomically and refuse to overwrite unless asked.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from medseg.errors import InputError, UnsupportedFormatError
from medseg.io.atomic import full_suffix
from medseg.io.files import path_problem
from medseg.volume import LabelMap, Volume

NIFTI_SUFFIXES = (".nii", ".nii.gz")
ITK_SUFFIXES = (".nrrd", ".mha", ".mhd")
WRITE_SUFFIXES = NIFTI_SUFFIXES + ITK_SUFFIXES


def detect_format(path: str | Path) -> str:
    """Return ``"nifti"``, ``"itk"`` or ``"dicom"`` for ``path``, or raise
    :class:`UnsupportedFormatError` / :class:`InputError` (missing path, dangling link, FIFO
    or other non-regular file: such paths are never opened)."""
    p = Path(path)
    problem = path_problem(p, allow_dir=True)
    if problem is not None:
        raise InputError(p, problem)
    if p.is_dir():
        return "dicom"
    suffix = full_suffix(p)
    if suffix in NIFTI_SUFFIXES:
        return "nifti"
    if suffix in ITK_SUFFIXES:
        return "itk"
    from medseg.io.dicom import is_dicom_file

    if suffix in (".dcm", ".dicom", ".ima", "") or is_dicom_file(p):
        if is_dicom_file(p):
            return "dicom"
        raise InputError(p, "expected a DICOM file (128-byte preamble + 'DICM'), found other data")
    raise UnsupportedFormatError(
        p,
        f"unsupported format '{suffix}'; expected NIfTI (.nii, .nii.gz), "
        "NRRD/MetaImage (.nrrd, .mha, .mhd) or DICOM (a folder or .dcm file)",
    )


def read_volume(
    path: str | Path,
    *,
    channel: int | None = None,
    series: str | int | None = None,
    check_finite: bool = True,
) -> Volume:
    """Read one 3-D volume from a NIfTI/ITK file, a DICOM file or a DICOM folder.

    Args:
        path: file or DICOM folder (searched recursively).
        channel: for 4-D NIfTI / vector ITK images, the volume to take.
        series: for DICOM folders holding several series, which one (index or key as listed
            by ``medseg info``). Required when the folder holds more than one.
        check_finite: refuse volumes with NaN or infinite voxels.
    """
    fmt = detect_format(path)
    vol: Volume
    if fmt == "nifti":
        from medseg.io.nifti import read_nifti

        vol = read_nifti(path, channel=channel)
    elif fmt == "itk":
        from medseg.io.itk import read_itk

        vol = read_itk(path, channel=channel)
    else:
        from medseg.io.dicom import read_dicom

        vol = read_dicom(path, series=series)
    if check_finite:
        vol.check_finite()
    return vol


def read_label_map(
    path: str | Path,
    label_names: Mapping[int, str] | None = None,
    *,
    series: str | int | None = None,
) -> LabelMap:
    """Read a label map (integer voxels; integral floats accepted, others refused)."""
    return LabelMap.from_volume(read_volume(path, series=series), label_names)


def write_volume(volume: Volume, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write ``volume`` (NIfTI or ITK format by suffix) atomically."""
    p = Path(path)
    suffix = full_suffix(p)
    if suffix in NIFTI_SUFFIXES:
        from medseg.io.nifti import write_nifti

        return write_nifti(volume, p, overwrite=overwrite)
    if suffix in ITK_SUFFIXES:
        from medseg.io.itk import write_itk

        return write_itk(volume, p, overwrite=overwrite)
    raise UnsupportedFormatError(
        p, f"cannot write '{suffix or p.name}'; expected one of {', '.join(WRITE_SUFFIXES)}"
    )


__all__ = ["detect_format", "read_label_map", "read_volume", "write_volume"]
