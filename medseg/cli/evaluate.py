"""``medseg evaluate PRED REF --out DIR``: per-case, per-label Dice and surface distances in mm."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from medseg.cli._args import add_label_names_options, label_names_option, ranged
from medseg.errors import ConfigError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "evaluate",
        help="Dice, HD, HD95, ASSD and surface Dice (mm) of predictions against references",
        description="Evaluate predicted label maps against references. PRED and REF are folders "
        "whose cases are matched by name (file name without .nii/.nii.gz/.nrrd/.mha/.mhd/.dcm, "
        "or DICOM series sub-folder), or one file / DICOM series folder each. Grids must match "
        "exactly (nothing is resampled); a failing case is reported and the batch goes on. "
        "Writes metrics.csv (one row per case and label), summary.csv/.json (per-label mean, "
        "std, median, 5th/95th percentiles, counts of empty/undefined cases), failures.csv and "
        "settings.json into --out. HD95 = max of the two directed 95th percentiles.",
    )
    p.add_argument("pred", type=Path, help="predictions: folder of cases, or one file/series")
    p.add_argument("ref", type=Path, help="references: folder of cases, or one file/series")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument(
        "--labels",
        nargs="+",
        metavar="L",
        help="label values to report, e.g. '1 2 3', '1,2,3' or '1-5' (default: all present)",
    )
    p.add_argument(
        "--regions",
        nargs="+",
        metavar="NAME=L,L",
        help="composite regions, e.g. 'tumour_core=1,3,4 whole_tumour=1-4', or a YAML/JSON file "
        "mapping names to label lists",
    )
    add_label_names_options(p)
    p.add_argument(
        "--tolerance-mm",
        type=ranged("tolerance_mm"),
        default=1.0,
        help="surface Dice tolerance in mm (1.0)",
    )
    p.add_argument(
        "--empty-distance",
        default="diagonal",
        metavar="{diagonal,nan,MM}",
        help="HD/HD95/ASSD when exactly one mask is empty: the image diagonal in mm (default), "
        "nan (excluded from means, counted), or a fixed number of mm",
    )
    p.add_argument(
        "--both-empty-dice",
        choices=("nan", "one"),
        default="nan",
        help="Dice/IoU when both masks are empty: nan (default; excluded, counted) or one",
    )
    p.add_argument(
        "--surface",
        choices=("border", "surfels"),
        default="border",
        help="border voxels (default, MONAI's definition) or DeepMind area-weighted surfels",
    )
    p.add_argument(
        "--method",
        choices=("auto", "edt", "kdtree"),
        default="auto",
        help="distance algorithm (all exact; auto picks per label by size)",
    )
    lw = p.add_argument_group(
        "lesion-wise (instance) view",
        "Instances are connected components per label. --lesion-wise adds the BraTS 2023 "
        "lesion-wise Dice/HD95 and lesion counts and panoptica's RQ/SQ/PQ to metrics.csv and the "
        "summaries, and writes lesions.csv (one row per reference lesion).",
    )
    lw.add_argument(
        "--lesion-wise", action="store_true", help="compute the lesion-wise and instance metrics"
    )
    lw.add_argument(
        "--lesion-dilation",
        type=ranged("lesion_dilation"),
        metavar="N",
        help="BraTS dilation iterations (18-neighbour) merging and matching lesions (3)",
    )
    lw.add_argument(
        "--lesion-min-volume",
        type=ranged("lesion_min_volume"),
        metavar="MM3",
        help="reference lesions of this volume (mm³) or less are left out of the scores (50)",
    )
    lw.add_argument(
        "--connectivity",
        type=int,
        choices=(6, 18, 26),
        help="of the connected components: 6 faces, 18 + edges, 26 + corners (26)",
    )
    lw.add_argument(
        "--iou-threshold",
        type=ranged("iou_threshold"),
        metavar="T",
        help="IoU at or above which instances match one to one (0.5)",
    )
    p.add_argument(
        "--allow-other-frame",
        action="store_true",
        dest="allow_other_frame_of_reference",
        help="accept a DICOM-derived segmentation and reference of different DICOM studies or "
        "frames of reference (refused by default: another patient's or session's scan of "
        "the same geometry)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no table")
    p.add_argument(
        "--max-rows",
        type=ranged("max_rows"),
        default=40,
        help="labels shown in the terminal table (40)",
    )
    p.set_defaults(func=run)


def lesion_options(args: argparse.Namespace) -> Any:
    """The :class:`~medseg.metrics.LesionWiseOptions` of the command line, or None."""
    from medseg.metrics import LesionWiseOptions

    given = {
        "dilation": args.lesion_dilation,
        "min_volume_mm3": args.lesion_min_volume,
        "connectivity": args.connectivity,
        "iou_threshold": args.iou_threshold,
    }
    given = {k: v for k, v in given.items() if v is not None}
    if not args.lesion_wise:
        if given:
            raise ConfigError(
                "--lesion-dilation, --lesion-min-volume, --connectivity and --iou-threshold "
                "apply with --lesion-wise"
            )
        return None
    return LesionWiseOptions(**given)


def run(args: argparse.Namespace) -> int:
    from medseg.evaluation import evaluate_folders, format_table
    from medseg.io.label_specs import parse_label_list, parse_region_specs
    from medseg.metrics import EmptyPolicy

    try:
        policy = EmptyPolicy.parse(args.both_empty_dice, args.empty_distance)
    except ValueError as exc:
        raise ConfigError(f"--empty-distance/--both-empty-dice: {exc}") from None
    labels = parse_label_list(args.labels) if args.labels else None
    regions = parse_region_specs(args.regions) if args.regions else None
    names = label_names_option(args)
    progress = not args.quiet and sys.stderr.isatty()
    lesion_wise = lesion_options(args)
    result = evaluate_folders(
        args.pred,
        args.ref,
        args.out,
        labels=labels,
        regions=regions,
        tolerance_mm=args.tolerance_mm,
        policy=policy,
        surface=args.surface,
        method=args.method,
        label_names=names,
        overwrite=args.overwrite,
        progress=progress,
        lesion_wise=lesion_wise,
        allow_other_frame_of_reference=args.allow_other_frame_of_reference,
    )
    if not args.quiet:
        print(format_table(result.summary, max_rows=args.max_rows))
        n_ok = result.n_cases - len(result.failures)
        print(f"{n_ok}/{result.n_cases} case(s) evaluated; outputs in {args.out}")
    if result.failures:
        print(f"medseg evaluate: {len(result.failures)} case(s) failed:", file=sys.stderr)
        for f in result.failures:
            print(f"  {f.case}: {f.error}", file=sys.stderr)
        return 1
    return 0
