"""Cross-validation summary and post-processing chosen on out-of-fold predictions (nnU-Net's
rule + small-component removal), on synthetic folds whose right answer is known; Dice-only
scores equal evaluate_pair's; the model folder's choice is applied by prediction."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from support.volumes import box, sphere, write_nifti

from medseg.datasets import load_dataset
from medseg.metrics import dice_scores, evaluate_arrays
from medseg.postprocess import (
    Postprocessing,
    PostprocessingStep,
    apply_postprocessing,
    keep_largest_foreground,
    load_postprocessing,
)
from medseg.training.crossval import (
    choose_postprocessing,
    out_of_fold_cases,
    summarize_cross_validation,
)
from medseg.training.logging import write_csv

SHAPE = (40, 40, 30)


def test_dice_scores_equal_evaluate_pair(rng: np.random.Generator) -> None:
    pred = rng.integers(0, 4, SHAPE).astype(np.uint8)
    ref = rng.integers(0, 3, SHAPE).astype(np.uint8)
    d = dice_scores(pred, ref, [1, 2, 3, 5])
    recs = {int(r.label): r.dice for r in evaluate_arrays(pred, ref, (1, 1, 1), labels=[1, 2, 3])}
    for v in (1, 2, 3):
        assert d[v] == pytest.approx(recs[v], abs=1e-12)
    assert np.isnan(d[5])  # absent from both: undefined, as evaluate_pair


def test_keep_largest_foreground_merges_labels() -> None:
    a = box(SHAPE, (2, 2, 2), (12, 12, 12), 1)
    a[12:16, 2:12, 2:12] = 2  # touches label 1: the same foreground region
    a[30:33, 30:33, 20:23] = 1  # a separate blob
    out = keep_largest_foreground(a)
    assert int((out == 2).sum()) == int((a == 2).sum())
    assert out[30:33, 30:33, 20:23].max() == 0 and int((out == 1).sum()) == 1000


#: per fold: validation Dice 0.5 at 60 s, 0.87 at 120 s; fold 1 reaches 0.91 at 180 s
HISTORIES = [
    [
        {"epoch": 1, "train_loss": 1.0, "elapsed_s": 60.0, "val_mean_dice": 0.5},
        {"epoch": 2, "train_loss": 0.5, "elapsed_s": 120.0, "val_mean_dice": 0.87},
    ],
    [
        {"epoch": 1, "train_loss": 1.0, "elapsed_s": 60.0, "val_mean_dice": 0.5},
        {"epoch": 2, "train_loss": 0.6, "elapsed_s": 120.0},  # not a validation epoch
        {"epoch": 3, "train_loss": 0.4, "elapsed_s": 180.0, "val_mean_dice": 0.91},
    ],
]


def _write_folds(root: Path, make_pred, n: int = 6, labels=None) -> tuple[Path, list]:
    """A Decathlon dataset of ``n`` cases and out-of-fold predictions for 2 folds."""
    labels = labels or {"0": "background", "1": "organ"}
    training = []
    splits = [{"train": [], "val": []}, {"train": [], "val": []}]
    rng = np.random.default_rng(0)
    for i in range(n):
        cid = f"c{i}"
        ref, pred = make_pred(rng)
        write_nifti(root / "data" / "imagesTr" / f"{cid}.nii.gz", ref.astype(np.float32))
        write_nifti(root / "data" / "labelsTr" / f"{cid}.nii.gz", ref)
        training.append({"image": f"imagesTr/{cid}.nii.gz", "label": f"labelsTr/{cid}.nii.gz"})
        k = i % 2
        splits[k]["val"].append(cid)
        splits[1 - k]["train"].append(cid)
        write_nifti(root / "model" / f"fold_{k}" / "validation" / f"{cid}.nii.gz", pred)
    for k, history in enumerate(HISTORIES):
        write_csv(root / "model" / f"fold_{k}" / "metrics.csv", history)
    doc = {"name": "x", "modality": {"0": "MR"}, "labels": labels, "training": training}
    (root / "data" / "dataset.json").write_text(json.dumps(doc))
    return root / "model", splits


def _organ(rng: np.random.Generator) -> np.ndarray:
    c = [int(rng.integers(12, 20)), int(rng.integers(12, 20)), 12]
    return sphere(SHAPE, c, 7)


def test_keep_largest_is_chosen_when_spurious_blobs_cost_dice(tmp_path: Path) -> None:
    def make(rng):
        ref = _organ(rng)
        pred = ref.copy()
        pred[32:37, 32:37, 22:27] = 1  # a false-positive blob far away
        return ref, pred

    model, splits = _write_folds(tmp_path, make)
    ds = load_dataset(tmp_path / "data")
    doc = summarize_cross_validation(model, ds, splits, {0: "background", 1: "organ"})
    pp = load_postprocessing(model / "postprocessing.json")
    assert [s.kind for s in pp.steps] == ["keep_largest_foreground"]
    assert pp.trials[0]["kept"] and pp.trials[0]["mean_dice_after"] == pytest.approx(1.0)
    assert doc["n_cases"] == 6
    assert doc["raw"]["organ"]["dice"]["mean"] < 0.97  # 125 false-positive voxels per case
    assert doc["postprocessed"]["organ"]["dice"]["mean"] == pytest.approx(1.0)
    assert set(doc["raw"]["organ"]["dice"]["per_case"]) == {f"c{i}" for i in range(6)}
    rows = (model / "crossval" / "metrics.csv").read_text().splitlines()
    assert len(rows) == 1 + 6 and rows[0].startswith("fold,case,label")
    assert (model / "crossval" / "metrics_postprocessed_summary.csv").exists()
    # per fold: training time and time to 0.85 / 0.90 validation Dice, and the plot
    f0, f1 = doc["folds"]
    assert (f0["train_s"], f0["time_to_0.85_s"], f0["best_val_dice"]) == (120.0, 120.0, 0.87)
    assert math.isnan(f0["time_to_0.90_s"])
    assert (f1["train_s"], f1["time_to_0.85_s"], f1["time_to_0.90_s"]) == (180.0, 180.0, 180.0)
    png = (model / "crossval" / "dice_vs_time.png").read_bytes()
    assert png.startswith(b"\x89PNG")


def test_keep_largest_is_refused_when_the_structure_has_two_parts(tmp_path: Path) -> None:
    def make(rng):
        ref = box(SHAPE, (2, 2, 2), (12, 12, 12), 1)
        ref[25:33, 25:33, 15:25] = 1  # a true second part (a bilateral organ)
        return ref, ref.copy()

    model, splits = _write_folds(tmp_path, make)
    cases = out_of_fold_cases(model, load_dataset(tmp_path / "data"), splits)
    pp = choose_postprocessing(cases, [1])
    assert pp.steps == []
    assert pp.trials[0]["kept"] is False
    assert any(t["step"]["kind"] == "remove_small" for t in pp.trials)  # tried, not kept


def test_per_label_keep_largest_and_small_component_removal(tmp_path: Path) -> None:
    def make(rng):
        ref = np.zeros(SHAPE, np.uint8)
        ref[sphere(SHAPE, (10, 10, 10), 6) > 0] = 1
        ref[25:35, 25:35, 5:15] = 2  # label 2: two true parts, 1000 and 216 voxels
        ref[5:11, 28:34, 20:26] = 2
        pred = ref.copy()
        pred[30:34, 5:9, 24:28] = 1  # spurious label-1 blob (64 voxels)
        pred[20, 5, 2] = 2  # specks of label 2 (1 voxel each)
        pred[2, 38, 28] = 2
        return ref, pred

    model, splits = _write_folds(tmp_path, make, labels={"0": "background", "1": "a", "2": "b"})
    cases = out_of_fold_cases(model, load_dataset(tmp_path / "data"), splits)
    pp = choose_postprocessing(cases, [1, 2])
    kinds = [(s.kind, s.label) for s in pp.steps]
    # merging the foreground would drop a true part of label 2: refused; label 1 alone: kept;
    # label 2: its specks go with a small threshold that keeps its smaller true part
    assert ("keep_largest_foreground", None) not in kinds
    assert ("keep_largest", 1) in kinds and ("keep_largest", 2) not in kinds
    small = [s for s in pp.steps if s.kind == "remove_small"]
    assert len(small) == 1 and small[0].label == 2
    assert 0.001 < small[0].min_volume_ml < 0.216  # mL: above a speck, below the true part


def test_apply_postprocessing_in_order_and_validated() -> None:
    a = np.zeros(SHAPE, np.uint8)
    a[2:6, 2:6, 2:6] = 1
    a[20:22, 20:22, 20:22] = 1
    pp = Postprocessing(
        steps=[PostprocessingStep(kind="remove_small", label=1, min_volume_ml=0.01)]
    )
    out = apply_postprocessing(a, pp, voxel_volume_ml=0.001)  # 8 voxels = 0.008 mL: removed
    assert int(out.sum()) == 64 and int(a.sum()) == 72
    with pytest.raises(ValueError, match="needs min_volume_ml"):
        PostprocessingStep(kind="remove_small", label=1)
