"""``medseg info PATH``: what a file or folder holds, with its geometry (the records of
:func:`medseg.io.describe.describe`, printed)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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


def run(args: argparse.Namespace) -> int:
    from medseg.errors import InputError
    from medseg.io.describe import describe

    path: Path = args.path
    out = describe(path, headers_only=args.headers_only)
    if not path.is_dir():
        if args.json:
            print(json.dumps(out, indent=2))
        else:
            _print_record(str(path), out)
        return 0
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
