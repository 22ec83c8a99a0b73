"""The lesion-wise (instance) view of two label maps: per label and region, the BraTS 2023
lesion-wise scores (:mod:`medseg.metrics.lesions`) and panoptica's matching-based instance
metrics (:mod:`medseg.metrics.instances`), as plain records.

:func:`evaluate_objects` is the per-case entry point used by ``medseg evaluate
--lesion-wise``; :func:`summarize_objects` aggregates its records over cases in the same
:class:`~medseg.metrics.aggregate.MetricSummary` form as the voxel metrics.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medseg.metrics.aggregate import MetricSummary, by_structure, metric_summary
from medseg.metrics.boxes import box_of, crop_slices, label_boxes, union_box
from medseg.metrics.instances import InstanceScores, check_iou_threshold, instance_scores
from medseg.metrics.lesions import (
    LesionRecord,
    LesionWiseScores,
    check_lesion_options,
    lesion_wise_scores,
)
from medseg.metrics.pair import Region, parse_regions
from medseg.volume import LabelMap

#: Columns added to ``metrics.csv`` by the lesion-wise view, in order.
OBJECT_FIELDS: tuple[str, ...] = (
    "n_lesions",
    "num_tp",
    "num_fn",
    "num_fp",
    "num_small",
    "lesion_dice",
    "lesion_hd95_mm",
    "detection_f1",
    "inst_ref",
    "inst_pred",
    "inst_tp",
    "inst_fp",
    "inst_fn",
    "inst_precision",
    "inst_recall",
    "rq",
    "sq",
    "sq_dice",
    "pq",
    "pq_dice",
)
#: Metrics of the lesion-wise view summarised over cases, in output order.
OBJECT_SUMMARY_METRICS: tuple[str, ...] = (
    "lesion_dice",
    "lesion_hd95_mm",
    "detection_f1",
    "rq",
    "sq",
    "pq",
)
_BRATS_METRICS = ("lesion_dice", "lesion_hd95_mm", "detection_f1")


@dataclass(frozen=True)
class LesionWiseOptions:
    """Settings of the lesion-wise view.

    Attributes:
        dilation: BraTS dilation iterations (18-neighbour) for merging and matching (3).
        min_volume_mm3: reference lesions of this volume or less are left out (50 mm³).
        connectivity: of all connected components, 6, 18 or 26 (26).
        iou_threshold: IoU at or above which two instances match one to one (0.5).
    """

    dilation: int = 3
    min_volume_mm3: float = 50.0
    connectivity: int = 26
    iou_threshold: float = 0.5

    def __post_init__(self) -> None:
        check_lesion_options(self.dilation, self.min_volume_mm3, self.connectivity)
        check_iou_threshold(self.iou_threshold)

    def describe(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "lesion_hd95": "DeepMind surfels (surface-distance), 374 mm for a missed lesion "
            "or a false positive (BraTS 2023)",
            "connectivity_meaning": "6: faces, 18: faces and edges, 26: faces, edges and "
            "corners of voxels",
        }


@dataclass(frozen=True)
class ObjectRecord:
    """Lesion-wise and instance metrics of one label (or region) in one case."""

    case: str
    label: str
    name: str
    kind: str
    ref_empty: bool
    pred_empty: bool
    lesion_wise: LesionWiseScores
    instances: InstanceScores

    def as_dict(self) -> dict[str, Any]:
        """The :data:`OBJECT_FIELDS` columns."""
        lw, ins = self.lesion_wise, self.instances
        row = {
            "n_lesions": len(lw.lesions),
            "num_tp": lw.num_tp,
            "num_fn": lw.num_fn,
            "num_fp": lw.num_fp,
            "num_small": lw.num_small,
            "lesion_dice": lw.lesion_dice,
            "lesion_hd95_mm": lw.lesion_hd95_mm,
            "detection_f1": lw.detection_f1,
            "inst_ref": ins.n_ref,
            "inst_pred": ins.n_pred,
            "inst_tp": ins.tp,
            "inst_fp": ins.fp,
            "inst_fn": ins.fn,
            "inst_precision": ins.precision,
            "inst_recall": ins.recall,
            "rq": ins.rq,
            "sq": ins.sq,
            "sq_dice": ins.sq_dice,
            "pq": ins.pq,
            "pq_dice": ins.pq_dice,
        }
        return {k: row[k] for k in OBJECT_FIELDS}

    @property
    def lesions(self) -> tuple[LesionRecord, ...]:
        return self.lesion_wise.lesions


def _empty_mask() -> NDArray[Any]:
    return np.zeros((1, 1, 1), dtype=bool)


def empty_object_record(
    case: str, label: str, name: str, kind: str, options: LesionWiseOptions
) -> ObjectRecord:
    """The record of a structure absent from both maps (no lesion, no false positive)."""
    e = _empty_mask()
    return ObjectRecord(
        case,
        label,
        name,
        kind,
        True,
        True,
        lesion_wise_scores(e, e, (1.0, 1.0, 1.0), dilation=options.dilation),
        instance_scores(e, e, connectivity=options.connectivity),
    )


def evaluate_objects(
    pred: LabelMap,
    ref: LabelMap,
    labels: Iterable[int] | None = None,
    regions: Mapping[str, Iterable[int]] | Iterable[Region] | None = None,
    *,
    options: LesionWiseOptions | None = None,
    case: str = "",
    label_names: Mapping[int, str] | None = None,
) -> list[ObjectRecord]:
    """Per label (default: every non-zero value in either map) and region, the lesion-wise
    and instance metrics of ``pred`` against ``ref`` (same grid, checked). Each structure is
    cropped to its union bounding box plus the dilation margin, which changes nothing."""
    ref.check_same_grid(pred)
    opts = options or LesionWiseOptions()
    names: dict[int, str] = {**pred.label_names, **ref.label_names, **dict(label_names or {})}
    p_arr, r_arr = np.asarray(pred.array), np.asarray(ref.array)
    max_p = int(p_arr.max()) if p_arr.size else 0
    max_r = int(r_arr.max()) if r_arr.size else 0
    box_p, box_r = label_boxes(p_arr, max_p), label_boxes(r_arr, max_r)
    if labels is None:
        values = [
            v for v in range(1, max(max_p, max_r) + 1) if box_of(box_p, v) or box_of(box_r, v)
        ]
    else:
        values = sorted({int(v) for v in labels})
    spacing = ref.spacing
    vox_mm3 = ref.voxel_volume_ml * 1000.0
    out: list[ObjectRecord] = []

    def one(key: str, name: str, vals: Sequence[int], kind: str) -> None:
        box = union_box([box_of(b, v) for v in vals for b in (box_p, box_r)])
        if box is None:
            pm = rm = _empty_mask()
        else:
            # A margin of dilation + 1 voxels: dilations and surfaces see what they would see
            # in the whole image.
            sl = crop_slices(box, ref.shape, opts.dilation + 1)
            pm, rm = np.isin(p_arr[sl], vals), np.isin(r_arr[sl], vals)
        lw = lesion_wise_scores(
            pm,
            rm,
            spacing,
            dilation=opts.dilation,
            min_volume_mm3=opts.min_volume_mm3,
            connectivity=opts.connectivity,
            voxel_volume_mm3=vox_mm3,
            case=case,
            label=key,
            name=name,
            kind=kind,
        )
        ins = instance_scores(
            pm, rm, iou_threshold=opts.iou_threshold, connectivity=opts.connectivity
        )
        out.append(ObjectRecord(case, key, name, kind, not rm.any(), not pm.any(), lw, ins))

    for v in values:
        one(str(v), names.get(v, f"label_{v}"), (v,), "label")
    for reg in parse_regions(regions):
        one(reg.key, reg.name, reg.labels, "region")
    return out


def _is_convention(rec: ObjectRecord, metric: str) -> bool:
    """True where the BraTS scores hold their empty-case value (no counted lesion and no
    false positive: Dice 1, HD95 0, F1 1) rather than a measurement."""
    lw = rec.lesion_wise
    return metric in _BRATS_METRICS and lw.num_tp + lw.num_fn + lw.num_fp == 0


def summarize_objects(
    records: Iterable[ObjectRecord], metrics: Sequence[str] = OBJECT_SUMMARY_METRICS
) -> list[MetricSummary]:
    """Per label and metric, statistics over cases (as :func:`~medseg.metrics.summarize`):
    the BraTS scores of a case with no counted lesion and no false positive are 1 / 0 by the
    challenge's convention (counted in ``n_substituted``, in the mean); RQ, SQ and PQ are NaN
    for a case without instances (``n_nan``, excluded)."""
    out: list[MetricSummary] = []
    for (kind, label, name), recs in by_structure(records).items():
        for metric in metrics:
            vals = np.array([float(r.as_dict()[metric]) for r in recs], dtype=np.float64)
            conv = [r for r in recs if _is_convention(r, metric)]
            n_nan = int(np.isnan(vals).sum())
            parts = []
            if conv:
                v = float(conv[0].as_dict()[metric])
                parts.append(
                    f"{len(conv)} with no lesion and no false positive scored {v:g} "
                    "(BraTS), in mean"
                )
            if n_nan:
                parts.append(f"{n_nan} without instances NaN, excluded")
            out.append(
                metric_summary(
                    (kind, label, name),
                    metric,
                    vals,
                    [(r.ref_empty, r.pred_empty) for r in recs],
                    n_undefined=len(conv) + n_nan,
                    n_substituted=len(conv),
                    treatment="; ".join(parts) if parts else "all measured",
                )
            )
    return out


__all__ = [
    "OBJECT_FIELDS",
    "OBJECT_SUMMARY_METRICS",
    "LesionWiseOptions",
    "ObjectRecord",
    "empty_object_record",
    "evaluate_objects",
    "summarize_objects",
]
