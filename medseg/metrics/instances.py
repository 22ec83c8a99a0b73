"""Matching-based instance metrics, as the ``panoptica`` library defines them.

Instances are the connected components of each binary structure (``connectivity`` 6, 18 or
26; 26 by default, as panoptica's connected-components approximator with cc3d). A reference
and a predicted instance are matched **one to one** when their IoU is at least
``iou_threshold`` (default 0.5): the overlapping pairs are taken in decreasing IoU order and a
pair is accepted when neither instance is matched yet (panoptica's ``NaiveThresholdMatching``,
ties in its order; above 0.5 the matching is unique anyway, since an instance cannot have
IoU > 0.5 with two disjoint ones). Then, with ``TP`` matched pairs, ``FP`` unmatched
predicted and ``FN`` unmatched reference instances:

==================  =========================================================================
``rq``              recognition quality ``TP / (TP + FP/2 + FN/2)`` — the instance F1 score;
                    0 when ``TP = 0`` and there are instances, NaN when there are none
``sq``              segmentation quality: mean IoU of the matched pairs (0 without a match,
                    NaN without instances)
``sq_dice``         mean Dice of the matched pairs (same edge cases)
``pq``              panoptic quality ``sq · rq`` (panoptica's ``pq``; ``pq_dice = sq_dice·rq``)
``precision``       ``TP / (TP + FP)`` (NaN without predicted instances)
``recall``          ``TP / (TP + FN)`` (NaN without reference instances)
==================  =========================================================================

The tests compare every value with panoptica itself on real lesion masks.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from medseg.components import check_connectivity, connected_components
from medseg.errors import ConfigError

NAN = float("nan")


@dataclass(frozen=True)
class InstanceScores:
    """Instance counts and qualities of one structure (see the module docstring)."""

    n_ref: int
    n_pred: int
    tp: int
    fp: int
    fn: int
    precision: float
    recall: float
    rq: float
    sq: float
    sq_dice: float
    pq: float
    pq_dice: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_iou_threshold(iou_threshold: float) -> float:
    t = float(iou_threshold)
    if not (math.isfinite(t) and 0.0 < t <= 1.0):
        raise ConfigError(f"IoU threshold: expected a value in (0, 1], found {iou_threshold!r}")
    return t


def _overlaps(
    ref_cc: npt.NDArray[np.integer[Any]],
    pred_cc: npt.NDArray[np.integer[Any]],
    n_ref: int,
    n_pred: int,
) -> list[tuple[float, float, int, int]]:
    """``(iou, dice, ref_id, pred_id)`` of every overlapping pair, from one pass."""
    both = (ref_cc > 0) & (pred_cc > 0)
    if not both.any():
        return []
    code = ref_cc[both].astype(np.int64) * (n_pred + 1) + pred_cc[both].astype(np.int64)
    pairs, inter = np.unique(code, return_counts=True)
    r_ids, p_ids = pairs // (n_pred + 1), pairs % (n_pred + 1)
    r_size = np.bincount(ref_cc.ravel(), minlength=n_ref + 1).astype(np.float64)
    p_size = np.bincount(pred_cc.ravel(), minlength=n_pred + 1).astype(np.float64)
    i = inter.astype(np.float64)
    iou = i / (r_size[r_ids] + p_size[p_ids] - i)
    dice = 2.0 * i / (r_size[r_ids] + p_size[p_ids])
    return [
        (float(a), float(b), int(r), int(p))
        for a, b, r, p in zip(iou, dice, r_ids, p_ids, strict=True)
    ]


def instance_scores(
    pred: npt.NDArray[Any],
    ref: npt.NDArray[Any],
    *,
    iou_threshold: float = 0.5,
    connectivity: int = 26,
) -> InstanceScores:
    """One-to-one IoU matching of the connected components of two binary masks (non-zero =
    structure; 3-D, one shape) and panoptica's RQ, SQ, PQ (see the module docstring)."""
    t = check_iou_threshold(iou_threshold)
    check_connectivity(connectivity)
    p = np.asarray(pred) != 0
    r = np.asarray(ref) != 0
    if p.shape != r.shape or p.ndim != 3:
        raise ValueError(f"expected two 3-D masks of one shape, found {p.shape} and {r.shape}")
    ref_cc, n_ref = connected_components(r, connectivity)
    pred_cc, n_pred = connected_components(p, connectivity)
    # Decreasing IoU; ties in panoptica's order (by predicted, then reference instance).
    pairs = sorted(_overlaps(ref_cc, pred_cc, n_ref, n_pred), key=lambda x: (-x[0], x[3], x[2]))
    used_r: set[int] = set()
    used_p: set[int] = set()
    ious: list[float] = []
    dices: list[float] = []
    for iou, dice, rid, pid in pairs:
        if iou < t:
            break
        if rid in used_r or pid in used_p:
            continue
        used_r.add(rid)
        used_p.add(pid)
        ious.append(iou)
        dices.append(dice)
    tp = len(ious)
    fp, fn = n_pred - tp, n_ref - tp
    none = n_ref + n_pred == 0
    if tp:
        rq = tp / (tp + 0.5 * fp + 0.5 * fn)
        sq, sq_dice = float(np.mean(ious)), float(np.mean(dices))
    else:
        rq = sq = sq_dice = NAN if none else 0.0
    return InstanceScores(
        n_ref=n_ref,
        n_pred=n_pred,
        tp=tp,
        fp=fp,
        fn=fn,
        precision=tp / n_pred if n_pred else NAN,
        recall=tp / n_ref if n_ref else NAN,
        rq=float(rq),
        sq=sq,
        sq_dice=sq_dice,
        pq=sq * rq,
        pq_dice=sq_dice * rq,
    )


__all__ = ["InstanceScores", "check_iou_threshold", "instance_scores"]
