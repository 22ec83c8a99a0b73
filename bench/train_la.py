"""Benchmark: a left-atrium recipe from ``configs/`` under cross-validation on la2018_msd
(12 labelled LGE-MRI scans), through the same two commands a user types::

    medseg plan DATA --out OUT/plan --folds 4
    medseg train OUT/recipe.yaml --cv --out OUT/model     # recipe = the config, plan -> OUT/plan

Each of the 12 cases is held out once (4 folds of 3). Dice and HD95 (mm) are computed on
each case's original grid by ``medseg.metrics`` (``OUT/model/crossval/``), before and after
the post-processing that cross-validation chose (``OUT/model/postprocessing.json``). Prints a
per-case table, mean +- sample standard deviation, per fold the training time and the time to
0.85 / 0.90 validation Dice, and the ratio of the mean Dice to the issue's target; writes
``OUT/bench_la.json``. The plot of validation Dice against wall-clock time is
``OUT/model/crossval/dice_vs_time.png``.

CPU recipe (2 cores, about 15 minutes of training per fold)::

    python bench/train_la.py --config configs/la_cpu.yaml --out runs/la_cpu

The two-stage CPU recipe (stage 1 = ``configs/la_cpu.yaml``; the cascade's own
cross-validation is reported, with stage 1 alone on the same folds beside it)::

    python bench/train_la.py --config configs/la_cpu_cascade.yaml --out runs/la_cascade

GPU recipe (one fold inside one short device call; ``bench/gpu_la.sh`` wraps it)::

    python bench/train_la.py --config configs/la_gpu_fast.yaml --folds 0 --device cuda

``--report-only`` prints the table of a finished ``OUT`` again; ``--smoke`` runs the whole
route on a 4-case synthetic dataset with one epoch of two iterations, for the one-stage recipe
and the cascade (the test suite runs it).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "la2018_msd"
DEFAULT_CONFIG = ROOT / "configs" / "la_cpu.yaml"
TARGET_DICE = 0.89  # the CPU target for the left atrium (with HD95 <= 6 mm)
TARGET_HD95_MM = 6.0


def medseg(*args: str) -> None:
    """Run one ``medseg`` command (``python -m medseg``, the same entry point as the console
    script), failing loudly."""
    cmd = [sys.executable, "-m", "medseg", *args]
    print("$ medseg", " ".join(args), flush=True)
    subprocess.run(cmd, check=True)


def write_recipe(config: Path, plan: Path, out: Path, overrides: dict[str, Any]) -> Path:
    """The config with ``plan`` pointing at ``plan`` (and ``overrides`` merged at the top
    level), validated, written to ``out`` as YAML. A cascade's first-stage recipe
    (``cascade.coarse``) is written beside it, ``coarse_<name>``, with the same overrides."""
    import yaml

    from medseg.training import validate_config
    from medseg.training.config import read_mapping

    doc = read_mapping(config)
    doc["plan"] = str(plan.resolve())
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(doc.get(key), dict):
            doc[key] = {**doc[key], **value}
        else:
            doc[key] = value
    if isinstance(doc.get("cascade"), dict) and "coarse" in doc["cascade"]:
        coarse = (config.parent / doc["cascade"]["coarse"]).resolve()
        written = write_recipe(coarse, plan, out.parent / f"coarse_{out.name}", overrides)
        doc["cascade"] = {**doc["cascade"], "coarse": str(written.resolve())}
    validate_config(doc, str(config))
    out.write_text(yaml.safe_dump(doc, sort_keys=False))
    return out


def synthetic_dataset(root: Path, n: int = 4) -> Path:
    """A Decathlon-layout dataset of ``n`` noisy MR-like volumes with one ellipsoid each
    (1.5 mm voxels), for ``--smoke``."""
    import nibabel as nib

    rng = np.random.default_rng(0)
    (root / "imagesTr").mkdir(parents=True, exist_ok=True)
    (root / "labelsTr").mkdir(parents=True, exist_ok=True)
    zz, yy, xx = np.meshgrid(*(np.arange(s) for s in (24, 24, 20)), indexing="ij")
    training = []
    affine = np.diag([1.5, 1.5, 1.5, 1.0])
    for i in range(n):
        c = rng.uniform(9, 15, size=3)
        lab = (((zz - c[0]) / 6) ** 2 + ((yy - c[1]) / 5) ** 2 + ((xx - c[2]) / 4) ** 2) <= 1
        img = 100 * lab + rng.normal(0, 20, lab.shape)
        nib.save(nib.Nifti1Image(img.astype(np.float32), affine), root / f"imagesTr/la_{i}.nii.gz")
        nib.save(nib.Nifti1Image(lab.astype(np.uint8), affine), root / f"labelsTr/la_{i}.nii.gz")
        training.append(
            {"image": f"./imagesTr/la_{i}.nii.gz", "label": f"./labelsTr/la_{i}.nii.gz"}
        )
    doc = {
        "name": "smoke",
        "modality": {"0": "MRI"},
        "labels": {"0": "background", "1": "left_atrium"},
        "training": training,
    }
    (root / "dataset.json").write_text(json.dumps(doc, indent=2))
    return root


def _f(v: Any, fmt: str = ".4f") -> str:
    return "nan" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)


def report(out: Path, label: str = "left_atrium") -> dict[str, Any]:
    """Print and return the cross-validation figures of ``OUT/model``."""
    from medseg.model_folder import ModelFolder

    model = ModelFolder(out / "model")
    summary = json.loads(model.crossval_summary.read_text())
    raw, post = summary["raw"][label], summary.get("postprocessed", {}).get(label)
    cases = sorted(raw["dice"]["per_case"])
    folds_of = {}
    splits = json.loads(model.splits.read_text())
    for k, s in enumerate(splits):
        for cid in s["val"]:
            folds_of[cid] = k
    print(f"\nla2018_msd {label}: {summary['n_cases']} cases, {summary['n_folds']}-fold CV")
    steps = [
        s["kind"]
        + (f" label {s['label']}" if s.get("label") else "")
        + (f" < {s['min_volume_ml']} mL" if s.get("min_volume_ml") else "")
        for s in summary.get("postprocessing", [])
    ]
    print(f"post-processing chosen by CV: {', '.join(steps) or 'none'}")
    print(f"{'case':<22} {'fold':>4} {'Dice':>7} {'HD95 mm':>8} {'Dice pp':>8} {'HD95 pp':>8}")
    for cid in cases:
        pp_d = post["dice"]["per_case"][cid] if post else float("nan")
        pp_h = post["hd95_mm"]["per_case"][cid] if post else float("nan")
        print(
            f"{cid:<22} {folds_of.get(cid, -1):>4} {_f(raw['dice']['per_case'][cid]):>7} "
            f"{_f(raw['hd95_mm']['per_case'][cid], '.2f'):>8} {_f(pp_d):>8} {_f(pp_h, '.2f'):>8}"
        )

    def ms(block: dict[str, Any] | None, key: str, fmt: str) -> str:
        if block is None:
            return "nan"
        return f"{_f(block[key]['mean'], fmt)} +- {_f(block[key]['sd'], fmt)}"

    print(
        f"{'mean +- sd':<27} {ms(raw, 'dice', '.4f')}  {ms(raw, 'hd95_mm', '.2f')} mm   "
        f"post-processed {ms(post, 'dice', '.4f')}  {ms(post, 'hd95_mm', '.2f')} mm"
    )
    print(f"\n{'fold':>4} {'train s':>8} {'best val Dice':>13} {'t->0.85 s':>9} {'t->0.90 s':>9}")
    for f in summary["folds"]:
        print(
            f"{f['fold']:>4} {_f(f['train_s'], '.0f'):>8} {_f(f['best_val_dice']):>13} "
            f"{_f(f['time_to_0.85_s'], '.0f'):>9} {_f(f['time_to_0.90_s'], '.0f'):>9}"
        )
    if model.cascade.is_file():
        stage1 = json.loads(model.stage(1).crossval_summary.read_text())
        s_raw = stage1["raw"][label]
        s_post = stage1.get("postprocessed", {}).get(label) or s_raw
        print(
            f"stage 1 alone (same folds): {ms(s_raw, 'dice', '.4f')}  "
            f"{ms(s_raw, 'hd95_mm', '.2f')} mm   post-processed {ms(s_post, 'dice', '.4f')}  "
            f"{ms(s_post, 'hd95_mm', '.2f')} mm"
        )
        worst1 = min(s_post["dice"]["per_case"].values())
        print(f"worst case Dice: stage 1 alone {_f(worst1)}, cascade ", end="")
    else:
        print("worst case Dice: ", end="")
    print(_f(min((post or raw)["dice"]["per_case"].values())))
    final = post or raw
    dice, hd = final["dice"]["mean"], final["hd95_mm"]["mean"]
    print(
        f"ratio to target: mean Dice / {TARGET_DICE:.2f} = {dice / TARGET_DICE:.3f}, "
        f"mean HD95 / {TARGET_HD95_MM:.0f} mm = {hd / TARGET_HD95_MM:.3f}"
    )
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="a recipe in configs/")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--out", type=Path, default=Path("runs/la_bench"))
    ap.add_argument("--folds", default="cv", help="'cv' (every fold) or a list like 0 or 0,2")
    ap.add_argument("--device", choices=("cpu", "cuda"), help="override the recipe's device")
    ap.add_argument("--resume", action="store_true", help="continue OUT/model's folds")
    ap.add_argument("--report-only", action="store_true", help="print OUT's table again")
    ap.add_argument("--smoke", action="store_true", help="4 synthetic cases, 1 epoch x 2 its")
    args = ap.parse_args()

    out: Path = args.out
    overrides: dict[str, Any] = {}
    if args.device:
        overrides["device"] = args.device
    if args.smoke:
        out = Path("la_smoke")
        args.data = synthetic_dataset(out / "data")
        overrides.update(
            epochs=1,
            iterations_per_epoch=2,
            val_every=1,
            num_threads=1,
            plan_overrides={"patch_size": [16, 16, 16], "batch_size": 1},
        )
    if args.smoke:  # the one-stage recipe and the cascade (whose stage 1 it is)
        for config in (DEFAULT_CONFIG, ROOT / "configs" / "la_cpu_cascade.yaml"):
            run(args, config, out / config.stem, overrides)
    else:
        run(args, args.config, out, overrides)


def run(args: argparse.Namespace, config: Path, out: Path, overrides: dict[str, Any]) -> None:
    """Plan, train and report one recipe into ``out`` (see the module docstring)."""
    if not args.report_only:
        out.mkdir(parents=True, exist_ok=True)
        if not (out / "plan" / "plan.yaml").exists():
            medseg("plan", str(args.data), "--out", str(out / "plan"), "--folds", "4")
        recipe = write_recipe(config, out / "plan" / "plan.yaml", out / "recipe.yaml", overrides)
        fold_args = ["--cv"] if args.folds == "cv" else ["--fold", args.folds]
        t0 = time.perf_counter()
        medseg(
            "train", str(recipe), *fold_args, "--out", str(out / "model"), "--no-progress",
            *(["--resume"] if args.resume else []),
        )  # fmt: skip
        print(f"training + validation wall time {time.perf_counter() - t0:.0f} s")
    from medseg.model_folder import ModelFolder

    model = ModelFolder(out / "model")
    if args.folds != "cv" and not model.crossval_summary.exists():
        # a cascade's folds: stage 2's validation, inside the reference's box
        trained = model.stage(2) if model.cascade.is_file() else model
        for k in args.folds.split(","):
            doc = json.loads(trained.fold(int(k)).validation_final.read_text())
            print(f"fold {k} (original grid, no post-processing): {json.dumps(doc['mean'])}")
        return
    summary = report(out)
    doc = {
        "config": str(config),
        "threads": os.environ.get("OMP_NUM_THREADS"),
        "summary": summary,
        "target_dice": TARGET_DICE,
        "target_hd95_mm": TARGET_HD95_MM,
    }
    (out / "bench_la.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
