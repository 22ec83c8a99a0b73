"""``medseg check DATASET``: validate a dataset and report every problem, per case."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "check",
        help="validate a dataset (files, grids, label values, NaN) and report every problem",
        description="Read every case of a dataset (a Decathlon/nnU-Net folder or dataset.json, "
        "a CSV listing case_id,<image columns>,label, or a folder with images/ and labels/) and "
        "report every problem found, grouped by case: missing or unreadable files, NaN or "
        "infinite voxels, channels on different grids, labels not on the image grid, label "
        "values outside the declared set. Exits 1 if any error was found, 0 otherwise "
        "(warnings do not fail).",
    )
    p.add_argument("dataset", type=Path, help="dataset folder, dataset.json or .csv")
    p.add_argument(
        "--allow-unlabelled", action="store_true", help="do not require a label for every case"
    )
    p.add_argument("--json", action="store_true", help="print the problems as one JSON document")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from medseg.datasets import check_dataset, load_dataset

    ds = load_dataset(args.dataset)
    problems = check_dataset(ds, require_labels=not args.allow_unlabelled)
    errors = [p for p in problems if p.severity == "error"]
    if args.json:
        doc = {
            "dataset": str(ds.source),
            "n_cases": len(ds.cases),
            "n_errors": len(errors),
            "problems": [
                {
                    "case_id": p.case_id,
                    "path": str(p.path) if p.path else None,
                    "severity": p.severity,
                    "message": p.message,
                }
                for p in problems
            ],
        }
        print(json.dumps(doc, indent=2))
        return 1 if errors else 0
    print(
        f"{ds.name}: {len(ds.cases)} case(s), channels {', '.join(ds.channel_names)}, labels "
        + (", ".join(f"{k}={v}" for k, v in ds.label_names.items()) or "(none declared)")
    )
    by_case: dict[str | None, list[str]] = {}
    for p in problems:
        text = f"{p.path}: {p.message}" if p.path else p.message
        by_case.setdefault(p.case_id, []).append(
            f"warning: {text}" if p.severity == "warning" else text
        )
    for cid, msgs in by_case.items():
        print(f"{cid if cid is not None else '<dataset>'}:")
        for m in msgs:
            print(f"  - {m}")
    bad_cases = len({p.case_id for p in errors})
    if errors:
        print(f"FAILED: {len(errors)} error(s) in {bad_cases} of {len(ds.cases)} case(s)")
        return 1
    print(f"OK: {len(ds.cases)} case(s) checked, no errors")
    return 0
