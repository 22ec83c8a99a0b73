"""Dice per label from one confusion count (no surfaces): what a decision that only needs
overlap (post-processing selection, quick validation) computes, with the same definition and
empty-mask convention as :func:`medseg.metrics.evaluate_pair` (2·TP / (|P| + |R|); NaN when the
label is absent from both)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import numpy.typing as npt


def dice_from_counts(tp: int, n_pred: int, n_ref: int) -> float:
    """Dice ``2·TP / (|P| + |R|)`` from voxel counts; NaN when both masks are empty (callers
    with another empty-mask policy decide that case themselves)."""
    return float("nan") if n_pred + n_ref == 0 else 2.0 * tp / (n_pred + n_ref)


def dice_scores(
    pred: npt.NDArray[np.integer], ref: npt.NDArray[np.integer], labels: Iterable[int]
) -> dict[int, float]:
    """``{label: Dice}`` of two integer label arrays of one shape (any axis order).

    One pass over the voxels: the joint histogram of ``(pred, ref)`` values. Labels absent
    from both arrays get NaN (as ``evaluate_pair``'s default)."""
    p = np.asarray(pred)
    r = np.asarray(ref)
    if p.shape != r.shape:
        raise ValueError(f"prediction shape {p.shape} differs from reference shape {r.shape}")
    wanted = sorted({int(v) for v in labels})
    k = max([int(p.max(initial=0)), int(r.max(initial=0)), *wanted]) + 1
    joint = np.bincount(
        p.astype(np.int64).ravel() * k + r.astype(np.int64).ravel(), minlength=k * k
    ).reshape(k, k)
    out: dict[int, float] = {}
    for v in wanted:
        n_p, n_r, tp = int(joint[v].sum()), int(joint[:, v].sum()), int(joint[v, v])
        out[v] = dice_from_counts(tp, n_p, n_r)
    return out


__all__ = ["dice_from_counts", "dice_scores"]
