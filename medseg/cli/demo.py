"""``medseg demo [--out DIR]``: the whole pipeline on the shipped sample data (see
:func:`medseg.demo.run_demo`)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        help="run the whole pipeline on the shipped sample data (CPU, a few minutes)",
        description="Check and plan the two shipped CT scans with spleen masks, train a small "
        "network briefly (a demonstration, not a clinical model), predict a NIfTI scan and a "
        "DICOM series (NIfTI and DICOM SEG), evaluate against the reference masks and write "
        "the volumetry report; prints where each output is and how to open it.",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder (default: a new medseg_demo_<date>_<time> folder here)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing demo folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from medseg.demo import run_demo

    for name in ("medseg.demo", "medseg.training", "medseg.inference"):
        lg = logging.getLogger(name)
        if lg.getEffectiveLevel() > logging.INFO:
            lg.setLevel(logging.INFO)
    result = run_demo(args.out, overwrite=args.overwrite)
    print(result.summary())
    return 0
