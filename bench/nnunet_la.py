"""Benchmark: nnU-Net v2 (the field's default) on the same la2018_msd folds as
``bench/train_la.py``, at an equal wall-clock training budget, scored by the same metric code.

nnU-Net is not a medseg dependency: the benchmark creates its own virtual environment
(``OUT/venv``: ``torch==2.13.0`` and ``nnunetv2==2.8.1`` from PyPI) and runs nnU-Net there.

1. convert la2018_msd to nnU-Net's raw layout (``Dataset002_LA``, ``<case>_0000.nii.gz``);
2. ``nnUNetv2_plan_and_preprocess -c 3d_fullres`` (nnU-Net's own plan: 0.625 mm, its patch);
3. write medseg's folds (``medseg.datasets.make_splits(ds, 4, 0)``, the folds that
   ``medseg plan --folds 4`` writes) as ``splits_final.json``, so both see the same cases;
4. train fold K with the stock ``nnUNetTrainer`` for ``--budget-s`` seconds of wall clock
   (epochs of 250 iterations, its validation and checkpointing), then save the weights it has
   (``checkpoint_budget.pth``), and log how many iterations the budget allowed and the seconds
   per iteration (augmentation in nnU-Net's default worker processes: at most the CPU count);
5. predict the fold's held-out cases with those weights (``nnUNetv2_predict``; ``--tta`` for
   nnU-Net's 8-fold mirroring, off by default on CPU) and score them on the original grid with
   ``medseg.metrics.evaluate_pair`` (Dice, HD95 in mm).

Prints a table and writes ``OUT/bench_nnunet.json``. On a 2-core CPU nnU-Net's default
schedule (1000 epochs x 250 iterations) is far beyond any short budget; the table says how
far. ``--smoke`` checks the conversion and the splits on a tiny synthetic dataset without
installing nnU-Net (the test suite runs it).

    python bench/nnunet_la.py --fold 0 --budget-s 900 --device cpu
    python bench/nnunet_la.py --fold 0 --budget-s 480 --device cuda --tta
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "la2018_msd"
DATASET = "Dataset002_LA"
PACKAGES = ("torch==2.13.0", "nnunetv2==2.8.1")

# Runs inside nnU-Net's environment: the stock trainer, stopped by wall clock.
INSIDE = r"""
import json, os, sys, time, torch
from nnunetv2.run.run_training import get_trainer_from_args
fold, budget, device, out = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3], sys.argv[4]
t = get_trainer_from_args("2", "3d_fullres", fold, device=torch.device(device))
t0 = time.perf_counter()
t.on_train_start()
setup_s = time.perf_counter() - t0
its, epochs, it_times, stop = 0, 0, [], False
for epoch in range(t.current_epoch, t.num_epochs):
    t.on_epoch_start(); t.on_train_epoch_start(); outs = []
    for _ in range(t.num_iterations_per_epoch):
        ti = time.perf_counter()
        outs.append(t.train_step(next(t.dataloader_train)))
        it_times.append(time.perf_counter() - ti); its += 1
        if time.perf_counter() - t0 > budget:
            stop = True; break
    if stop:
        break
    t.on_train_epoch_end(outs)
    with torch.no_grad():
        t.on_validation_epoch_start()
        n_val = t.num_val_iterations_per_epoch
        vals = [t.validation_step(next(t.dataloader_val)) for _ in range(n_val)]
        t.on_validation_epoch_end(vals)
    t.on_epoch_end(); epochs += 1
    if time.perf_counter() - t0 > budget:
        break
wall = time.perf_counter() - t0
t.save_checkpoint(t.output_folder + "/checkpoint_budget.pth")
steady = it_times[1:] or it_times
cm = t.configuration_manager
doc = {"iterations": its, "epochs_finished": epochs, "wall_s": wall, "setup_s": setup_s,
       "s_per_iteration": sum(steady) / len(steady), "patch_size": list(cm.patch_size),
       "batch_size": cm.batch_size, "spacing": list(cm.spacing),
       "default_iterations": t.num_epochs * t.num_iterations_per_epoch}
json.dump(doc, open(out, "w"), indent=2)
os._exit(0)  # the augmentation workers are daemons; do not wait for them
"""


def to_nnunet_raw(data: Path, raw: Path) -> list[str]:
    """Copy the Decathlon-layout dataset into nnU-Net's raw layout; returns the case ids."""
    import shutil

    from medseg.datasets import load_dataset

    ds = load_dataset(data)
    root = raw / DATASET
    (root / "imagesTr").mkdir(parents=True, exist_ok=True)
    (root / "labelsTr").mkdir(parents=True, exist_ok=True)
    for case in ds.cases:
        (img,) = case.images
        assert case.label is not None
        shutil.copyfile(img, root / "imagesTr" / f"{case.case_id}_0000.nii.gz")
        shutil.copyfile(case.label, root / "labelsTr" / f"{case.case_id}.nii.gz")
    return write_dataset_json(root, [c.case_id for c in ds.cases])


def write_dataset_json(root: Path, case_ids: list[str]) -> list[str]:
    """nnU-Net's ``dataset.json`` for the left-atrium cases in ``root``; returns the ids."""
    doc = {
        "channel_names": {"0": "MRI"},
        "labels": {"background": 0, "left_atrium": 1},
        "numTraining": len(case_ids),
        "file_ending": ".nii.gz",
    }
    (root / "dataset.json").write_text(json.dumps(doc, indent=2))
    return case_ids


def medseg_splits(data: Path, n_folds: int = 4) -> list[dict[str, list[str]]]:
    """The folds ``medseg plan --folds 4`` writes (seed 0), in nnU-Net's splits format."""
    from medseg.datasets import load_dataset, make_splits

    return [{"train": list(s["train"]), "val": list(s["val"])} for s in make_splits(
        load_dataset(data), n_folds, 0
    )]  # fmt: skip


def ensure_venv(venv: Path) -> Path:
    """nnU-Net's own environment (created once); returns its python."""
    py = venv / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(py), "-m", "pip", "install", "-q"]
        subprocess.run([*pip, PACKAGES[0]], check=True)  # the CPU build here (exact pin)
        subprocess.run([*pip, *PACKAGES], check=True)
        # timm pulls torchvision built for a newer CUDA torch; nnU-Net does not import it
        subprocess.run([str(py), "-m", "pip", "uninstall", "-q", "-y", "torchvision"], check=True)
    return py


def score(pred_dir: Path, data: Path, cases: list[str]) -> list[dict[str, Any]]:
    """Dice and HD95 (mm) of nnU-Net's predictions on the original grid, by medseg.metrics."""
    from medseg.datasets import load_dataset
    from medseg.io import read_label_map
    from medseg.metrics import evaluate_pair

    ds = load_dataset(data)
    rows = []
    for cid in cases:
        ref_path = ds.case(cid).label
        assert ref_path is not None
        pred, ref = read_label_map(pred_dir / f"{cid}.nii.gz"), read_label_map(ref_path)
        (rec,) = evaluate_pair(pred, ref, labels=[1], case=cid)
        rows.append({"case": cid, "dice": rec.dice, "hd95_mm": rec.hd95_mm})
    return rows


def smoke(out: Path) -> None:
    """Conversion and splits on 4 synthetic cases (no nnU-Net install)."""
    sys.path.insert(0, str(ROOT / "bench"))
    from train_la import synthetic_dataset

    data = synthetic_dataset(out / "data")
    cases = to_nnunet_raw(data, out / "raw")
    splits = medseg_splits(data)
    held = sorted(c for s in splits for c in s["val"])
    assert held == sorted(cases), (held, cases)
    n_files = len(list((out / "raw" / DATASET / "imagesTr").iterdir()))
    print(f"{n_files} images in nnU-Net's layout; folds medseg vs splits_final.json: identical")
    print(f"{'fold':>4} {'train':>5} {'val':>3}  held out")
    for k, s in enumerate(splits):
        print(f"{k:>4} {len(s['train']):>5} {len(s['val']):>3}  {', '.join(s['val'])}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--out", type=Path, default=Path("runs/nnunet_la"))
    ap.add_argument("--fold", type=int, default=0)
    ap.add_argument("--budget-s", type=float, default=900.0, help="training wall clock")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--tta", action="store_true", help="nnU-Net's mirroring at prediction")
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args()
    if args.smoke:
        smoke(Path("nnunet_smoke"))
        return
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    py = ensure_venv(out / "venv")
    env = {
        **os.environ,
        "nnUNet_raw": str(out / "raw"),
        "nnUNet_preprocessed": str(out / "preprocessed"),
        "nnUNet_results": str(out / "results"),
    }
    bin_dir = py.parent
    cases = to_nnunet_raw(args.data, out / "raw")
    t0 = time.perf_counter()
    if not (out / "preprocessed" / DATASET / "nnUNetPlans.json").exists():
        subprocess.run(
            [str(bin_dir / "nnUNetv2_plan_and_preprocess"), "-d", "2", "-c", "3d_fullres",
             "-np", "2", "--verify_dataset_integrity"],
            check=True, env=env,
        )  # fmt: skip
    preprocess_s = time.perf_counter() - t0
    splits = medseg_splits(args.data)
    (out / "preprocessed" / DATASET / "splits_final.json").write_text(json.dumps(splits))
    stats_path = out / f"train_fold{args.fold}.json"
    subprocess.run(
        [str(py), "-c", INSIDE, str(args.fold), str(args.budget_s), args.device, str(stats_path)],
        check=True, env=env,
    )  # fmt: skip
    stats = json.loads(stats_path.read_text())
    fold_dir = out / "results" / DATASET / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    val = splits[args.fold]["val"]
    inp = out / f"val_fold{args.fold}"
    inp.mkdir(exist_ok=True)
    for cid in val:
        src = out / "raw" / DATASET / "imagesTr" / f"{cid}_0000.nii.gz"
        (inp / src.name).unlink(missing_ok=True)
        (inp / src.name).symlink_to(src)
    pred_dir = out / f"pred_fold{args.fold}"
    t1 = time.perf_counter()
    subprocess.run(
        [str(bin_dir / "nnUNetv2_predict"), "-i", str(inp), "-o", str(pred_dir), "-d", "2",
         "-c", "3d_fullres", "-f", str(args.fold), "-chk", "checkpoint_budget.pth",
         "-device", args.device, "-npp", "1", "-nps", "1",
         *([] if args.tta else ["--disable_tta"])],
        check=True, env=env,
    )  # fmt: skip
    predict_s = time.perf_counter() - t1
    rows = score(pred_dir, args.data, val)
    print(
        f"\nnnU-Net v2 3d_fullres, fold {args.fold} of 4, {args.device}, "
        f"budget {args.budget_s:.0f} s"
    )
    print(
        f"plan: spacing {stats['spacing']} mm, patch {stats['patch_size']}, batch "
        f"{stats['batch_size']}; preprocessing {preprocess_s:.0f} s"
    )
    print(
        f"trained {stats['iterations']} iterations ({stats['epochs_finished']} epochs finished) "
        f"in {stats['wall_s']:.0f} s, {stats['s_per_iteration']:.2f} s/iteration; its default "
        f"schedule is {stats['default_iterations']} iterations = "
        f"{stats['default_iterations'] * stats['s_per_iteration'] / 3600:.1f} h here"
    )
    print(f"{'case':<22} {'Dice':>7} {'HD95 mm':>8}")
    for r in rows:
        print(f"{r['case']:<22} {r['dice']:>7.4f} {r['hd95_mm']:>8.2f}")
    mean_d = sum(r["dice"] for r in rows) / len(rows)
    print(f"{'mean':<22} {mean_d:>7.4f}   prediction {predict_s:.0f} s, tta {args.tta}")
    doc = {
        "fold": args.fold,
        "device": args.device,
        "budget_s": args.budget_s,
        "preprocess_s": preprocess_s,
        "train": stats,
        "predict_s": predict_s,
        "tta": args.tta,
        "cases": rows,
        "mean_dice": mean_d,
        "fold_dir": str(fold_dir),
        "cases_converted": len(cases),
    }
    (out / "bench_nnunet.json").write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
