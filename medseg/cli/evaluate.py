"""``medseg evaluate PRED REF --out DIR``: per-case, per-label Dice and surface distances in mm."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from medseg.errors import ConfigError, InputError


def register(sub: argparse._SubParsersAction) -> None:
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
    p.add_argument(
        "--label-names",
        type=Path,
        metavar="FILE",
        help='JSON/YAML file mapping label values to names ({"1": "spleen", ...})',
    )
    p.add_argument(
        "--label-names-key",
        metavar="KEY",
        help="for a label-name file holding several tables, the one to use (e.g. 'total')",
    )
    p.add_argument(
        "--tolerance-mm", type=float, default=1.0, help="surface Dice tolerance in mm (1.0)"
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
        type=int,
        metavar="N",
        help="BraTS dilation iterations (18-neighbour) merging and matching lesions (3)",
    )
    lw.add_argument(
        "--lesion-min-volume",
        type=float,
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
        type=float,
        metavar="T",
        help="IoU at or above which instances match one to one (0.5)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no table")
    p.add_argument(
        "--max-rows", type=int, default=40, help="labels shown in the terminal table (40)"
    )
    p.set_defaults(func=run)


def parse_label_list(items: list[str]) -> list[int]:
    """``["1,2", "5-7"]`` → ``[1, 2, 5, 6, 7]``; raises :class:`ConfigError` on bad items."""
    out: set[int] = set()
    for item in items:
        for part in item.split(","):
            part = part.strip()
            if not part:
                continue
            try:
                if "-" in part[1:]:
                    a, b = part.split("-", 1)
                    lo, hi = int(a), int(b)
                    if hi < lo:
                        raise ValueError
                    out.update(range(lo, hi + 1))
                else:
                    out.add(int(part))
            except ValueError:
                raise ConfigError(
                    f"labels: expected integers or ranges like '1,3,5-7', found {part!r}"
                ) from None
    if any(v <= 0 for v in out):
        raise ConfigError(f"labels: expected positive values (0 is background), found {item!r}")
    return sorted(out)


def _load_mapping(path: Path, what: str) -> Any:
    from medseg.io.files import read_text_file

    text = read_text_file(path, f"{what} file")
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            return yaml.safe_load(text)
        return json.loads(text)
    except Exception as exc:  # parse errors of either format
        reason = " ".join(str(exc).split())
        raise InputError(
            path, f"expected a JSON/YAML {what} mapping, could not parse: {reason}"
        ) from None


def parse_regions(items: list[str]) -> dict[str, list[int]]:
    """``["core=1,3,4"]`` or ``["regions.yaml"]`` → ``{"core": [1, 3, 4]}``."""
    regions: dict[str, list[int]] = {}
    for item in items:
        if "=" in item:
            name, values = item.split("=", 1)
            labels = parse_label_list([values])
            if not name.strip() or not labels:
                raise ConfigError(
                    f"--regions: expected NAME=L,L,... (e.g. core=1,3), found {item!r}"
                )
            regions[name.strip()] = labels
            continue
        data = _load_mapping(Path(item), "regions")
        if isinstance(data, dict) and "regions" in data and isinstance(data["regions"], dict):
            data = data["regions"]
        if not isinstance(data, dict):
            raise ConfigError(f"{item}: expected a mapping of region names to label lists")
        for name, values in data.items():
            vals = values if isinstance(values, list) else [values]
            regions[str(name)] = parse_label_list([str(v) for v in vals])
    return regions


def load_label_names(path: Path, key: str | None) -> dict[int, str]:
    """Read ``{"1": "spleen"}`` (optionally one table, ``key``, of several) from JSON/YAML."""
    data = _load_mapping(path, "label-name")
    if key is not None:
        if not isinstance(data, dict) or key not in data:
            found = sorted(data) if isinstance(data, dict) else type(data).__name__
            raise InputError(path, f"expected a table named {key!r}, found {found}")
        data = data[key]
    if not isinstance(data, dict):
        raise InputError(path, f"expected a mapping of label values to names, found {data!r:.60}")
    if data and all(isinstance(v, dict) for v in data.values()):
        raise InputError(
            path,
            f"holds several tables ({', '.join(sorted(data))}); choose one with --label-names-key",
        )
    out: dict[int, str] = {}
    for k, v in data.items():
        try:
            out[int(k)] = str(v)
        except (TypeError, ValueError):
            raise InputError(path, f"expected integer label values as keys, found {k!r}") from None
    return out


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
    from medseg.metrics import EmptyPolicy

    try:
        policy = EmptyPolicy.parse(args.both_empty_dice, args.empty_distance)
    except ValueError as exc:
        raise ConfigError(f"--empty-distance/--both-empty-dice: {exc}") from None
    from medseg.cli._args import check_number

    check_number("--tolerance-mm", args.tolerance_mm, minimum=0)
    check_number("--max-rows", args.max_rows, minimum=0)
    labels = parse_label_list(args.labels) if args.labels else None
    regions = parse_regions(args.regions) if args.regions else None
    names = load_label_names(args.label_names, args.label_names_key) if args.label_names else None
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
