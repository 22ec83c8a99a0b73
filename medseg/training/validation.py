"""Validation during and after training, scored with :func:`medseg.metrics.evaluate_pair`
(the function ``medseg evaluate`` uses), one case at a time (nothing holds the validation set
in memory).

A cascade's second stage (``plan.roi``) is validated inside the box of the case's reference
foreground grown by its margin (an oracle box: the first stage's boxes are scored by the
cascade's own cross-validation, :mod:`medseg.inference.cascade`).

* :func:`periodic_validation` — every ``val_every`` epochs: sliding-window prediction of each
  cached (preprocessed) validation case, Dice per label on the preprocessed grid (its true
  affine, :meth:`PreprocessInfo.preprocessed_affine`). Cheap; chooses the best checkpoint.
* :func:`final_validation` — after the last epoch: the prediction is restored to the case's
  original grid (exactly as ``medseg predict`` does) and scored against the original label
  file with the default settings of ``medseg evaluate`` (border surfaces, HD95 in mm); the
  predictions are written to ``validation/<case>.nii.gz`` and the records to
  ``validation/metrics.csv`` (the columns of ``medseg evaluate``), so ``medseg evaluate
  fold_K/validation <labels>`` reproduces the numbers.

Under DDP the cases are dealt round-robin to the ranks; each rank writes the predictions of its
own cases, the metrics are gathered on every rank and rank 0 writes the tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medseg.cache import CachedCase
from medseg.datasets import Case
from medseg.inference import labels_on_original_grid, sliding_window_probabilities
from medseg.inference.roi import roi_probabilities
from medseg.io import read_label_map, write_volume
from medseg.metrics import RECORD_FIELDS, LabelRecord, evaluate_pair, summarize
from medseg.metrics.aggregate import defined_mean
from medseg.plan.schema import Plan
from medseg.runtime import DistInfo
from medseg.training.distributed import gather_lists
from medseg.volume import LabelMap

PerLabel = dict[str, dict[str, float]]


@dataclass(frozen=True)
class ValidationCase:
    """A validation case: its dataset entry (original files) and its cached arrays."""

    case: Case
    cached: CachedCase


def _probabilities(
    model: torch.nn.Module,
    vc: ValidationCase,
    plan: Plan,
    overlap: float,
    device: torch.device,
    amp_dtype: torch.dtype | None,
) -> torch.Tensor:
    image = torch.from_numpy(np.array(vc.cached.load_image(), dtype=np.float32))  # a copy

    def windows(region: torch.Tensor) -> torch.Tensor:
        return sliding_window_probabilities(
            model, region, plan.patch_size, overlap=overlap, device=device, amp_dtype=amp_dtype
        )

    if plan.roi is None:
        return windows(image)
    # A cascade's second stage is validated inside the reference's box (the first stage's
    # box is only known at the cascade's own cross-validation, medseg.training.cascade).
    guide = vc.cached.load_label()
    assert guide is not None
    return roi_probabilities(
        windows,
        image,
        np.asarray(guide),
        plan.roi,
        plan.preprocessing.target_spacing,
        plan.patch_size,
        plan.num_classes,
    )


def _labels(plan: Plan) -> list[int]:
    return [k for k in sorted(plan.label_names) if k != 0]


def _records(dicts: Sequence[dict[str, Any]]) -> list[LabelRecord]:
    return [LabelRecord(**{**r, "labels": tuple(r["labels"])}) for r in dicts]


def _means(records: Sequence[LabelRecord], keys: Sequence[str]) -> PerLabel:
    """Per label name, the mean over cases of each metric in ``keys``
    (:func:`medseg.metrics.summarize`: undefined cases counted, NaN ones excluded)."""
    out: PerLabel = {}
    for s in summarize(records, keys):
        out.setdefault(s.name, {})[s.metric] = s.mean
    return out


def _row(case_id: str, records: Sequence[LabelRecord], hd95: bool) -> dict[str, Any]:
    row: dict[str, Any] = {"case_id": case_id}
    for rec in records:
        m = {"dice": float(rec.dice)}
        if hd95:
            m["hd95_mm"] = float(rec.hd95_mm)
        row[rec.name] = m
    return row


def periodic_validation(
    model: torch.nn.Module,
    cases: Sequence[ValidationCase],
    plan: Plan,
    *,
    overlap: float,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    info: DistInfo,
) -> PerLabel:
    """Mean Dice per label name over the validation cases, on the preprocessed grid
    (``{name: {"dice": ...}}``, the same on every rank)."""
    labels = _labels(plan)
    records: list[dict[str, Any]] = []
    for vc in cases[info.rank :: info.world_size]:
        probs = _probabilities(model, vc, plan, overlap, device, amp_dtype)
        aff = vc.cached.info.preprocessed_affine()
        ref_arr = vc.cached.load_label()
        assert ref_arr is not None
        pred = LabelMap(probs.argmax(0).numpy().astype(np.uint8), aff, "<prediction>")
        ref = LabelMap(np.asarray(ref_arr), aff, vc.cached.label_path)
        recs = evaluate_pair(
            pred, ref, labels=labels, case=vc.case.case_id, label_names=plan.label_names
        )
        records += [r.as_dict() for r in recs]
    return _means(_records(gather_lists(records, info)), ["dice"])


def final_validation(
    model: torch.nn.Module,
    cases: Sequence[ValidationCase],
    plan: Plan,
    out_dir: Path,
    *,
    overlap: float,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    info: DistInfo,
    hd95: bool = True,
) -> tuple[PerLabel, list[dict[str, Any]], list[dict[str, Any]]]:
    """Predict every validation case on its original grid, write it to
    ``out_dir/<case_id>.nii.gz`` and score it against the original label.

    Returns ``(means, rows, records)``: per label name the mean Dice (and HD95 in mm) over the
    cases, one row per case, and the :class:`LabelRecord` dicts (all ranks' cases, on every
    rank).
    """
    labels = _labels(plan)
    rows: list[dict[str, Any]] = []
    records: list[dict[str, Any]] = []
    for vc in cases[info.rank :: info.world_size]:
        assert vc.case.label is not None
        probs = _probabilities(model, vc, plan, overlap, device, amp_dtype)
        ref = read_label_map(vc.case.label, plan.label_names)
        arr, _ = labels_on_original_grid(probs, vc.cached.info)
        pred = LabelMap(arr, ref.affine, None, None, plan.label_names)
        ref.check_same_grid(pred)
        write_volume(pred, out_dir / f"{vc.case.case_id}.nii.gz", overwrite=True)
        recs = evaluate_pair(
            pred, ref, labels=labels, case=vc.case.case_id, label_names=plan.label_names
        )
        rows.append(_row(vc.case.case_id, recs, hd95))
        records += [r.as_dict() for r in recs]
    rows = gather_lists(rows, info)
    records = gather_lists(records, info)
    keys = ["dice", "hd95_mm"] if hd95 else ["dice"]
    return _means(_records(records), keys), rows, records


def write_validation_tables(out_dir: Path, records: Sequence[dict[str, Any]]) -> None:
    """``metrics.csv`` (``medseg evaluate``'s columns) and ``summary.csv`` in ``out_dir``."""
    from medseg.evaluation import rows_to_csv
    from medseg.io.atomic import atomic_write_text
    from medseg.metrics import SUMMARY_FIELDS

    atomic_write_text(out_dir / "metrics.csv", rows_to_csv(records, RECORD_FIELDS), overwrite=True)
    summary = summarize(_records(records))
    atomic_write_text(
        out_dir / "summary.csv",
        rows_to_csv((s.as_dict() for s in summary), SUMMARY_FIELDS),
        overwrite=True,
    )


def mean_dice(metrics: PerLabel) -> float:
    """Mean over labels of the per-label Dice (NaN labels excluded; NaN if none)."""
    return defined_mean(m["dice"] for m in metrics.values())


__all__ = [
    "PerLabel",
    "ValidationCase",
    "final_validation",
    "mean_dice",
    "periodic_validation",
    "write_validation_tables",
]
