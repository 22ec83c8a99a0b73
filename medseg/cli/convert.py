"""``medseg convert INPUT OUTPUT``: DICOM series or any supported file to NIfTI (or NRRD/MHA).

Outputs are committed atomically and recorded in the run manifest ``convert.json`` of the
output folder (:mod:`medseg.io.manifest`); ``--all`` names each series as ``medseg predict``
does (:func:`medseg.io.outputs.series_name`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from medseg.cli._args import ranged
from medseg.io import WRITE_SUFFIXES
from medseg.io.convert import convert, convert_series


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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


def run(args: argparse.Namespace) -> int:
    if not args.all:
        out = convert(
            args.input,
            args.output,
            series=_series_arg(args.series),
            channel=args.channel,
            label=args.label,
            overwrite=args.overwrite,
        )
        print(f"wrote {out}")
        return 0
    report = convert_series(
        args.input, args.output, suffix=args.format, label=args.label, overwrite=args.overwrite
    )
    for c in report.done:
        print(f"wrote {c.output}")
    for c in report.existing:
        print(f"exists, kept: {c.output}")
    print(report.summary(), file=sys.stdout if report.ok else sys.stderr)
    return 0 if report.ok else 1
