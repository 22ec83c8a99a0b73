"""Reading and writing volumes: one reader per format, chosen by path, no silent fallback.

=================  ==========================  ===========================
format             suffixes                    backend
=================  ==========================  ===========================
NIfTI              ``.nii``, ``.nii.gz``        nibabel
ITK formats        ``.nrrd``, ``.mha``, ``.mhd``  SimpleITK (imported lazily)
DICOM              a folder, or ``.dcm`` / files with the ``DICM`` preamble  pydicom
DICOM SEG          a Segmentation file (SOP classes ...66.4 / ...66.7)     highdicom
=================  ==========================  ===========================

All readers return a :class:`~medseg.volume.Volume` in medseg's conventions (array in voxel
index order, RAS+ affine in mm); a DICOM SEG file is read as a :class:`~medseg.volume.LabelMap`
(:func:`medseg.io.dicom.seg.read_dicom_seg`). Label names stored in a file (medseg's NIfTI
label extension, 3D Slicer segment fields, DICOM SEG segments) are kept in
``meta.extra["label_names"]`` and used by :func:`read_label_map`. Writers write atomically and
refuse to overwrite unless asked; segmentations with their label tables are written by
:func:`medseg.io.segmentation.write_segmentation`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from medseg.errors import InputError, UnsupportedFormatError
from medseg.io.atomic import full_suffix
from medseg.io.files import path_problem
from medseg.volume import LabelMap, Volume

if TYPE_CHECKING:
    from medseg.io.labels import LabelInfo

NIFTI_SUFFIXES = (".nii", ".nii.gz")
ITK_SUFFIXES = (".nrrd", ".mha", ".mhd")
#: Suffixes of image files that hold one volume each (read and written by suffix).
IMAGE_SUFFIXES = NIFTI_SUFFIXES + ITK_SUFFIXES
WRITE_SUFFIXES = IMAGE_SUFFIXES


def detect_format(path: str | Path) -> str:
    """Return ``"nifti"``, ``"itk"``, ``"dicom"`` or ``"dicom-seg"`` for ``path``, or raise
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
            from medseg.io.dicom.seg import is_dicom_seg

            return "dicom-seg" if is_dicom_seg(p) else "dicom"
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
    """Read one 3-D volume from a NIfTI/ITK file, a DICOM file or a DICOM folder; a DICOM SEG
    file gives a :class:`LabelMap`.

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
    elif fmt == "dicom-seg":
        from medseg.io.dicom.seg import read_dicom_seg

        vol = read_dicom_seg(path)
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
    """Read a label map (integer voxels; integral floats accepted, others refused).

    ``label_names`` default to the names stored in the file, if any (see the module docstring).
    """
    vol = read_volume(path, series=series)
    if label_names is None:
        stored = vol.meta.extra.get("label_names")
        label_names = stored if isinstance(stored, Mapping) else None
    return LabelMap.from_volume(vol, label_names)


def write_volume(
    volume: Volume,
    path: str | Path,
    *,
    overwrite: bool = False,
    label_table: Sequence[LabelInfo] | None = None,
) -> Path:
    """Write ``volume`` (NIfTI or ITK format by suffix) atomically.

    ``label_table`` (for label maps) goes into the file: NIfTI label intent + comment
    extension, or 3D Slicer segmentation fields in a ``.nrrd`` header; other formats refuse
    it. A :class:`~medseg.volume.LabelMap` is one writer's job: without ``label_table`` its
    own table (its label names and the values present) goes into NIfTI and NRRD files; a
    ``.mha``/``.mhd`` file keeps the values only.
    """
    p = Path(path)
    suffix = full_suffix(p)
    labelled = suffix in NIFTI_SUFFIXES or suffix == ".nrrd"
    if label_table is None and isinstance(volume, LabelMap) and labelled:
        from medseg.io.labels import build_label_table

        label_table = build_label_table(volume.label_names, volume.labels_present())
    if suffix in NIFTI_SUFFIXES:
        from medseg.io.nifti import write_nifti

        return write_nifti(volume, p, overwrite=overwrite, label_table=label_table)
    if suffix in ITK_SUFFIXES:
        from medseg.io.itk import write_itk

        fields = None
        if label_table is not None:
            if suffix != ".nrrd":
                raise UnsupportedFormatError(
                    p, f"label tables are stored in NIfTI and NRRD files, not '{suffix}'"
                )
            from medseg.io.slicer import segmentation_fields

            fields = segmentation_fields(label_table, volume.array)
        return write_itk(volume, p, overwrite=overwrite, metadata=fields)
    raise UnsupportedFormatError(
        p, f"cannot write '{suffix or p.name}'; expected one of {', '.join(WRITE_SUFFIXES)}"
    )


__all__ = ["detect_format", "read_label_map", "read_volume", "write_volume"]
