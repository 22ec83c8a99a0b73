"""Segmentation metrics: pure functions over two label maps on the same grid, in millimetres.

* :func:`evaluate_pair` — per-label (and composite-region) Dice, IoU, TP/FP/FN/TN, voxel counts
  and volumes (mL), Hausdorff distance (max), HD95, average symmetric surface distance and
  normalised surface Dice at a tolerance, as frozen :class:`LabelRecord` s.
* :func:`evaluate_arrays` — the same for bare NumPy label arrays plus a spacing.
* :func:`dice_scores` — Dice only, from one joint histogram (same definition and NaN rule).
* :func:`summarize` — per-label statistics over cases that count undefined (empty-mask) cases.
* :mod:`medseg.metrics.surface` — surface extraction (border voxels, or DeepMind surfels) and
  distances.
* :func:`lesion_wise_scores` — the BraTS 2023 lesion-wise Dice / HD95 and lesion counts of one
  binary structure (:mod:`medseg.metrics.lesions`); :func:`instance_scores` — one-to-one IoU
  matching of connected components with panoptica's RQ, SQ, PQ (:mod:`medseg.metrics.
  instances`); :func:`evaluate_objects` / :func:`summarize_objects` — both, per label and
  region of two label maps, and over cases (:mod:`medseg.metrics.objects`).

HD95 is the larger of the two *directed* 95th percentiles (MONAI, DeepMind surface-distance,
MetricsReloaded), not the 95th percentile of both directions pooled (MedPy). Distances use the
voxel spacing of the array's own axis order. This module does not import torch (the optional
``surface="surfels"`` mode imports MONAI's area table lazily).
"""

from medseg.metrics.aggregate import SUMMARY_FIELDS, SUMMARY_METRICS, MetricSummary, summarize
from medseg.metrics.instances import InstanceScores, instance_scores
from medseg.metrics.lesions import (
    LESION_FIELDS,
    MISSED_HD95_MM,
    LesionRecord,
    LesionWiseScores,
    lesion_wise_scores,
)
from medseg.metrics.objects import (
    OBJECT_FIELDS,
    OBJECT_SUMMARY_METRICS,
    LesionWiseOptions,
    ObjectRecord,
    empty_object_record,
    evaluate_objects,
    summarize_objects,
)
from medseg.metrics.overlap import dice_scores
from medseg.metrics.pair import (
    RECORD_FIELDS,
    EmptyPolicy,
    LabelRecord,
    Region,
    both_empty_record,
    evaluate_arrays,
    evaluate_pair,
    parse_regions,
)
from medseg.metrics.surface import (
    SurfaceDistances,
    border_surface_distances,
    border_voxels,
    surfel_surface_distances,
)

__all__ = [
    "LESION_FIELDS",
    "MISSED_HD95_MM",
    "OBJECT_FIELDS",
    "OBJECT_SUMMARY_METRICS",
    "RECORD_FIELDS",
    "SUMMARY_FIELDS",
    "SUMMARY_METRICS",
    "EmptyPolicy",
    "InstanceScores",
    "LabelRecord",
    "LesionRecord",
    "LesionWiseOptions",
    "LesionWiseScores",
    "MetricSummary",
    "ObjectRecord",
    "Region",
    "SurfaceDistances",
    "border_surface_distances",
    "border_voxels",
    "both_empty_record",
    "dice_scores",
    "empty_object_record",
    "evaluate_arrays",
    "evaluate_objects",
    "evaluate_pair",
    "instance_scores",
    "lesion_wise_scores",
    "parse_regions",
    "summarize",
    "summarize_objects",
    "surfel_surface_distances",
]
