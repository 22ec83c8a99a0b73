"""What makes a left-atrium case hard? Per case of la2018_msd: the out-of-fold Dice of one or
more cross-validated recipes (``MODEL/crossval/metrics_postprocessed.csv`` or
``metrics.csv``), beside properties of the scan that could explain a failure:

* ``bright outside``: the share of voxels farther than 5 mm from the atrium that are at least
  as bright as the atrium's median (a second bright structure: aorta, ventricles, pulmonary
  veins);
* ``contrast``: the atrium's median intensity over the image's median;
* ``p99/p50``: the image's 99th intensity percentile over its median (intensity range);
* ``volume mL`` of the atrium and its ``border mm``: the smallest distance from the atrium's
  box to the image's edge (field of view);
* the orientation codes of the image axes.

Prints the table and, for each property, Spearman's rank correlation with the Dice of each
recipe over the cases (with 12 cases only a strong correlation, |rho| > 0.58, differs from 0
at p < 0.05). Run after cross-validation::

    python bench/la_case_factors.py --model runs/la/model/stage_1 --model runs/la/model

``--smoke`` runs on a 4-case synthetic dataset with made-up Dice values (the test suite).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "la2018_msd"
FACTORS = ("bright outside", "contrast", "p99/p50", "volume mL", "border mm")


def case_factors(image_path: Path, label_path: Path) -> dict[str, Any]:
    """The properties of one case (see the module docstring)."""
    import nibabel as nib
    from scipy import ndimage

    img = nib.load(str(image_path))
    image = np.asarray(img.dataobj, dtype=np.float32)
    label = np.asarray(nib.load(str(label_path)).dataobj) > 0
    spacing = np.asarray(img.header.get_zooms()[:3], dtype=np.float64)
    atrium = image[label]
    far = ndimage.distance_transform_edt(~label, sampling=spacing) > 5.0
    med_img = float(np.median(image))
    idx = [np.flatnonzero(label.any(axis=tuple(j for j in range(3) if j != i))) for i in range(3)]
    border = min(
        min(ix[0], n - 1 - ix[-1]) * s for ix, n, s in zip(idx, label.shape, spacing, strict=True)
    )
    return {
        "bright outside": float(np.mean(image[far] >= np.median(atrium))),
        "contrast": float(np.median(atrium) / med_img) if med_img else float("nan"),
        "p99/p50": float(np.percentile(image, 99) / med_img) if med_img else float("nan"),
        "volume mL": float(label.sum() * np.prod(spacing) / 1000.0),
        "border mm": float(border),
        "axes": "".join(nib.aff2axcodes(img.affine)),
    }


def read_dice(model: Path, label: str = "left_atrium") -> dict[str, float]:
    """Per case, the out-of-fold Dice of a cross-validated model folder (post-processed when
    cross-validation chose post-processing)."""
    folder = model / "crossval"
    path = folder / "metrics_postprocessed.csv"
    if not path.is_file():
        path = folder / "metrics.csv"
    out: dict[str, float] = {}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            if row.get("name", label) == label:
                out[row["case"]] = float(row["dice"])
    return out


def spearman(x: list[float], y: list[float]) -> float:
    from scipy.stats import spearmanr

    if len(set(x)) < 2 or len(set(y)) < 2:
        return float("nan")  # undefined for a constant property
    result: Any = spearmanr(x, y)
    return float(result.statistic)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--model", type=Path, action="append", default=[], help="a CV model folder")
    ap.add_argument("--smoke", action="store_true", help="4 synthetic cases, made-up Dice")
    args = ap.parse_args()
    if args.smoke:
        sys.path.insert(0, str(ROOT / "bench"))
        from train_la import synthetic_dataset

        args.data = synthetic_dataset(Path("factors_smoke"))
    doc = json.loads((args.data / "dataset.json").read_text())
    cases = {
        Path(e["image"]).name.split(".")[0]: (args.data / e["image"], args.data / e["label"])
        for e in doc["training"]
    }
    dice: dict[str, dict[str, float]] = {}
    if args.smoke:
        dice["made-up"] = {c: 0.5 + 0.1 * i for i, c in enumerate(sorted(cases))}
    for m in args.model:
        dice[m.name] = read_dice(m)
    rows = {cid: case_factors(*paths) for cid, paths in sorted(cases.items())}
    names = list(dice)
    print(" ".join([f"{'case':<22}", *(f"{n[:12]:>12}" for n in names),
                    *(f"{f:>14}" for f in FACTORS), f"{'axes':>5}"]))  # fmt: skip
    for cid, r in rows.items():
        cells = [f"{dice[n].get(cid, float('nan')):>12.4f}" for n in names]
        cells += [f"{r[f]:>14.3f}" for f in FACTORS]
        print(" ".join([f"{cid:<22}", *cells, f"{r['axes']:>5}"]))
    print(f"\nSpearman rho of each property vs Dice ({len(rows)} cases):")
    for n in names:
        ids = [c for c in rows if c in dice[n]]
        d = [dice[n][c] for c in ids]
        rhos = [f"{f} {spearman([rows[c][f] for c in ids], d):+.2f}" for f in FACTORS]
        print(f"  {n:<14} " + "   ".join(rhos))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
