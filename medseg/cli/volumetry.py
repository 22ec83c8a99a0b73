"""``medseg volumetry SEGMENTATIONS --out DIR``: per-label volumes, shape and intensity
statistics, CSV/JSON tables and a self-contained HTML report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from medseg.cli._args import add_label_names_options, label_names_option


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "volumetry",
        help="volumes (mL), diameters, components, intensities per label; CSV, JSON, HTML report",
        description="Measure every label of every case: voxels, volume (mm3, mL), 26-connected "
        "components, centroid and bounding box (RAS+ mm), largest diameter (mm), whether it "
        "touches the image border and, with --images, the intensity statistics inside it. "
        "SEGMENTATIONS and IMAGES are folders of cases matched by name as in 'medseg evaluate' "
        "(or one file / DICOM series each). Writes volumes.csv, statistics/<case>.json "
        "(TotalSegmentator's statistics.json layout plus the extra fields), failures.csv, "
        "settings.json and report.html into --out; with --baseline longitudinal.csv, with "
        "--compare comparison.csv and agreement.csv. A failing case is reported and the batch "
        "goes on (exit 1 at the end).",
    )
    p.add_argument("segmentations", type=Path, help="label maps: folder of cases, or one file")
    p.add_argument("--images", type=Path, help="images on the same grids (intensity statistics)")
    p.add_argument(
        "--image-units",
        metavar="UNITS",
        help="units of the images when their files do not record them, e.g. HU for CT in "
        "NIfTI (also selects the CT display window); DICOM records its own",
    )
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument(
        "--baseline",
        type=Path,
        metavar="DIR|CSV",
        help="earlier time point: segmentations matched by case name, a previous volumetry "
        "output folder, or a CSV with columns 'case,baseline' (paths to baseline segmentations)",
    )
    p.add_argument(
        "--compare",
        type=Path,
        metavar="OTHER",
        help="second set of segmentations (e.g. references) or a previous output folder: "
        "per-label volume differences and Bland-Altman agreement",
    )
    add_label_names_options(p, "; every named label gets a row in every case")
    p.add_argument(
        "--no-figures", action="store_true", help="no slice pictures in the report (faster)"
    )
    p.add_argument(
        "--allow-other-frame",
        action="store_true",
        dest="allow_other_frame_of_reference",
        help="accept a DICOM-derived segmentation and image of different DICOM studies or "
        "frames of reference (refused by default: another patient's or session's scan of "
        "the same geometry)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no summary line")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from medseg.volumetry import check_outputs, measure_folder, write_outputs

    names = label_names_option(args)
    inputs = (args.segmentations, args.images, args.baseline, args.compare)
    check_outputs(args.out, args.overwrite, inputs)
    result = measure_folder(
        args.segmentations,
        images=args.images,
        baseline=args.baseline,
        compare=args.compare,
        label_names=names,
        image_units=args.image_units,
        figures=not args.no_figures,
        progress=not args.quiet and sys.stderr.isatty(),
        allow_other_frame_of_reference=args.allow_other_frame_of_reference,
    )
    write_outputs(result, args.out, overwrite=args.overwrite)
    if not args.quiet:
        n = len(result.cases)
        n_rows = len(result.records)
        print(f"{n} case(s) measured, {n_rows} label rows; outputs in {args.out}")
        print(f"open {args.out / 'report.html'} in a browser")
    if result.failures:
        print(f"medseg volumetry: {len(result.failures)} failure(s):", file=sys.stderr)
        for f in result.failures:
            print(f"  {f.case} ({f.role}): {f.error}", file=sys.stderr)
        return 1
    return 0
