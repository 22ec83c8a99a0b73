"""``medseg plan DATASET --out DIR``: fingerprint a dataset and write ``DIR/plan.yaml``."""

from __future__ import annotations

import argparse
from pathlib import Path

from medseg.cli._args import ranged


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "plan",
        help="fingerprint a dataset and write an editable plan.yaml (+ splits.json)",
        description="Check the dataset, collect its fingerprint (spacings, shapes, foreground "
        "intensity statistics, label volumes), choose target spacing, normalisation, patch and "
        "batch size for the GPU memory budget and the network topology, write DIR/plan.yaml and "
        "DIR/splits.json (k-fold cross-validation, editable) and print the reasons for each "
        "choice. Training consumes DIR/plan.yaml.",
    )
    p.add_argument("dataset", type=Path, help="dataset folder, dataset.json or .csv")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument(
        "--gpu-memory-gb",
        type=ranged("gpu_memory_gb"),
        default=8.0,
        help="GPU memory budget in GB (default 8)",
    )
    p.add_argument(
        "--foreground-ratio",
        type=ranged("foreground_ratio"),
        default=0.33,
        help="share of training patches centred on foreground (default 0.33)",
    )
    p.add_argument(
        "--folds", type=ranged("folds"), default=5, help="cross-validation folds (default 5)"
    )
    p.add_argument(
        "--seed", type=ranged("seed"), default=0, help="seed for splits and voxel subsampling"
    )
    p.add_argument(
        "--voxels-per-case",
        type=ranged("voxels_per_case"),
        default=20000,
        help="foreground voxels sampled per case for intensity statistics (default 20000)",
    )
    p.add_argument(
        "--augmentation",
        type=Path,
        default=None,
        help="augmentation YAML (keys as in configs/augmentation_default.yaml) to use instead "
        "of the derived defaults",
    )
    p.add_argument("--skip-check", action="store_true", help="plan without validating first")
    p.add_argument("--overwrite", action="store_true", help="replace an existing plan/splits")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from medseg.datasets import check_dataset, load_dataset, make_splits, write_splits
    from medseg.io.atomic import check_output_dir
    from medseg.plan import load_augmentation, save_plan
    from medseg.planning import explain_plan, plan_dataset

    ds = load_dataset(args.dataset)
    aug = load_augmentation(args.augmentation) if args.augmentation is not None else None
    out = Path(args.out)
    plan_path, splits_path = out / "plan.yaml", out / "splits.json"
    check_output_dir(out, overwrite=args.overwrite, files=(plan_path.name, splits_path.name))
    if not args.skip_check:
        errors = [p for p in check_dataset(ds) if p.severity == "error"]
        if errors:
            for p in errors:
                print(f"medseg plan: {p}", file=sys.stderr)
            print(
                f"medseg plan: error: {len(errors)} problem(s) in the dataset; fix them "
                "(see `medseg check`) or pass --skip-check",
                file=sys.stderr,
            )
            return 1
    plan = plan_dataset(
        ds,
        gpu_memory_gb=args.gpu_memory_gb,
        foreground_ratio=args.foreground_ratio,
        voxels_per_case=args.voxels_per_case,
        seed=args.seed,
        augmentation=aug,
    )
    n_folds = min(args.folds, len(ds.cases))
    save_plan(plan, plan_path, overwrite=args.overwrite)
    if n_folds >= 2:
        write_splits(make_splits(ds, n_folds, args.seed), splits_path, overwrite=args.overwrite)
    print(explain_plan(plan))
    print(f"wrote {plan_path}")
    if n_folds >= 2:
        fewer = f"; --folds {args.folds} > {len(ds.cases)} cases" if n_folds < args.folds else ""
        print(f"wrote {splits_path} ({n_folds} folds{fewer}, seed {args.seed})")
    else:
        print(
            f"no splits written: the dataset has {len(ds.cases)} case; cross-validation needs "
            "at least 2"
        )
    return 0
