"""``medseg convert INPUT OUTPUT``: DICOM series or any supported file to NIfTI (or NRRD/MHA)."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from medseg.cli._args import ranged
from medseg.errors import InputError, MedsegError, UnsupportedFormatError
from medseg.io import WRITE_SUFFIXES, detect_format, read_volume, write_volume
from medseg.io.atomic import check_output_dir, check_writable, full_suffix
from medseg.volume import LabelMap


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert",
        help="convert a DICOM series or volume file to NIfTI/NRRD/MHA",
        description="Convert INPUT (DICOM folder or file, NIfTI, NRRD, MHA/MHD) to OUTPUT, whose "
        "suffix picks the format (.nii.gz, .nii, .nrrd, .mha, .mhd). Geometry is kept exactly; "
        "output is written atomically and never overwritten without --overwrite. With --all, "
        "OUTPUT is a folder and every readable series of a DICOM folder is written to it.",
    )
    p.add_argument("input", type=Path)
    p.add_argument("output", type=Path)
    p.add_argument("--series", help="DICOM series to convert (index or key from `medseg info`)")
    p.add_argument(
        "--channel", type=ranged("channel"), help="volume of a 4-D / vector input to take"
    )
    p.add_argument("--label", action="store_true", help="store as an integer label map")
    p.add_argument("--all", action="store_true", help="convert every series of a DICOM folder")
    p.add_argument("--format", default=".nii.gz", choices=WRITE_SUFFIXES, help="with --all")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.set_defaults(func=run)


def _series_arg(value: str | None) -> str | int | None:
    if value is None:
        return None
    return int(value) if value.isdigit() else value


def convert_file(
    src: Path,
    dst: Path,
    *,
    series: str | int | None = None,
    channel: int | None = None,
    label: bool = False,
    overwrite: bool = False,
) -> Path:
    """Read ``src`` and write it to ``dst`` (format by suffix). Returns ``dst``.

    The output is checked first (suffix, existing file, writable folder), so a bad output
    path fails before a long read."""
    if full_suffix(dst) not in WRITE_SUFFIXES:
        raise UnsupportedFormatError(
            dst,
            f"cannot write '{full_suffix(dst) or dst.name}'; "
            f"expected one of {', '.join(WRITE_SUFFIXES)}",
        )
    detect_format(src)  # a missing or unsupported input is named before the output is touched
    check_writable(dst, overwrite)
    vol = read_volume(src, channel=channel, series=series)
    if label:
        vol = LabelMap.from_volume(vol)
    return write_volume(vol, dst, overwrite=overwrite)


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[:60] or "series"


def run(args: argparse.Namespace) -> int:
    if not args.all:
        out = convert_file(
            args.input,
            args.output,
            series=_series_arg(args.series),
            channel=args.channel,
            label=args.label,
            overwrite=args.overwrite,
        )
        print(f"wrote {out}")
        return 0
    from medseg.io.dicom import read_dicom, scan_dicom_folder

    scan = scan_dicom_folder(args.input)
    if not scan.series:
        raise InputError(
            args.input, f"no DICOM series found ({len(scan.skipped)} non-image file(s) skipped)"
        )
    check_output_dir(args.output)
    failures: list[str] = []
    written = 0
    for s in scan.series:
        name = f"{s.index:03d}_{s.series_number if s.series_number is not None else 'x'}"
        if s.description:
            name += "_" + _safe_name(s.description)
        dst = args.output / f"{name}{args.format}"
        if s.problem is not None:
            failures.append(f"series [{s.index}]: {s.problem}")
            continue
        if dst.exists() and not args.overwrite:
            print(f"exists, kept: {dst}")
            continue
        try:
            vol = read_dicom(args.input, series=s.index, scan=scan)
            if args.label:
                vol = LabelMap.from_volume(vol)
            write_volume(vol, dst, overwrite=args.overwrite)
            written += 1
            print(f"wrote {dst}")
        except MedsegError as exc:
            failures.append(f"series [{s.index}]: {exc}")
    if failures:
        print(f"\n{len(failures)} series not converted:", file=sys.stderr)
        for f in failures:
            print(f"  {f}", file=sys.stderr)
    print(f"{written} written, {len(failures)} failed")
    return 1 if failures else 0
