"""Writing a segmentation in the format a user asks for, with its label names and colours.

:func:`write_segmentation` is the one entry point: a :class:`~medseg.volume.LabelMap` on the
scan's grid goes to

==================  =======================================================================
format              file
==================  =======================================================================
``"nii.gz"``/``nii``  NIfTI label image (intent LABEL) with the label table in a comment
                    extension (:mod:`medseg.io.nifti`); written by :func:`write_volume`
``"nrrd"``,         a 3D Slicer segmentation: NRRD label image (LPS header) with Slicer's
``"seg.nrrd"``      segment fields (names, colours, label values, terminology;
                    :mod:`medseg.io.slicer`); written by :func:`write_volume`
``"dicom-seg"``     a DICOM Segmentation object of the source series
                    (:mod:`medseg.io.dicom.seg`, highdicom)
==================  =======================================================================

and always a ``labels.json`` beside it (:func:`medseg.io.labels.write_label_table`; shared by
all outputs of a folder). Geometry is the label map's own: nothing is reoriented or resampled.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from medseg.errors import ConfigError, InputError, UnsupportedFormatError
from medseg.io.atomic import full_suffix
from medseg.io.dicom.series import SeriesInfo
from medseg.io.labels import LabelInfo, build_label_table, write_label_table
from medseg.volume import LabelMap

FORMATS = ("nii.gz", "nii", "nrrd", "seg.nrrd", "dicom-seg")
LABEL_TABLE_NAME = "labels.json"


@dataclass(frozen=True)
class WrittenSegmentation:
    """What :func:`write_segmentation` wrote.

    Attributes:
        path: the segmentation file.
        format: one of :data:`FORMATS`.
        label_table: the ``labels.json`` beside it (``None`` when the caller writes it).
        labels: label values described in the file (the whole table; for ``dicom-seg`` the
            non-empty ones, which became segments).
        empty_labels: label values of the table with no voxel (left out of a DICOM SEG,
            kept, empty, in the other formats).
        notes: anything adjusted on the way.
    """

    path: Path
    format: str
    label_table: Path | None
    labels: tuple[int, ...]
    empty_labels: tuple[int, ...]
    notes: tuple[str, ...] = ()


def format_from_path(path: str | Path) -> str:
    """Output format named by the suffix: ``.nii.gz``, ``.nii``, ``.seg.nrrd``, ``.nrrd``,
    ``.dcm`` (→ ``dicom-seg``)."""
    p = Path(path)
    name = p.name.lower()
    if name.endswith(".seg.nrrd"):
        return "seg.nrrd"
    suffix = full_suffix(p)
    by_suffix = {".nii.gz": "nii.gz", ".nii": "nii", ".nrrd": "nrrd", ".dcm": "dicom-seg"}
    if suffix in by_suffix:
        return by_suffix[suffix]
    raise UnsupportedFormatError(
        p,
        f"cannot tell the segmentation format from '{p.name}'; use a .nii.gz, .nii, .nrrd, "
        ".seg.nrrd or .dcm name, or pass format= one of " + ", ".join(FORMATS),
    )


def write_segmentation(
    seg: LabelMap,
    path: str | Path,
    *,
    format: str | None = None,
    source: str | Path | SeriesInfo | None = None,
    series: str | int | None = None,
    encoding: str = "binary",
    colors: Mapping[int, Sequence[int]] | None = None,
    label_table: Sequence[LabelInfo] | None = None,
    table_name: str | None = LABEL_TABLE_NAME,
    overwrite: bool = False,
    **dicom_options: object,
) -> WrittenSegmentation:
    """Write ``seg`` to ``path`` with its label table inside (where the format allows) and
    in ``labels.json`` beside it.

    Args:
        seg: the segmentation, on the grid it should overlay (for ``dicom-seg``: its source
            series' grid).
        path: output file; its folder is created.
        format: one of :data:`FORMATS`; default from the suffix (:func:`format_from_path`).
        source, series: for ``dicom-seg``, the DICOM folder/file (or ``SeriesInfo``) and the
            series the segmentation was made from (see :func:`write_dicom_seg`).
        encoding: ``dicom-seg`` only: ``"binary"`` (default) or ``"labelmap"``.
        colors: sRGB 0–255 overrides per label value.
        label_table: a ready table (default: built from ``seg.label_names`` and the values
            present; see :func:`build_label_table`).
        table_name: the file name of the table beside the output (``labels.json``, shared by
            the segmentations of one model in one folder; a single output of its own may use
            e.g. ``<name>.labels.json``); ``None``: none (the caller writes the folder's
            table once, e.g. :func:`~medseg.inference.batch.predict_folder`).
        overwrite: replace existing outputs (and a different ``labels.json``).
        dicom_options: further keywords of :func:`write_dicom_seg` (series_number,
            series_description, algorithm_name, algorithm_version).

    Returns:
        :class:`WrittenSegmentation`.
    """
    from medseg.io import write_volume

    p = Path(path)
    fmt = format if format is not None else format_from_path(p)
    if fmt not in FORMATS:
        raise UnsupportedFormatError(p, f"unknown format '{fmt}'; expected one of {FORMATS}")
    present = seg.labels_present()
    table = (
        tuple(label_table)
        if label_table is not None
        else build_label_table(seg.label_names, present, colors)
    )
    missing = sorted(set(present) - {i.value for i in table})
    if missing:
        raise InputError(seg.source, f"label values {missing} are not in the label table")
    empty = tuple(i.value for i in table if i.value not in set(present))
    labels = tuple(i.value for i in table)
    notes: tuple[str, ...] = ()
    if fmt != "dicom-seg" and (source is not None or dicom_options):
        raise ConfigError(
            f"format {fmt!r}: source/series and DICOM options apply to format 'dicom-seg' only"
        )
    if fmt == "dicom-seg":
        if source is None:
            raise ConfigError("format 'dicom-seg' needs source= (the DICOM series segmented)")
        from medseg.io.dicom.seg import write_dicom_seg

        res = write_dicom_seg(
            seg,
            p,
            source,
            series=series,
            label_table=table,
            encoding=encoding,
            overwrite=overwrite,
            **dicom_options,  # type: ignore[arg-type]
        )
        labels, notes = res.segments, res.notes
    else:
        target = _with_suffix(p, fmt)
        write_volume(seg, target, overwrite=overwrite, label_table=table)
        p = target
    background = seg.label_names.get(0, "background")
    lt = None
    if table_name is not None:
        lt = write_label_table(
            table, p.parent / table_name, background=background, overwrite=overwrite
        )
    return WrittenSegmentation(p, fmt, lt, labels, empty, notes)


def _with_suffix(p: Path, fmt: str) -> Path:
    """``p`` itself when its suffix matches ``fmt``; refuse a contradicting suffix."""
    try:
        by_name = format_from_path(p)
    except UnsupportedFormatError:
        return p.with_name(p.name + "." + fmt)
    compatible = by_name == fmt or {by_name, fmt} == {"nrrd", "seg.nrrd"}
    if not compatible:
        raise UnsupportedFormatError(p, f"file name suffix says '{by_name}', format='{fmt}'")
    return p


__all__ = ["FORMATS", "WrittenSegmentation", "format_from_path", "write_segmentation"]
