"""The source side of a DICOM SEG (see :mod:`medseg.io.dicom.seg`): which series it is
derived from, whether the label map lies on that series' grid, the source headers prepared
for highdicom, and the SEG's pixel measures and geometry checked against the source grid."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medseg.errors import DicomSeriesError, InputError
from medseg.io.dicom.series import SeriesInfo
from medseg.volume import GRID_ATOL_MM, LPS_TO_RAS, LabelMap

#: Type 2 attributes of the patient/study modules highdicom copies from the source.
_TYPE2 = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
)


def resolve_source(source: str | Path | SeriesInfo, series: str | int | None) -> SeriesInfo:
    if isinstance(source, SeriesInfo):
        info = source
    else:
        from medseg.io.dicom import _cached_scan, select_series

        root = Path(source)
        info = select_series(_cached_scan(root), series)
    if info.problem is not None or info.affine is None or info.shape is None:
        raise DicomSeriesError(
            info.files[0] if info.files else None,
            f"source series [{info.index}] {info.key} is not a volume: {info.problem}",
        )
    if any(h.mosaic for h in info.frames):
        raise DicomSeriesError(
            info.files[0], "source is a Siemens mosaic: a DICOM SEG cannot reference its slices"
        )
    return info


def check_grid(seg: LabelMap, info: SeriesInfo) -> None:
    assert info.affine is not None and info.shape is not None
    where = f"DICOM series [{info.index}] #{info.series_number} ({len(info.files)} files)"
    if seg.shape != info.shape:
        raise InputError(
            seg.source,
            f"label map shape {seg.shape} differs from the source {where} grid {info.shape}; "
            "a DICOM SEG must lie on its source series' own grid (resample it there first)",
        )
    diff = float(np.max(np.abs(seg.affine - info.affine)))
    if diff > GRID_ATOL_MM:
        raise InputError(
            seg.source,
            f"label map affine differs from the source {where} grid by up to {diff:.4g} mm "
            f"(tolerance {GRID_ATOL_MM:g} mm); a DICOM SEG must lie on its source series' own "
            "grid (same orientation, spacing and origin as read_dicom returns)",
        )


def source_datasets(info: SeriesInfo) -> tuple[list[Any], NDArray[Any] | None, bool]:
    """Source headers for highdicom; for a multi-frame source the file frame index of each
    slice (``None`` for single-frame slices, which are passed in slice order); and whether
    the multi-frame file repeats positions (several volumes in one file, e.g. magnitude and
    field map: then the SEG is built on the volume's own positions, see
    :func:`plane_positions` and :func:`keep_volume_references`).

    The headers are in-memory copies prepared for highdicom: empty Type 2 patient/study
    attributes added where absent, a missing SliceThickness set to the slice spacing, and
    for an enhanced multi-frame file whose orientation and pixel measures are recorded per
    frame only, those of the volume's first frame put into its shared functional groups
    (medseg's reader has checked that every frame of the volume has the same). The files are
    never written.
    """
    import pydicom

    files = {h.path for h in info.frames}
    multi = any(h.frame is not None for h in info.frames)
    if multi and len(files) != 1:
        raise DicomSeriesError(
            info.files[0],
            f"the volume's frames come from {len(files)} multi-frame files; a DICOM SEG can "
            "reference one multi-frame source image or a series of single-frame images",
        )
    paths = [info.frames[0].path] if multi else [h.path for h in info.frames]
    datasets = []
    repeated = False
    for p in paths:
        try:
            ds = pydicom.dcmread(p, stop_before_pixels=True)
        except Exception as exc:
            raise InputError(p, f"cannot read the DICOM header again ({exc})") from exc
        _check_source_uids(p, ds)
        for kw in _TYPE2:
            if kw not in ds:
                setattr(ds, kw, "")
        if multi:
            repeated = _positions_repeat(ds)
            _share_plane_groups(ds, info.frames[0].frame or 0)
        elif not ds.get("SliceThickness"):
            ds.SliceThickness = _ds_value(_slice_spacing(info))
        datasets.append(ds)
    frame_index = np.array([h.frame for h in info.frames]) if multi else None
    return datasets, frame_index, repeated


def _check_source_uids(path: Path, ds: Any) -> None:
    """Refuse a source a valid SEG cannot be derived from: UIDs missing, or its Study
    Instance UID equal to its Frame of Reference UID (the SEG must copy both, and a UID
    names one thing only: dciodvfy rejects the SEG, as it rejects the source)."""
    missing = [kw for kw in ("StudyInstanceUID", "SOPInstanceUID", "SOPClassUID") if not ds.get(kw)]
    if not ds.get("FrameOfReferenceUID"):
        missing.append("FrameOfReferenceUID")
    if missing:
        raise InputError(
            path,
            f"source image lacks {', '.join(missing)} (removed by anonymisation?); a DICOM "
            "SEG must reference its source study, images and frame of reference",
        )
    if str(ds.StudyInstanceUID) == str(ds.FrameOfReferenceUID):
        raise InputError(
            path,
            f"source image has the same UID {ds.StudyInstanceUID} as StudyInstanceUID and "
            "FrameOfReferenceUID (invalid DICOM: each UID names one thing); a DICOM SEG must "
            "copy both, so it would be invalid too",
        )


def _positions_repeat(ds: Any) -> bool:
    """Whether frames of the multi-frame ``ds`` share positions (another image type or time
    point of the same slices in the same file)."""
    positions = set()
    for fg in ds.get("PerFrameFunctionalGroupsSequence", []):
        plane = fg.get("PlanePositionSequence")
        if plane:
            positions.add(tuple(round(float(v), 4) for v in plane[0].ImagePositionPatient))
    return len(positions) < int(ds.get("NumberOfFrames", 1))


def plane_positions(info: SeriesInfo) -> list[Any]:
    """highdicom Plane Position items of the volume's slices, in slice order (LPS mm)."""
    import highdicom as hd

    out = []
    for h in info.frames:
        assert h.ipp is not None
        out.append(hd.PlanePositionSequence(hd.CoordinateSystemNames.PATIENT, h.ipp))
    return out


def keep_volume_references(obj: Any, info: SeriesInfo) -> None:
    """Make each SEG frame derive from its own slice's frame only. (Given positions,
    highdicom references every source frame at a frame's position: in a file holding two
    volumes at the same positions, also the other volume's frame.)"""
    assert info.affine is not None
    lps = LPS_TO_RAS @ info.affine
    inv = np.linalg.inv(lps[:3, :3])
    for item in obj.PerFrameFunctionalGroupsSequence:
        ipp = np.array(item.PlanePositionSequence[0].ImagePositionPatient, dtype=float)
        k = int(np.rint(((ipp - lps[:3, 3]) @ inv.T)[2]))
        own = (info.frames[k].frame or 0) + 1
        for derivation in item.DerivationImageSequence:
            keep = [
                s for s in derivation.SourceImageSequence if int(s.ReferencedFrameNumber) == own
            ]
            if not keep:
                raise InputError(
                    info.files[0], f"no source frame {own} referenced at slice {k} of the SEG"
                )
            derivation.SourceImageSequence = keep


def _share_plane_groups(ds: Any, frame: int) -> None:
    """Put the Plane Orientation and Pixel Measures of per-frame group ``frame`` into the
    shared functional groups of ``ds`` where these hold none (highdicom reads them there)."""
    from pydicom.dataset import Dataset

    if "SharedFunctionalGroupsSequence" not in ds or not ds.SharedFunctionalGroupsSequence:
        ds.SharedFunctionalGroupsSequence = [Dataset()]
    shared = ds.SharedFunctionalGroupsSequence[0]
    per_frame = ds.PerFrameFunctionalGroupsSequence[frame]
    for kw in ("PlaneOrientationSequence", "PixelMeasuresSequence"):
        if kw not in shared and kw in per_frame:
            setattr(shared, kw, getattr(per_frame, kw))


def _slice_spacing(info: SeriesInfo) -> float:
    """Distance (mm) between slice centres of the grid medseg reads the series on: the
    length of the affine's slice column (for one slice: SpacingBetweenSlices, else
    SliceThickness, else 1 mm, as :func:`~medseg.io.dicom.read_dicom` documents)."""
    assert info.affine is not None
    return float(np.linalg.norm(info.affine[:3, 2]))


def _ds_value(value: float) -> str:
    """``value`` as a DS string (at most 16 characters, as exact as that allows)."""
    from pydicom.valuerep import format_number_as_ds

    return str(format_number_as_ds(float(value)))


def set_pixel_measures(obj: Any, info: SeriesInfo) -> None:
    """Give the SEG the pixel measures of its source grid exactly: PixelSpacing and
    SliceThickness as the source records them (SliceThickness: the slice spacing where the
    source has none), SpacingBetweenSlices the distance between slice centres medseg reads
    the series with. (highdicom writes a guessed 1 mm for a one-slice source without
    SpacingBetweenSlices; a reader then gives the SEG another volume than the source.)"""
    first = info.frames[0]
    measures = obj.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    assert first.pixel_spacing is not None
    measures.PixelSpacing = [_ds_value(v) for v in first.pixel_spacing]
    measures.SliceThickness = _ds_value(first.slice_thickness or _slice_spacing(info))
    measures.SpacingBetweenSlices = _ds_value(_slice_spacing(info))


def geometry_problem(obj: Any, info: SeriesInfo) -> str | None:
    """Why the SEG's spatial attributes do not describe the source grid exactly (``None``
    when they do): orientation x pixel spacing and normal x SpacingBetweenSlices must be the
    affine's columns, and every frame's position a slice centre of the grid (within
    :data:`~medseg.volume.GRID_ATOL_MM`)."""
    assert info.affine is not None and info.shape is not None
    shared = obj.SharedFunctionalGroupsSequence[0]
    iop = np.array(shared.PlaneOrientationSequence[0].ImageOrientationPatient, dtype=float)
    measures = shared.PixelMeasuresSequence[0]
    dr, dc = (float(v) for v in measures.PixelSpacing)
    step = float(measures.SpacingBetweenSlices)
    row, col = iop[:3], iop[3:]
    lps = LPS_TO_RAS @ info.affine
    implied = np.column_stack([row * dc, col * dr, np.cross(row, col) * step])
    diff = float(np.max(np.abs(implied - lps[:3, :3])))
    if diff > GRID_ATOL_MM:
        return f"orientation and pixel measures differ from the source grid by {diff:.3g} mm"
    ipp = np.array(
        [
            f.PlanePositionSequence[0].ImagePositionPatient
            for f in obj.PerFrameFunctionalGroupsSequence
        ],
        dtype=float,
    )
    ijk = (ipp - lps[:3, 3]) @ np.linalg.inv(lps[:3, :3]).T
    k = np.rint(ijk[:, 2])
    off = np.abs(ijk - np.column_stack([np.zeros((len(k), 2)), k])) * np.linalg.norm(
        lps[:3, :3], axis=0
    )
    if off.size and float(off.max()) > GRID_ATOL_MM:
        return f"a frame position lies {float(off.max()):.3g} mm off the source slices"
    if k.size and (k.min() < 0 or k.max() >= info.shape[2]):
        return "a frame position lies outside the source slices"
    return None


__all__ = [
    "check_grid",
    "geometry_problem",
    "keep_volume_references",
    "plane_positions",
    "resolve_source",
    "set_pixel_measures",
    "source_datasets",
]
