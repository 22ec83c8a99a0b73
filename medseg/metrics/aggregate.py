"""Aggregation of per-case :class:`~medseg.metrics.pair.LabelRecord` s into per-label statistics.

Nothing drops out of a mean silently: for every label and metric the summary says how many
cases there were, how many were undefined (an empty mask on one or both sides), how many of
those were given a substituted worst-case value (and are *in* the mean), and how many were NaN
(and are *not* in the mean).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol, TypeVar

import numpy as np
from numpy.typing import NDArray

from medseg.metrics.pair import LabelRecord

#: Metrics summarised, in output order.
SUMMARY_METRICS: tuple[str, ...] = (
    "dice",
    "iou",
    "hd_mm",
    "hd95_mm",
    "assd_mm",
    "nsd",
    "accuracy",
)
#: Metrics that are defined whatever the masks hold (never "undefined").
_ALWAYS_DEFINED = ("accuracy",)
_DISTANCES = ("hd_mm", "hd95_mm", "assd_mm")

SUMMARY_FIELDS: tuple[str, ...] = (
    "label",
    "name",
    "kind",
    "metric",
    "n_cases",
    "n_ref_empty",
    "n_pred_empty",
    "n_both_empty",
    "n_undefined",
    "n_substituted",
    "n_nan",
    "n_used",
    "mean",
    "std",
    "median",
    "p5",
    "p95",
    "treatment",
)


@dataclass(frozen=True)
class MetricSummary:
    """Statistics of one metric of one label over cases.

    ``n_undefined``: cases where the metric could not be measured (Dice/IoU/NSD: both masks
    empty; distances: either mask empty). ``n_substituted``: undefined cases that received a
    policy value (worst-case distance, Dice 0 for a one-sided empty mask, Dice 1 for both empty
    under ``both_empty_dice="one"``) and are included in the statistics. ``n_nan``: cases whose
    value is NaN, excluded from the statistics. ``n_used = n_cases - n_nan``. ``std`` is the
    population standard deviation (ddof=0); percentiles use linear interpolation.
    """

    label: str
    name: str
    kind: str
    metric: str
    n_cases: int
    n_ref_empty: int
    n_pred_empty: int
    n_both_empty: int
    n_undefined: int
    n_substituted: int
    n_nan: int
    n_used: int
    mean: float
    std: float
    median: float
    p5: float
    p95: float
    treatment: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _is_undefined(rec: LabelRecord, metric: str) -> bool:
    if metric in _ALWAYS_DEFINED:
        return False
    if metric in _DISTANCES:
        return rec.ref_empty or rec.pred_empty
    return rec.ref_empty and rec.pred_empty


def _treatment(metric: str, recs: Sequence[LabelRecord]) -> str:
    if metric in _ALWAYS_DEFINED:
        return "all measured"
    parts: list[str] = []
    one_sided = [r for r in recs if r.ref_empty != r.pred_empty]
    both = [r for r in recs if r.ref_empty and r.pred_empty]
    if metric in _DISTANCES:
        if one_sided:
            subst = [r for r in one_sided if r.distances_substituted]
            if subst:
                vals = sorted({round(getattr(r, metric), 3) for r in subst})
                shown = ", ".join(f"{v:g}" for v in vals[:3]) + (", ..." if len(vals) > 3 else "")
                parts.append(
                    f"{len(subst)} one-sided empty set to worst case ({shown} mm), in mean"
                )
            if len(subst) < len(one_sided):
                parts.append(f"{len(one_sided) - len(subst)} one-sided empty NaN, excluded")
        if both:
            parts.append(f"{len(both)} both empty NaN, excluded")
    else:
        if one_sided:
            parts.append(f"{len(one_sided)} one-sided empty scored 0, in mean")
        if both:
            v = getattr(both[0], metric)
            if math.isnan(v):
                parts.append(f"{len(both)} both empty NaN, excluded")
            else:
                parts.append(f"{len(both)} both empty scored {v:g}, in mean")
    return "; ".join(parts) if parts else "all measured"


def defined_mean(values: Iterable[float]) -> float:
    """Mean of the values that are defined (not NaN), NaN when none is: how every mean over
    cases, folds or labels in medseg treats undefined values (:func:`summarize` says how many
    there were)."""
    arr = np.asarray(list(values), dtype=np.float64)
    arr = arr[~np.isnan(arr)]
    return float(np.mean(arr)) if arr.size else float("nan")


def stats(values: NDArray[Any]) -> tuple[float, float, float, float, float]:
    """``(mean, std (ddof 0), median, p5, p95)`` of ``values``; NaN for none."""
    if values.size == 0:
        nan = float("nan")
        return nan, nan, nan, nan, nan
    return (
        float(np.mean(values)),
        float(np.std(values)),
        float(np.median(values)),
        float(np.percentile(values, 5)),
        float(np.percentile(values, 95)),
    )


class _Structure(Protocol):
    @property
    def kind(self) -> str: ...
    @property
    def label(self) -> str: ...
    @property
    def name(self) -> str: ...


R = TypeVar("R", bound=_Structure)


def by_structure(records: Iterable[R]) -> dict[tuple[str, str, str], list[R]]:
    """Records grouped by ``(kind, label, name)`` in first-seen order (records with those
    three attributes: one per case)."""
    groups: dict[tuple[str, str, str], list[R]] = {}
    for r in records:
        groups.setdefault((r.kind, r.label, r.name), []).append(r)
    return groups


def metric_summary(
    key: tuple[str, str, str],
    metric: str,
    values: NDArray[Any],
    empty: Sequence[tuple[bool, bool]],
    *,
    n_undefined: int,
    n_substituted: int,
    treatment: str,
) -> MetricSummary:
    """The :class:`MetricSummary` of one metric of one structure ``key = (kind, label, name)``
    from its per-case ``values`` (NaN = excluded) and ``(ref_empty, pred_empty)`` flags."""
    kind, label, name = key
    finite = ~np.isnan(values)
    mean, std, med, p5, p95 = stats(values[finite])
    return MetricSummary(
        label=label,
        name=name,
        kind=kind,
        metric=metric,
        n_cases=len(values),
        n_ref_empty=sum(r for r, _ in empty),
        n_pred_empty=sum(p for _, p in empty),
        n_both_empty=sum(r and p for r, p in empty),
        n_undefined=n_undefined,
        n_substituted=n_substituted,
        n_nan=int((~finite).sum()),
        n_used=int(finite.sum()),
        mean=mean,
        std=std,
        median=med,
        p5=p5,
        p95=p95,
        treatment=treatment,
    )


def summarize(
    records: Iterable[LabelRecord], metrics: Sequence[str] = SUMMARY_METRICS
) -> list[MetricSummary]:
    """Per-label, per-metric statistics over cases.

    Labels are grouped by ``(kind, label, name)`` in first-seen order. Each record is one case.
    """
    out: list[MetricSummary] = []
    for (kind, label, name), recs in by_structure(records).items():
        for metric in metrics:
            vals = np.array([float(getattr(r, metric)) for r in recs], dtype=np.float64)
            undefined = [r for r in recs if _is_undefined(r, metric)]
            n_subst = sum(1 for r in undefined if not math.isnan(float(getattr(r, metric))))
            out.append(
                metric_summary(
                    (kind, label, name),
                    metric,
                    vals,
                    [(r.ref_empty, r.pred_empty) for r in recs],
                    n_undefined=len(undefined),
                    n_substituted=n_subst,
                    treatment=_treatment(metric, recs),
                )
            )
    return out


__all__ = [
    "SUMMARY_FIELDS",
    "SUMMARY_METRICS",
    "MetricSummary",
    "by_structure",
    "defined_mean",
    "metric_summary",
    "summarize",
]
