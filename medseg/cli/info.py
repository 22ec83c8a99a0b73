"""``medseg info PATH``: what a file or folder holds, with its geometry."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from medseg.errors import InputError, MedsegError
from medseg.io import IMAGE_SUFFIXES, detect_format, read_volume
from medseg.io.atomic import full_suffix
from medseg.io.files import path_problem
from medseg.volume import Volume

_FORMAT_NAMES = {
    "nifti": "NIfTI",
    "itk": "ITK (SimpleITK)",
    "dicom": "DICOM",
    "dicom-seg": "DICOM SEG",
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "info",
        help="describe the volumes / DICOM series in a file or folder",
        description="Print, for a file or a folder (searched recursively), each volume or DICOM "
        "series found: shape, spacing, orientation code, origin, dtype, intensity range and "
        "modality; for folders also the files skipped and why. World coordinates are RAS+ mm; "
        "orientation codes name the direction each array axis points to.",
    )
    p.add_argument("path", type=Path, help="NIfTI/NRRD/MHA file, DICOM file, or folder")
    p.add_argument("--json", action="store_true", help="print one JSON document instead")
    p.add_argument(
        "--headers-only",
        action="store_true",
        help="do not decode voxels (no intensity range); much faster on large folders",
    )
    p.set_defaults(func=run)


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


def _fmt(v: float) -> str:
    return f"{v:.6g}"


def _join(rec: dict[str, Any], key: str, sep: str) -> str | None:
    values = rec.get(key)
    return sep.join(_fmt(v) for v in values) if values else None


def _print_record(title: str, rec: dict[str, Any]) -> None:
    print(title)
    if "problem" in rec:
        print(f"  NOT READABLE  {rec['problem']}")
    rows = [
        ("format", rec.get("format")),
        ("shape", _join(rec, "shape", " x ")),
        ("spacing (mm)", _join(rec, "spacing_mm", " x ")),
        ("orientation", rec.get("orientation")),
        ("origin (RAS mm)", _join(rec, "origin_ras_mm", ", ")),
        ("dtype", rec.get("dtype")),
        ("range", _join(rec, "range", " .. ")),
        ("modality", rec.get("modality")),
        ("description", rec.get("series_description")),
        ("slices", rec.get("n_slices")),
        ("transfer syntax", rec.get("transfer_syntax")),
        ("series UID", rec.get("series_uid")),
    ]
    for name, value in rows:
        if value is not None:
            print(f"  {name:<18}{value}")


def _file_record(path: Path, headers_only: bool) -> dict[str, Any]:
    fmt = detect_format(path)
    vol = read_volume(path, check_finite=False)
    rec: dict[str, Any] = {"path": str(path), "format": _FORMAT_NAMES[fmt]}
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
                volumes.append(_file_record(path, headers_only))
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


def run(args: argparse.Namespace) -> int:
    path: Path = args.path
    if not path.is_dir():
        rec = _file_record(path, args.headers_only)
        if args.json:
            print(json.dumps(rec, indent=2))
        else:
            _print_record(str(path), rec)
        return 0
    out = describe_folder(path, args.headers_only)
    if args.json:
        print(json.dumps(out, indent=2))
        return 1 if out["n_unreadable"] else 0
    n_ok = sum("problem" not in s for s in out["dicom_series"])
    print(
        f"{path}: {len(out['dicom_series'])} DICOM series ({n_ok} readable as volumes), "
        f"{len(out['volumes'])} other volume file(s), {len(out['skipped'])} file(s) skipped"
    )
    for s in out["dicom_series"]:
        num = "-" if s["series_number"] is None else s["series_number"]
        title = f"\nseries [{s['index']}] number {num}  (select with --series {s['index']})"
        _print_record(title, s)
    for v in out["volumes"]:
        _print_record(f"\n{v['path']}", v)
    if out["skipped"]:
        print("\nskipped:")
        for sk in out["skipped"]:
            print(f"  {sk['path']}: {sk['reason']}")
    if out["n_unreadable"]:
        print(
            f"medseg info: {path}: {out['n_unreadable']} file(s) or series could not be read "
            "(listed above)",
            file=sys.stderr,
        )
        return 1
    if not out["dicom_series"] and not out["volumes"]:
        raise InputError(path, "no DICOM series or volume files found")
    return 0
