"""What a file or folder holds, as plain records: :func:`describe` (what ``medseg info``
prints). Geometry in RAS+ mm; no patient identifiers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medseg.errors import MedsegError
from medseg.io import IMAGE_SUFFIXES, detect_format, read_volume
from medseg.io.atomic import full_suffix
from medseg.io.files import path_problem
from medseg.volume import Volume

FORMAT_NAMES = {
    "nifti": "NIfTI",
    "itk": "ITK (SimpleITK)",
    "dicom": "DICOM",
    "dicom-seg": "DICOM SEG",
}


def volume_summary(vol: Volume, *, with_range: bool = True) -> dict[str, Any]:
    """Plain record describing a volume's geometry and values (no patient identifiers)."""
    rec: dict[str, Any] = {
        "shape": list(vol.shape),
        "spacing_mm": [round(s, 6) for s in vol.spacing],
        "orientation": vol.orientation,
        "origin_ras_mm": [round(o, 4) for o in vol.origin],
        "direction": np.round(vol.direction, 6).tolist(),
        "dtype": str(vol.dtype),
    }
    if with_range and vol.array.size:
        rec["range"] = [float(np.nanmin(vol.array)), float(np.nanmax(vol.array))]
    rec.update(vol.meta.as_dict())
    return rec


def describe_file(path: Path, headers_only: bool = False) -> dict[str, Any]:
    """One volume file (or a DICOM file) as a plain record: format, geometry, range (unless
    ``headers_only``), the count of non-finite voxels."""
    fmt = detect_format(path)
    vol = read_volume(path, check_finite=False)
    rec: dict[str, Any] = {"path": str(path), "format": FORMAT_NAMES[fmt]}
    rec.update(volume_summary(vol, with_range=not headers_only))
    n_bad = int(np.count_nonzero(~np.isfinite(vol.array))) if vol.array.dtype.kind == "f" else 0
    if n_bad:
        rec["non_finite_voxels"] = n_bad
    return rec


def describe_folder(folder: Path, headers_only: bool = False) -> dict[str, Any]:
    """Scan a folder: DICOM series (read unless ``headers_only``), NIfTI/ITK files and the
    files skipped, as a plain record. ``n_unreadable`` counts the files that could not be
    read (corrupt, truncated, undecodable) and the series and volume files whose reading
    failed; series refused for their geometry are described, not counted."""
    from medseg.io.dicom import read_dicom, scan_dicom_folder

    scan = scan_dicom_folder(folder)
    n_unreadable = len(scan.unreadable)
    series: list[dict[str, Any]] = []
    for s in scan.series:
        rec: dict[str, Any] = {
            "index": s.index,
            "key": s.key,
            "series_number": s.series_number,
            "series_description": s.description,
            "modality": s.modality,
            "n_slices": s.n_slices,
            "transfer_syntax": s.transfer_syntax,
            "series_uid": None if s.series_uid.startswith("nouid:") else s.series_uid,
            "format": "DICOM",
        }
        if s.shape is not None:
            rec["shape"] = list(s.shape)
        if s.spacing is not None:
            rec["spacing_mm"] = [round(v, 6) for v in s.spacing]
        if s.orientation is not None:
            rec["orientation"] = s.orientation
        if s.problem is not None:
            rec["problem"] = s.problem
        elif not headers_only:
            try:
                vol = read_dicom(folder, series=s.index, scan=scan)
                rec.update(volume_summary(vol))
            except MedsegError as exc:
                rec["problem"] = str(exc)
                n_unreadable += 1
        series.append(rec)
    volumes: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    for path, reason in scan.skipped:
        if full_suffix(path) in IMAGE_SUFFIXES and path_problem(path) is None:
            try:
                volumes.append(describe_file(path, headers_only))
            except MedsegError as exc:
                skipped.append({"path": str(path), "reason": str(exc)})
                n_unreadable += 1
        else:
            skipped.append({"path": str(path), "reason": reason})
    return {
        "path": str(folder),
        "dicom_series": series,
        "volumes": volumes,
        "skipped": skipped,
        "n_unreadable": n_unreadable,
    }


def describe(path: str | Path, *, headers_only: bool = False) -> dict[str, Any]:
    """What ``path`` holds: a file's record (:func:`describe_file`), or a folder's
    (:func:`describe_folder`: ``dicom_series``, ``volumes``, ``skipped``, ``n_unreadable``)."""
    p = Path(path)
    return describe_folder(p, headers_only) if p.is_dir() else describe_file(p, headers_only)


__all__ = ["FORMAT_NAMES", "describe", "describe_file", "describe_folder", "volume_summary"]
