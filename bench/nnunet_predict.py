"""Benchmark: an nnU-Net v2 model folder run by ``medseg predict`` vs by ``nnUNetv2_predict``
(same weights, same scans, same run): per-case Dice between the two, Dice of each against the
reference, seconds end to end.

nnU-Net is not a medseg dependency: the benchmark builds nnU-Net's own virtual environment
(``OUT/venv``: ``torch==2.13.0`` and ``nnunetv2==2.8.1``, the code path of
``bench/nnunet_la.py``) and trains a small model there:

1. la2018_msd (12 LGE-MRI cases, 0.625 mm) resampled to 2 mm (image linear, label nearest)
   into nnU-Net's raw layout (``Dataset003_LA2mm``);
2. ``nnUNetv2_plan_and_preprocess -c 3d_fullres``; the 3d_fullres patch is reduced to
   ``--patch`` (so that the sliding window has several overlapping windows per case);
3. fold 0 of medseg's 4 folds (``splits_final.json``), the stock ``nnUNetTrainer`` for
   ``--budget-s`` seconds of wall clock (``bench/nnunet_la.py``'s driver), its weights saved
   as nnU-Net saves them (``fold_0/checkpoint_final.pth``);
4. the held-out cases at their native 0.625 mm grid predicted by ``nnUNetv2_predict`` and by
   ``medseg predict --model <the results folder>``, without and with test-time mirroring;
   each command timed end to end (process start to files written), one after the other;
5. three synthetic nnU-Net folders (:data:`SYNTHETIC_CASES`: CT normalisation, two channels
   with a transpose, anisotropic spacing, region-based labels; random weights) predicted by
   ``nnUNetv2_predict_from_modelfolder`` and by ``medseg predict`` (``--synthetic-only``
   runs just this step).

Prints the table and writes ``OUT/bench_nnunet_predict.json``. ``--smoke`` runs without
nnU-Net: a synthetic nnU-Net results folder (plans.json, dataset.json, fold_0 checkpoint in
nnU-Net's layout, built with ``dynamic_network_architectures``) is detected, loaded with
``weights_only`` and run by ``medseg predict`` on a synthetic scan at another spacing, with and
without mirroring; the output must overlay the input (the nnU-Net columns stay empty).

    python bench/nnunet_predict.py --budget-s 600
    python bench/nnunet_predict.py --synthetic-only
    python bench/nnunet_predict.py --smoke
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "la2018_msd"
DATASET_ID = 3
DATASET = "Dataset003_LA2mm"
CONFIG_DIR = "nnUNetTrainer__nnUNetPlans__3d_fullres"


def resample_to_2mm(data: Path, raw: Path) -> list[str]:
    """la2018_msd at 2 mm in nnU-Net's raw layout (SimpleITK: linear image, nearest label,
    the same physical extent); returns the case ids."""
    import SimpleITK as sitk

    from medseg.datasets import load_dataset

    ds = load_dataset(data)
    root = raw / DATASET
    (root / "imagesTr").mkdir(parents=True, exist_ok=True)
    (root / "labelsTr").mkdir(parents=True, exist_ok=True)
    for case in ds.cases:
        assert case.label is not None
        for src, dst, interp in (
            (case.images[0], root / "imagesTr" / f"{case.case_id}_0000.nii.gz", sitk.sitkLinear),
            (case.label, root / "labelsTr" / f"{case.case_id}.nii.gz", sitk.sitkNearestNeighbor),
        ):
            if dst.exists():
                continue
            im = sitk.ReadImage(str(src))
            sp = im.GetSpacing()
            size = [round(n * s / 2.0) for n, s in zip(im.GetSize(), sp, strict=True)]
            out = sitk.Resample(
                im, size, sitk.Transform(), interp, im.GetOrigin(), (2.0, 2.0, 2.0),
                im.GetDirection(), 0.0, im.GetPixelID(),
            )  # fmt: skip
            sitk.WriteImage(out, str(dst))
    from nnunet_la import write_dataset_json

    return write_dataset_json(root, [c.case_id for c in ds.cases])


def set_patch(plans_file: Path, patch: list[int]) -> None:
    """Set the 3d_fullres patch size of nnU-Net's plans (before training; the network's
    strides allow any multiple of 2^stages per axis)."""
    plans = json.loads(plans_file.read_text())
    cfg = plans["configurations"]["3d_fullres"]
    strides = cfg["architecture"]["arch_kwargs"]["strides"]
    for a, p in enumerate(patch):
        div = int(np.prod([s[a] for s in strides]))
        assert p % div == 0, f"patch {patch} axis {a} not divisible by {div}"
    cfg["patch_size"] = patch
    plans_file.write_text(json.dumps(plans, indent=2))


def nnunet_env(out: Path) -> dict[str, str]:
    return {
        **os.environ,
        "nnUNet_raw": str(out / "raw"),
        "nnUNet_preprocessed": str(out / "preprocessed"),
        "nnUNet_results": str(out / "results"),
        "nnUNet_n_proc_DA": "2",
    }


def train(out: Path, data: Path, budget_s: float, patch: list[int]) -> dict[str, Any]:
    """Steps 1-3 (skipped when ``fold_0/checkpoint_final.pth`` exists); returns the training
    figures."""
    from nnunet_la import INSIDE, ensure_venv, medseg_splits

    folder = out / "results" / DATASET / CONFIG_DIR
    stats_path = out / "train_fold0.json"
    if (folder / "fold_0" / "checkpoint_final.pth").is_file():
        return dict(json.loads(stats_path.read_text()))
    py = ensure_venv(out / "venv")
    env = nnunet_env(out)
    resample_to_2mm(data, out / "raw")
    plans_file = out / "preprocessed" / DATASET / "nnUNetPlans.json"
    if not plans_file.exists():
        subprocess.run(
            [str(py.parent / "nnUNetv2_plan_and_preprocess"), "-d", str(DATASET_ID),
             "-c", "3d_fullres", "-np", "2"],
            check=True, env=env,
        )  # fmt: skip
    set_patch(plans_file, patch)
    splits = medseg_splits(data)
    (out / "preprocessed" / DATASET / "splits_final.json").write_text(json.dumps(splits))
    subprocess.run(
        ["nice", str(py), "-c", INSIDE.replace('"2"', f'"{DATASET_ID}"'), "0", str(budget_s),
         "cpu", str(stats_path)],
        check=True, env=env,
    )  # fmt: skip
    shutil.copyfile(folder / "fold_0" / "checkpoint_budget.pth",
                    folder / "fold_0" / "checkpoint_final.pth")  # fmt: skip
    return dict(json.loads(stats_path.read_text()))


def synthetic_plans(
    *,
    schemes: list[str],
    spacing: list[float],
    patch: list[int],
    transpose_forward: list[int] | None = None,
    intensity: dict[str, dict[str, float]] | None = None,
    use_mask: list[bool] | None = None,
    network: str = "PlainConvUNet",
) -> dict[str, Any]:
    """An nnU-Net v2 ``plans.json`` (3d_fullres only) for a tiny ``network`` (3 stages,
    4/8/16 features): ``PlainConvUNet``, or ``ResidualEncoderUNet`` as nnU-Net's ResEnc
    planner writes it, or ``ResidualEncoderUNet-old-path`` (the class under its former module
    ``residual_unet``, as older plans name it); nnU-Net's keys and default resampling."""
    tf = transpose_forward or [0, 1, 2]
    tb = [tf.index(i) for i in range(3)]
    n = len(schemes)
    props = intensity or {
        str(c): {"mean": 0.0, "std": 1.0, "percentile_00_5": -3.0, "percentile_99_5": 3.0,
                 "max": 5.0, "min": -5.0, "median": 0.0}
        for c in range(n)
    }  # fmt: skip
    arch: dict[str, Any] = {
        "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
        "arch_kwargs": {
            "n_stages": 3,
            "features_per_stage": [4, 8, 16],
            "conv_op": "torch.nn.modules.conv.Conv3d",
            "kernel_sizes": [[3, 3, 3]] * 3,
            "strides": [[1, 1, 1], [2, 2, 2], [2, 2, 2]],
            "n_conv_per_stage": [1, 1, 1],
            "n_conv_per_stage_decoder": [1, 1],
            "conv_bias": True,
            "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
            "norm_op_kwargs": {"eps": 1e-05, "affine": True},
            "dropout_op": None,
            "dropout_op_kwargs": None,
            "nonlin": "torch.nn.LeakyReLU",
            "nonlin_kwargs": {"inplace": True},
        },
        "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
    }
    if network.startswith("ResidualEncoderUNet"):
        module = "residual_unet" if network.endswith("old-path") else "unet"
        arch["network_class_name"] = (
            f"dynamic_network_architectures.architectures.{module}.ResidualEncoderUNet"
        )
        arch["arch_kwargs"]["n_blocks_per_stage"] = [1, 2, 2]
        del arch["arch_kwargs"]["n_conv_per_stage"]
    return {
        "dataset_name": "Dataset999_Synthetic",
        "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": spacing,
        "original_median_shape_after_transp": [32, 32, 32],
        "image_reader_writer": "SimpleITKIO",
        "transpose_forward": tf,
        "transpose_backward": tb,
        "configurations": {
            "3d_fullres": {
                "data_identifier": "nnUNetPlans_3d_fullres",
                "preprocessor_name": "DefaultPreprocessor",
                "batch_size": 2,
                "patch_size": patch,
                "median_image_size_in_voxels": patch,
                "spacing": spacing,
                "normalization_schemes": schemes,
                "use_mask_for_norm": use_mask or [False] * n,
                "resampling_fn_data": "resample_data_or_seg_to_shape",
                "resampling_fn_seg": "resample_data_or_seg_to_shape",
                "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0,
                                              "force_separate_z": None},
                "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0,
                                             "force_separate_z": None},
                "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
                "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1,
                                                       "order_z": 0, "force_separate_z": None},
                "architecture": arch,
                "batch_dice": False,
            }
        },
        "experiment_planner_used": "ExperimentPlanner",
        "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": props,
    }  # fmt: skip


def synthetic_nnunet_folder(
    root: Path,
    plans: dict[str, Any],
    dataset: dict[str, Any],
    *,
    folds: tuple[int, ...] = (0,),
    seed: int = 0,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write an nnU-Net v2 results folder (``plans.json``, ``dataset.json``,
    ``fold_K/checkpoint_final.pth`` in nnU-Net's checkpoint layout: weights, SGD optimizer
    state, logging with NumPy scalars, ``init_args``, trainer name, mirroring axes), the
    network built with ``dynamic_network_architectures`` (seeded random weights, nnU-Net's
    initialisation). ``extra`` adds keys to each checkpoint dict."""
    import torch
    from dynamic_network_architectures.architectures.unet import (
        PlainConvUNet,
        ResidualEncoderUNet,
    )
    from dynamic_network_architectures.initialization.weight_init import InitWeights_He

    from medseg.nnunet.network import build_network

    root.mkdir(parents=True, exist_ok=True)
    (root / "plans.json").write_text(json.dumps(plans, indent=2))
    (root / "dataset.json").write_text(json.dumps(dataset, indent=2))
    cfg = plans["configurations"]["3d_fullres"]
    labels = {k: v for k, v in dataset["labels"].items() if k != "ignore"}
    regions = any(isinstance(v, list) and len(v) > 1 for v in labels.values())
    n_out = len(labels) - 1 if regions else len(labels)
    for k in folds:
        torch.manual_seed(seed + k)
        net = build_network(cfg["architecture"], len(dataset["channel_names"]), n_out, root)
        assert isinstance(net, (PlainConvUNet, ResidualEncoderUNet))
        net.apply(InitWeights_He(1e-2))
        opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.99, nesterov=True)
        x = torch.zeros(1, len(dataset["channel_names"]), *cfg["patch_size"])
        (0.0 * net(x).sum()).backward()  # optimizer state as after a step, weights unchanged
        opt.step()
        ck = {
            "network_weights": net.state_dict(),
            "optimizer_state": opt.state_dict(),
            "grad_scaler_state": None,
            "logging": {"mean_fg_dice": [np.float64(0.5)], "ema_fg_dice": [np.float64(0.5)],
                        "train_losses": [np.float32(-0.3)], "val_losses": [np.float32(-0.2)],
                        "lrs": [0.01], "epoch_start_timestamps": [1.0e9],
                        "epoch_end_timestamps": [1.0e9 + 60]},
            "_best_ema": np.float64(0.5),
            "current_epoch": 1,
            "init_args": {"plans": plans, "configuration": "3d_fullres", "fold": k,
                          "dataset_json": dataset, "device": torch.device("cpu")},
            "trainer_name": "nnUNetTrainer",
            "inference_allowed_mirroring_axes": (0, 1, 2),
            **(extra or {}),
        }  # fmt: skip
        (root / f"fold_{k}").mkdir(exist_ok=True)
        torch.save(ck, root / f"fold_{k}" / "checkpoint_final.pth")
    return root


def dice(a: np.ndarray, b: np.ndarray, label: int = 1) -> float:
    """Dice of ``label`` between two label arrays (NaN when both are empty)."""
    x, y = a == label, b == label
    den = int(x.sum()) + int(y.sum())
    return float("nan") if den == 0 else 2.0 * int((x & y).sum()) / den


def timed(cmd: list[str], env: dict[str, str] | None = None) -> float:
    """Seconds of wall clock of one command (process start to exit); fails loudly."""
    t0 = time.perf_counter()
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd[:3])} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
        )
    return wall


def medseg_cmd(model: Path, inp: Path, out: Path, tta: bool) -> list[str]:
    return [sys.executable, "-m", "medseg", "predict", "--model", str(model), str(inp), str(out),
            "--device", "cpu", "--quiet", "--overwrite", *(["--tta"] if tta else [])]  # fmt: skip


def compare(
    out: Path, cases: list[str], ref_labels: dict[str, Path] | None, nnunet_bin: Path | None
) -> list[dict[str, Any]]:
    """Predict ``out/input`` with both tools (without, then with mirroring) and score the
    pairs; ``nnunet_bin`` ``None`` runs medseg only (smoke)."""
    from medseg.io import read_label_map

    model = out / "results" / DATASET / CONFIG_DIR
    rows = []
    for tta in (False, True):
        tag = "tta" if tta else "plain"
        ms_dir, nn_dir = out / f"pred_medseg_{tag}", out / f"pred_nnunet_{tag}"
        row: dict[str, Any] = {"tta": tta}
        if nnunet_bin is not None:
            shutil.rmtree(nn_dir, ignore_errors=True)
            row["nnunet_s"] = timed(
                [str(nnunet_bin), "-i", str(out / "input"), "-o", str(nn_dir), "-d",
                 str(DATASET_ID), "-c", "3d_fullres", "-f", "0", "-device", "cpu",
                 "-npp", "1", "-nps", "1", *([] if tta else ["--disable_tta"])],
                env=nnunet_env(out),
            )  # fmt: skip
        row["medseg_s"] = timed(medseg_cmd(model, out / "input", ms_dir, tta))
        per_case = []
        for cid in cases:
            ms = read_label_map(ms_dir / f"{cid}.nii.gz")
            rec: dict[str, Any] = {"case": cid}
            if nnunet_bin is not None:
                nn = read_label_map(nn_dir / f"{cid}.nii.gz")
                ms.check_same_grid(nn)
                rec["dice_between"] = dice(ms.array, nn.array)
                rec["identical_voxels"] = float((ms.array == nn.array).mean())
            if ref_labels is not None:
                ref = read_label_map(ref_labels[cid])
                ms.check_same_grid(ref)
                rec["dice_medseg_ref"] = dice(ms.array, ref.array)
                if nnunet_bin is not None:
                    rec["dice_nnunet_ref"] = dice(nn.array, ref.array)
            per_case.append(rec)
        row["cases"] = per_case
        rows.append(row)
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    print("| mirroring | case | Dice medseg vs nnU-Net | identical voxels | Dice medseg vs "
          "reference | Dice nnU-Net vs reference |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for r in rows:
        for c in r["cases"]:
            cells = [
                f"{c[k]:.4f}" if k in c else "-"
                for k in ("dice_between", "identical_voxels", "dice_medseg_ref", "dice_nnunet_ref")
            ]
            print(f"| {'tta' if r['tta'] else 'off'} | {c['case'][:12]} | {' | '.join(cells)} |")
    print()
    print("| mirroring | cases | nnUNetv2_predict s | medseg predict s | ratio nnU-Net/medseg |")
    print("|---|---|---|---|---|")
    for r in rows:
        nn = r.get("nnunet_s")
        ratio = f"{nn / r['medseg_s']:.2f}" if nn else "-"
        nn_s = f"{nn:.1f}" if nn else "-"
        print(f"| {'tta' if r['tta'] else 'off'} | {len(r['cases'])} | {nn_s} | "
              f"{r['medseg_s']:.1f} | {ratio} |")  # fmt: skip


def smoke(out: Path) -> None:
    """Without nnU-Net: a synthetic nnU-Net results folder is detected and run by
    ``medseg predict`` (with and without mirroring) on a synthetic scan at another spacing;
    the output must overlay the input."""
    import nibabel as nib

    from medseg.nnunet import is_nnunet_folder

    model = out / "results" / DATASET / CONFIG_DIR
    plans = synthetic_plans(schemes=["ZScoreNormalization"], spacing=[2.0, 2.0, 2.0],
                            patch=[16, 16, 16])  # fmt: skip
    dataset = {"channel_names": {"0": "MRI"}, "labels": {"background": 0, "left_atrium": 1},
               "numTraining": 2, "file_ending": ".nii.gz"}  # fmt: skip
    synthetic_nnunet_folder(model, plans, dataset)
    assert is_nnunet_folder(model) and not is_nnunet_folder(out)
    rng = np.random.default_rng(0)
    (out / "input").mkdir(parents=True, exist_ok=True)
    cases = []
    for i in range(1):
        affine = np.diag([-1.25, -1.25, 1.5, 1.0])
        affine[:3, 3] = [10.0, -5.0, 3.0]
        img = rng.normal(100, 20, (40, 36, 24)).astype(np.float32)
        nib.save(nib.Nifti1Image(img, affine), out / "input" / f"case{i}_0000.nii.gz")
        cases.append(f"case{i}")
    rows = compare(out, cases, None, None)
    from medseg.io import read_label_map, read_volume

    for c in cases:
        lm = read_label_map(out / "pred_medseg_plain" / f"{c}.nii.gz")
        lm.check_same_grid(read_volume(out / "input" / f"{c}_0000.nii.gz"))
    print("synthetic nnU-Net folder detected and run by medseg predict; outputs overlay inputs")
    print("(nnUNetv2_predict is not installed in --smoke: the vs-nnU-Net columns are '-')")
    print_table(rows)


#: Synthetic nnU-Net folders that exercise what the LA model does not: CT normalisation,
#: several channels with use_mask_for_norm, a transpose, anisotropic spacing (nnU-Net's
#: separate-z resampling both ways), a ResidualEncoderUNet, region-based labels. Random
#: weights (no training).
SYNTHETIC_CASES: dict[str, dict[str, Any]] = {
    "ct-anisotropic": dict(
        schemes=["CTNormalization"], spacing=[4.0, 1.2, 1.2], patch=[8, 32, 32],
        input_spacing=(0.8, 0.8, 3.5), channels={"0": "CT"},
        labels={"background": 0, "liver": 1, "spleen": 2},
    ),
    "2-channel-transposed": dict(
        schemes=["CTNormalization", "ZScoreNormalization"], use_mask=[False, True],
        spacing=[1.6, 1.4, 1.5], patch=[16, 16, 16], transpose_forward=[2, 0, 1],
        input_spacing=(1.0, 1.1, 1.3), channels={"0": "CT", "1": "PET"},
        labels={"background": 0, "lesion": 1},
    ),
    "resenc": dict(
        schemes=["ZScoreNormalization"], spacing=[1.5, 1.5, 1.5], patch=[16, 16, 16],
        input_spacing=(1.0, 1.0, 1.2), channels={"0": "T2"}, network="ResidualEncoderUNet",
        labels={"background": 0, "a": 1, "b": 2},
    ),
    "regions": dict(
        schemes=["ZScoreNormalization"], spacing=[1.5, 1.5, 1.5], patch=[16, 16, 16],
        input_spacing=(1.0, 1.0, 1.2), channels={"0": "T1"},
        labels={"background": 0, "whole": [1, 2], "core": [2]}, regions_class_order=[1, 2],
    ),
}  # fmt: skip


def synthetic_vs_nnunet(out: Path, bin_dir: Path) -> list[dict[str, Any]]:
    """Each :data:`SYNTHETIC_CASES` folder predicted by nnU-Net's
    ``nnUNetv2_predict_from_modelfolder`` and by ``medseg predict`` on two synthetic scans
    (a noisy block with a zero border), without and with mirroring; Dice per label between."""
    import nibabel as nib

    from medseg.io import read_label_map

    rows = []
    for name, spec in SYNTHETIC_CASES.items():
        root = out / "synthetic" / name
        shutil.rmtree(root, ignore_errors=True)
        ct = {"mean": 40.0, "std": 80.0, "percentile_00_5": -100.0, "percentile_99_5": 300.0}
        plans = synthetic_plans(
            schemes=spec["schemes"], spacing=spec["spacing"], patch=spec["patch"],
            transpose_forward=spec.get("transpose_forward"), use_mask=spec.get("use_mask"),
            intensity={str(c): ct for c in range(len(spec["schemes"]))},
            network=spec.get("network", "PlainConvUNet"),
        )  # fmt: skip
        ds = {"channel_names": spec["channels"], "labels": spec["labels"], "numTraining": 1,
              "file_ending": ".nii.gz"}  # fmt: skip
        if "regions_class_order" in spec:
            ds["regions_class_order"] = spec["regions_class_order"]
        model = synthetic_nnunet_folder(root / "model", plans, ds, seed=3)
        rng = np.random.default_rng(1)
        (root / "input").mkdir()
        affine = np.diag([*spec["input_spacing"], 1.0])
        affine[:3, :3] = affine[:3, :3] @ np.array([[0, 1, 0], [-1, 0, 0], [0, 0, 1]])
        for case in ("a", "b"):
            for c in range(len(spec["schemes"])):
                img = np.zeros((44, 40, 18), dtype=np.float32)
                img[3:-4, 2:-3, 1:-2] = rng.uniform(-200, 400, (37, 35, 15))
                nib.save(nib.Nifti1Image(img, affine), root / "input" / f"{case}_{c:04d}.nii.gz")
        for tta in (False, True):
            tag = "tta" if tta else "plain"
            nn_s = timed(
                [str(bin_dir / "nnUNetv2_predict_from_modelfolder"), "-i", str(root / "input"),
                 "-o", str(root / f"nnunet_{tag}"), "-m", str(model), "-f", "0", "-device",
                 "cpu", "-npp", "1", "-nps", "1", *([] if tta else ["--disable_tta"])],
            )  # fmt: skip
            ms_s = timed(medseg_cmd(model, root / "input", root / f"medseg_{tag}", tta))
            for case in ("a", "b"):
                ms = read_label_map(root / f"medseg_{tag}" / f"{case}.nii.gz")
                nn = read_label_map(root / f"nnunet_{tag}" / f"{case}.nii.gz")
                ms.check_same_grid(nn)
                values = sorted((set(np.unique(nn.array)) | set(np.unique(ms.array))) - {0})
                rows.append({
                    "folder": name, "tta": tta, "case": case, "nnunet_s": nn_s, "medseg_s": ms_s,
                    "identical_voxels": float((ms.array == nn.array).mean()),
                    "labels": {int(v): {"dice": dice(ms.array, nn.array, int(v)),
                                        "medseg_voxels": int((ms.array == v).sum()),
                                        "nnunet_voxels": int((nn.array == v).sum())}
                               for v in values},
                })  # fmt: skip
    return rows


def print_synthetic(rows: list[dict[str, Any]]) -> None:
    print("\n| synthetic folder | mirroring | case | identical voxels | per label: Dice medseg vs "
          "nnU-Net (voxels medseg / nnU-Net) |")  # fmt: skip
    print("|---|---|---|---|---|")
    for r in rows:
        per = "; ".join(f"{v}: {d['dice']:.4f} ({d['medseg_voxels']}/{d['nnunet_voxels']})"
                        for v, d in r["labels"].items())  # fmt: skip
        print(f"| {r['folder']} | {'tta' if r['tta'] else 'off'} | {r['case']} | "
              f"{r['identical_voxels']:.5f} | {per} |")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--out", type=Path, default=Path("runs/nnunet_predict"))
    ap.add_argument("--budget-s", type=float, default=480.0, help="training wall clock")
    ap.add_argument("--patch", type=int, nargs=3, default=[20, 32, 40])
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--synthetic-only", action="store_true", help="only the synthetic folders")
    args = ap.parse_args()
    if args.smoke:
        smoke(Path("nnunet_predict_smoke").resolve())
        return
    if args.synthetic_only:
        from nnunet_la import ensure_venv

        py = ensure_venv(args.out.resolve() / "venv")
        srows = synthetic_vs_nnunet(args.out.resolve(), py.parent)
        print_synthetic(srows)
        (args.out / "bench_nnunet_synthetic.json").write_text(json.dumps(srows, indent=2))
        return
    from nnunet_la import medseg_splits

    out: Path = args.out.resolve()
    stats = train(out, args.data, args.budget_s, list(args.patch))
    from medseg.datasets import load_dataset

    ds = load_dataset(args.data)
    cases = sorted(medseg_splits(args.data)[0]["val"])
    (out / "input").mkdir(exist_ok=True)
    refs = {}
    for cid in cases:
        link = out / "input" / f"{cid}_0000.nii.gz"
        link.unlink(missing_ok=True)
        link.symlink_to(ds.case(cid).images[0])
        lab = ds.case(cid).label
        assert lab is not None
        refs[cid] = lab
    bin_dir = out / "venv" / "bin"
    rows = compare(out, cases, refs, bin_dir / "nnUNetv2_predict")
    print(
        f"\nnnU-Net v2.8.1 3d_fullres at 2 mm, fold 0 trained {stats['iterations']} "
        f"iterations ({stats['wall_s']:.0f} s); {len(cases)} held-out cases at their native "
        "0.625 mm grid"
    )
    print_table(rows)
    srows = synthetic_vs_nnunet(out, bin_dir)
    print_synthetic(srows)
    doc = {"train": stats, "cases": cases, "rows": rows, "synthetic": srows,
           "cpu_count": os.cpu_count()}  # fmt: skip
    (out / "bench_nnunet_predict.json").write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
