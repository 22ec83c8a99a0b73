"""Benchmark: train medseg's default recipe on la2018_msd (left atrium, 12 labelled LGE-MRI
scans) and report Dice and HD95 (mm) on held-out folds, on the original image grid.

GPU (the real benchmark; nnU-Net-level target >= 0.90 Dice)::

    python bench/train_la.py --preset gpu --device cuda --folds all

CPU budget run (what fits in ~15 minutes on 2 shared cores: coarser spacing, small patch,
narrow network, few iterations)::

    python bench/train_la.py --preset cpu --folds 0

Prints a table (per fold and mean: Dice, HD95, wall time, time to 0.85 / 0.90 validation
Dice) and the ratio of the mean Dice to the 0.90 target, and writes ``OUT/bench_la.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "la2018_msd"
TARGET_DICE = 0.90

PRESETS: dict[str, dict[str, Any]] = {
    # nnU-Net-like default: plan's spacing/patch/network, 1000 x 250 iterations, bf16.
    "gpu": {
        "target_spacing": None,
        "patch_size": None,
        "base_filters": None,
        "max_filters": None,
        "epochs": 300,
        "iterations_per_epoch": 250,
        "val_every": 10,
        "batch_size": None,
        "lr": 0.01,
        "num_workers": 8,
    },
    # 2-core CPU, ~15 min: 1.5 mm spacing (vs 0.625 mm native), 48x48x32 patch, narrow net.
    "cpu": {
        "target_spacing": [1.5, 1.5, 1.5],
        "patch_size": [48, 48, 32],
        "base_filters": 8,
        "max_filters": 64,
        "epochs": 100,
        "iterations_per_epoch": 25,
        "val_every": 5,
        "batch_size": 2,
        "lr": 0.02,
        "num_workers": 0,
    },
}


def make_plan(data: Path, out: Path, preset: dict[str, Any], gpu_gb: float) -> Path:
    """Plan the dataset with ``medseg.plan.plan_dataset``; the CPU preset coarsens the spacing
    and re-derives the topology for its patch (``medseg.plan.network_topology``)."""
    from medseg.datasets import load_dataset
    from medseg.plan import network_topology, plan_dataset, plan_from_dict, save_plan

    plan = plan_dataset(load_dataset(data), gpu_gb)
    if preset["target_spacing"] is not None:
        d = plan.model_dump(mode="json")
        d["target_spacing"] = preset["target_spacing"]
        d["patch_size"] = preset["patch_size"]
        d["network"] = network_topology(preset["patch_size"], preset["target_spacing"]).model_dump()
        d["notes"] = [*d.get("notes", []), "bench/train_la.py cpu preset: coarser spacing"]
        plan = plan_from_dict(d, "bench cpu preset")
    return save_plan(plan, out / "plan.yaml", overwrite=True)


def time_to(history: list[dict[str, Any]], thr: float) -> float:
    """Seconds of training (epochs + validation) until validation mean Dice >= thr (NaN if
    never)."""
    t = 0.0
    for r in history:
        t += float(r["epoch_time_s"]) + float(r.get("val_time_s", 0.0))
        v = r.get("val_mean_dice", float("nan"))
        if isinstance(v, float) and not math.isnan(v) and v >= thr:
            return t
    return float("nan")


def evaluate_on_original_grid(model_dir: Path, fold: int, device: str) -> list[dict[str, Any]]:
    """Predict the fold's validation cases with its best checkpoint on their original grid;
    Dice and HD95 (mm) via ``medseg.metrics.evaluate_pair``, raw and after keeping the largest
    connected component (``*_lcc``)."""
    from medseg.datasets import load_dataset, read_case, read_splits
    from medseg.inference import Predictor, keep_largest_component
    from medseg.metrics import evaluate_pair
    from medseg.plan import load_plan

    plan = load_plan(model_dir / "plan.yaml")
    ds = load_dataset(plan.dataset)
    split = read_splits(model_dir / "splits.json", ds)[fold]
    pred = Predictor.from_paths([model_dir / f"fold_{fold}" / "checkpoint_best.pt"], device=device)
    rows = []
    for cid in split["val"]:
        vols, ref = read_case(ds.case(cid), plan.label_names)
        assert ref is not None
        t0 = time.perf_counter()
        lm = pred.predict(vols)
        dt = time.perf_counter() - t0
        lcc = lm.with_array(keep_largest_component(lm.array))
        (rec,) = evaluate_pair(lm, ref, labels=[1], case=cid)
        (rec_l,) = evaluate_pair(lcc, ref, labels=[1], case=cid)
        rows.append(
            {
                "case": cid,
                "dice": rec.dice,
                "hd95_mm": rec.hd95_mm,
                "dice_lcc": rec_l.dice,
                "hd95_lcc_mm": rec_l.hd95_mm,
                "predict_s": dt,
            }
        )
    return rows


def _history(fold_dir: Path) -> tuple[list[dict[str, Any]], float, int]:
    """History, training seconds and best epoch of a finished fold (from its checkpoints)."""
    from medseg.checkpoint import load_checkpoint

    last = load_checkpoint(fold_dir / "checkpoint_last.pt")
    assert last.training is not None
    hist = json.loads(last.training["history_json"])
    wall = sum(float(r["epoch_time_s"]) + float(r.get("val_time_s", 0.0)) for r in hist)
    return hist, wall, int(last.training["best_epoch"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--out", type=Path, default=Path("runs/la2018_bench"))
    ap.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--amp", choices=("auto", "none", "bf16", "fp16"), default="auto")
    ap.add_argument("--folds", default="0", help="comma-separated fold indices or 'all'")
    ap.add_argument("--n-folds", type=int, default=4)
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--iterations", type=int)
    ap.add_argument("--gpu-gb", type=float, default=40.0, help="VRAM budget for the plan")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument(
        "--eval-only", action="store_true", help="only evaluate OUT/fold_K/checkpoint_best.pt"
    )
    args = ap.parse_args()

    from medseg.training import TrainConfig, train

    preset = dict(PRESETS[args.preset])
    args.out.mkdir(parents=True, exist_ok=True)
    plan_path = (
        args.out / "plan.yaml"
        if (args.resume or args.eval_only) and (args.out / "plan.yaml").exists()
        else make_plan(args.data, args.out, preset, args.gpu_gb)
    )
    net: dict[str, Any] = {"architecture": "dynunet", "deep_supervision": True}
    if preset["base_filters"] is not None:
        net["base_filters"] = preset["base_filters"]
        net["max_filters"] = preset["max_filters"]
    cfg = TrainConfig.model_validate(
        {
            "plan": str(plan_path),
            "epochs": args.epochs or preset["epochs"],
            "iterations_per_epoch": args.iterations or preset["iterations_per_epoch"],
            "val_every": preset["val_every"],
            "device": args.device,
            "amp": args.amp,
            "compile": args.compile,
            "num_threads": args.threads,
            "progress_bar": False,
            "optimizer": {"name": "sgd", "lr": preset["lr"]},
            "network": net,
            "data": {
                "dataset": str(args.data),
                "n_folds": args.n_folds,
                "batch_size": preset["batch_size"],
                "loader": "auto",
                "num_workers": preset["num_workers"],
            },
        }
    )
    folds = (
        list(range(args.n_folds))
        if args.folds == "all"
        else [int(f) for f in args.folds.split(",")]
    )
    t0 = time.perf_counter()
    table = []
    for k in folds:
        if args.eval_only:
            history, wall_s, best_epoch = _history(args.out / f"fold_{k}")
        else:
            fr = train(cfg, args.out, fold=k, resume=args.resume).folds[0]
            history, wall_s, best_epoch = fr.history, fr.wall_s, fr.best_epoch
        rows = evaluate_on_original_grid(args.out, k, args.device)
        table.append(
            {
                "fold": k,
                "n_val": len(rows),
                "dice": float(np.nanmean([r["dice"] for r in rows])),
                "hd95_mm": float(np.nanmean([r["hd95_mm"] for r in rows])),
                "dice_lcc": float(np.nanmean([r["dice_lcc"] for r in rows])),
                "hd95_lcc_mm": float(np.nanmean([r["hd95_lcc_mm"] for r in rows])),
                "train_wall_s": wall_s,
                "time_to_085_s": time_to(history, 0.85),
                "time_to_090_s": time_to(history, 0.90),
                "best_epoch": best_epoch,
                "cases": rows,
            }
        )
    wall = time.perf_counter() - t0
    mean_dice = float(np.mean([t["dice"] for t in table]))
    mean_hd = float(np.mean([t["hd95_mm"] for t in table]))
    print(
        f"\nla2018_msd, preset {args.preset}, device {args.device}, {cfg.epochs} epochs x "
        f"{cfg.iterations_per_epoch} iterations, folds {folds} of {args.n_folds}"
    )
    print(
        f"{'fold':>4} {'n_val':>5} {'Dice':>7} {'HD95 mm':>8} {'Dice LCC':>8} {'HD95 LCC':>8} "
        f"{'train s':>8} {'t->0.85 s':>9} {'t->0.90 s':>9}"
    )
    for t in table:
        print(
            f"{t['fold']:>4} {t['n_val']:>5} {t['dice']:>7.4f} {t['hd95_mm']:>8.2f} "
            f"{t['dice_lcc']:>8.4f} {t['hd95_lcc_mm']:>8.2f} {t['train_wall_s']:>8.0f} "
            f"{t['time_to_085_s']:>9.0f} {t['time_to_090_s']:>9.0f}"
        )
    mean_lcc = float(np.mean([t["dice_lcc"] for t in table]))
    mean_hd_lcc = float(np.mean([t["hd95_lcc_mm"] for t in table]))
    print(
        f"mean {'':>5} {mean_dice:>7.4f} {mean_hd:>8.2f} {mean_lcc:>8.4f} {mean_hd_lcc:>8.2f}"
        f"   total wall {wall:.0f} s"
    )
    print(f"Dice / target {TARGET_DICE:.2f} = {mean_dice / TARGET_DICE:.3f}")
    doc = {
        "preset": args.preset,
        "device": args.device,
        "config": cfg.resolved(),
        "folds": table,
        "mean_dice": mean_dice,
        "mean_hd95_mm": mean_hd,
        "mean_dice_lcc": mean_lcc,
        "mean_hd95_lcc_mm": mean_hd_lcc,
        "wall_s": wall,
        "target_dice": TARGET_DICE,
    }
    (args.out / "bench_la.json").write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
