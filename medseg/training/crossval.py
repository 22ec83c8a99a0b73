"""After cross-validation: the out-of-fold results of every case, and the post-processing
chosen on them (nnU-Net's rule, extended with small-component removal).

Every case is held out by exactly one fold, whose final validation wrote its prediction on the
case's original grid (``fold_K/validation/<case>.nii.gz``). :func:`summarize_cross_validation`
scores all of them against the original labels with :func:`medseg.metrics.evaluate_pair` and
chooses the post-processing with :func:`choose_postprocessing`:

1. keep the largest connected component of the foreground taken as one region: kept when the
   mean foreground Dice improves and no label's mean Dice gets worse;
2. with several labels, for each label, keep its largest component: kept when that label's
   mean Dice improves;
3. for each label not reduced to one component, remove its components below a volume: the
   candidates are 1, 5, 10 and 20 % of the label's median reference volume; the best one is
   kept when it improves that label's mean Dice.

Means are over the cases where Dice is defined (NaN, both empty, excluded), as nnU-Net does.
The choice goes to ``OUT/postprocessing.json`` (prediction from the model folder applies it);
the per-case tables, before and after post-processing, to ``OUT/crossval/``, with each fold's
training time, time to 0.85 and 0.90 validation Dice, and ``dice_vs_time.png`` (validation
Dice of every fold against wall-clock training time).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medseg.datasets import Dataset
from medseg.errors import InputError
from medseg.io import read_label_map
from medseg.io.atomic import atomic_write_text
from medseg.metrics import RECORD_FIELDS, SUMMARY_FIELDS, dice_scores, evaluate_pair, summarize
from medseg.metrics.aggregate import defined_mean
from medseg.model_folder import ModelFolder
from medseg.postprocess import Postprocessing, PostprocessingStep, apply_postprocessing
from medseg.volume import LabelMap

log = logging.getLogger("medseg.training")

#: Small-component thresholds tried, as fractions of the label's median reference volume.
SMALL_FRACTIONS = (0.01, 0.05, 0.1, 0.2)


@dataclass(frozen=True)
class OutOfFold:
    """One case's out-of-fold prediction file and its reference label file."""

    case_id: str
    fold: int
    prediction: Path
    reference: Path


def out_of_fold_cases(
    model_dir: Path, dataset: Dataset, splits: Sequence[dict[str, list[str]]]
) -> list[OutOfFold]:
    """Every case of the splits with the prediction of the fold that held it out.

    Raises :class:`InputError` naming the first missing prediction (a fold not trained or not
    finished)."""
    folder = ModelFolder(model_dir)
    out = []
    for k, split in enumerate(splits):
        for cid in split["val"]:
            pred = folder.fold(k).validation_prediction(cid)
            if not pred.is_file():
                raise InputError(
                    pred, "out-of-fold prediction missing; train and finish every fold"
                )
            ref = dataset.case(cid).label
            assert ref is not None
            out.append(OutOfFold(cid, k, pred, ref))
    return sorted(out, key=lambda o: o.case_id)


def _mean_dice(
    cases: Sequence[OutOfFold],
    labels: Sequence[int],
    transform: Callable[[NDArray[Any], float], NDArray[Any]],
) -> dict[int, float]:
    """Per-label mean Dice (NaN cases excluded) of the transformed predictions."""
    per: dict[int, list[float]] = {v: [] for v in labels}
    for c in cases:
        pred = read_label_map(c.prediction)
        ref = read_label_map(c.reference)
        d = dice_scores(transform(pred.array, pred.voxel_volume_ml), ref.array, labels)
        for v in labels:
            per[v].append(d[v])
    return {v: defined_mean(x) for v, x in per.items()}


def _fg(d: dict[int, float]) -> float:
    return defined_mean(d.values())


def _median_volumes_ml(cases: Sequence[OutOfFold], labels: Sequence[int]) -> dict[int, float]:
    vols: dict[int, list[float]] = {v: [] for v in labels}
    for c in cases:
        ref = read_label_map(c.reference)
        counts = np.bincount(ref.array.ravel().astype(np.int64), minlength=max(labels) + 1)
        for v in labels:
            if counts[v]:
                vols[v].append(float(counts[v]) * ref.voxel_volume_ml)
    return {v: float(np.median(x)) if x else 0.0 for v, x in vols.items()}


def choose_postprocessing(
    cases: Sequence[OutOfFold], labels: Sequence[int], connectivity: int = 26
) -> Postprocessing:
    """The post-processing that improves the out-of-fold mean Dice (see the module
    docstring), with every trial recorded in ``Postprocessing.trials``."""
    steps: list[PostprocessingStep] = []
    trials: list[dict[str, Any]] = []

    def score(extra: list[PostprocessingStep]) -> dict[int, float]:
        pp = Postprocessing(steps=[*steps, *extra], connectivity=connectivity)
        return _mean_dice(cases, labels, lambda a, v: apply_postprocessing(a, pp, v))

    current = score([])
    first = PostprocessingStep(kind="keep_largest_foreground")
    after = score([first])
    keep = _fg(after) > _fg(current) and all(
        not after[v] < current[v] for v in labels if not math.isnan(current[v])
    )
    trials.append(_trial(first, _fg(current), _fg(after), keep))
    if keep:
        steps.append(first)
        current = after
    for v in labels if len(labels) > 1 else []:
        step = PostprocessingStep(kind="keep_largest", label=v)
        after = score([step])
        ok = after[v] > current[v]
        trials.append(_trial(step, current[v], after[v], ok))
        if ok:
            steps.append(step)
            current = after
    # labels already reduced to one component: nothing small is left to remove
    reduced = {int(s.label or 0) for s in steps if s.kind == "keep_largest"}
    if len(labels) == 1 and steps:
        reduced |= set(labels)
    volumes = _median_volumes_ml(cases, labels)
    for v in labels:
        if v in reduced or volumes[v] <= 0:
            continue
        best: tuple[float, PostprocessingStep | None, dict[int, float]] = (current[v], None, {})
        for f in SMALL_FRACTIONS:
            step = PostprocessingStep(
                kind="remove_small", label=v, min_volume_ml=round(f * volumes[v], 6)
            )
            after = score([step])
            trials.append(_trial(step, current[v], after[v], False))
            if after[v] > best[0]:
                best = (after[v], step, after)
        if best[1] is not None:
            steps.append(best[1])
            current = best[2]
            for t in trials:
                if t["step"] == best[1].model_dump(mode="json"):
                    t["kept"] = True
    return Postprocessing(
        steps=steps,
        connectivity=connectivity,
        decided_by=f"cross-validation: out-of-fold predictions of {len(cases)} cases",
        trials=trials,
    )


def _trial(step: PostprocessingStep, before: float, after: float, kept: bool) -> dict[str, Any]:
    return {
        "step": step.model_dump(mode="json"),
        "mean_dice_before": before,
        "mean_dice_after": after,
        "kept": kept,
    }


def _records(
    cases: Sequence[OutOfFold],
    labels: Sequence[int],
    names: dict[int, str],
    pp: Postprocessing | None,
) -> list[dict[str, Any]]:
    rows = []
    for c in cases:
        pred = read_label_map(c.prediction, names)
        ref = read_label_map(c.reference, names)
        if pp is not None:
            arr = apply_postprocessing(pred.array, pp, pred.voxel_volume_ml)
            pred = LabelMap(arr, pred.affine, pred.source, pred.meta, names)
        for rec in evaluate_pair(pred, ref, labels=labels, case=c.case_id, label_names=names):
            rows.append({**rec.as_dict(), "fold": c.fold})
    return rows


def _write_tables(folder: Path, name: str, rows: list[dict[str, Any]]) -> None:
    from medseg.evaluation import rows_to_csv
    from medseg.metrics import LabelRecord

    fields = ("fold", *RECORD_FIELDS)
    atomic_write_text(folder / f"{name}.csv", rows_to_csv(rows, fields), overwrite=True)
    recs = [
        LabelRecord(**{k: r[k] for k in RECORD_FIELDS if k != "labels"}, labels=tuple(r["labels"]))
        for r in rows
    ]
    summary = rows_to_csv((s.as_dict() for s in summarize(recs)), SUMMARY_FIELDS)
    atomic_write_text(folder / f"{name}_summary.csv", summary, overwrite=True)


def _mean_sd(rows: list[dict[str, Any]], names: dict[int, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for v, name in names.items():
        if v == 0:
            continue
        mine = [r for r in rows if r["label"] == str(v)]
        entry: dict[str, Any] = {"n_cases": len(mine)}
        for k in ("dice", "hd95_mm"):
            vals = np.asarray([r[k] for r in mine], dtype=np.float64)
            vals = vals[~np.isnan(vals)]
            entry[k] = {
                "mean": defined_mean(vals),
                "sd": float(vals.std(ddof=1)) if vals.size > 1 else float("nan"),
                "per_case": {r["case"]: r[k] for r in mine},
            }
        out[name] = entry
    return out


def summarize_cross_validation(
    model_dir: Path,
    dataset: Dataset,
    splits: Sequence[dict[str, list[str]]],
    label_names: dict[int, str],
    *,
    choose: bool = True,
    stages: Sequence[ModelFolder] | None = None,
) -> dict[str, Any]:
    """Score every out-of-fold prediction, choose the post-processing (``choose``) and write
    ``OUT/crossval/metrics.csv`` (+ ``metrics_postprocessed.csv`` and summaries) and
    ``OUT/postprocessing.json``. Returns the document also written to
    ``OUT/crossval/summary.json``: per label the mean, sample standard deviation and per-case
    Dice and HD95 (mm), before and after post-processing. A cascade's fold histories are
    those of its ``stages``, one after the other (:func:`fold_history`)."""
    cases = out_of_fold_cases(model_dir, dataset, splits)
    labels = [v for v in sorted(label_names) if v != 0]
    model = ModelFolder(model_dir)
    folder = model.crossval
    folder.mkdir(parents=True, exist_ok=True)
    raw = _records(cases, labels, label_names, None)
    _write_tables(folder, "metrics", raw)
    doc: dict[str, Any] = {"n_cases": len(cases), "n_folds": len(splits)}
    doc["raw"] = _mean_sd(raw, label_names)
    if choose:
        pp = choose_postprocessing(cases, labels)
        atomic_write_text(model.postprocessing, pp.model_dump_json(indent=2) + "\n", overwrite=True)
        post = _records(cases, labels, label_names, pp)
        _write_tables(folder, "metrics_postprocessed", post)
        doc["postprocessing"] = [s.model_dump(mode="json") for s in pp.steps]
        doc["postprocessed"] = _mean_sd(post, label_names)
        log.info(
            "cross-validation over %d cases: post-processing %s",
            len(cases),
            [s.kind for s in pp.steps] or "none",
        )
    doc["folds"] = _fold_times(list(stages) if stages else [model], len(splits), model.dice_vs_time)
    atomic_write_text(
        model.crossval_summary, json.dumps(doc, indent=2, default=str) + "\n", overwrite=True
    )
    return doc


#: validation Dice thresholds whose time to reach is reported per fold
TIME_TO_DICE = (0.85, 0.90)


def fold_history(stages: Sequence[ModelFolder], fold: int) -> list[dict[str, Any]]:
    """The training history (``fold_K/metrics.csv`` rows) of ``fold``: of one model folder,
    or of a cascade's stages one after the other, each stage's clock (``elapsed_s``) starting
    where the previous one ended."""
    from medseg.training.logging import read_history

    rows: list[dict[str, Any]] = []
    offset = 0.0
    for stage in stages:
        path = stage.fold(fold).metrics
        if not path.is_file():
            raise InputError(path, "training history missing; train and finish every fold")
        history = read_history(path)
        rows += [
            {**r, "elapsed_s": float(r["elapsed_s"]) + offset} if "elapsed_s" in r else r
            for r in history
        ]
        if history:
            offset += float(history[-1]["elapsed_s"])
    return rows


def _fold_times(stages: Sequence[ModelFolder], n_folds: int, plot: Path) -> list[dict[str, Any]]:
    """Per fold: training seconds, best validation Dice and the time to each of
    :data:`TIME_TO_DICE` (:func:`fold_history`); draws the curves of every fold to ``plot``
    (``dice_vs_time.png``)."""
    from medseg.training.logging import dice_curve, plot_dice_vs_time, time_to_dice

    rows: list[dict[str, Any]] = []
    curves: dict[str, list[tuple[float, float]]] = {}
    for k in range(n_folds):
        history = fold_history(stages, k)
        curve = dice_curve(history)
        curves[f"fold {k}"] = curve
        row: dict[str, Any] = {
            "fold": k,
            "train_s": float(history[-1]["elapsed_s"]) if history else float("nan"),
            "best_val_dice": max((d for _, d in curve), default=float("nan")),
        }
        for thr in TIME_TO_DICE:
            row[f"time_to_{thr:.2f}_s"] = time_to_dice(history, thr)
        rows.append(row)
    plot_dice_vs_time(plot, curves)
    return rows


__all__ = [
    "SMALL_FRACTIONS",
    "TIME_TO_DICE",
    "OutOfFold",
    "choose_postprocessing",
    "fold_history",
    "out_of_fold_cases",
    "summarize_cross_validation",
]
