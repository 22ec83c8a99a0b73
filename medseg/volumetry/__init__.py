"""Volumetry: per-label volumes, shape and intensity statistics, and reports people can read.

* :func:`label_statistics` (``stats``) — one label map (+ image) → one frozen
  :class:`LabelStats` per label, from one pass over the voxels;
* :func:`longitudinal_change`, :func:`compare_volumes`, :func:`agreement` (``change``) —
  changes since a baseline and volume agreement between two sets;
* :func:`measure_folder` (``batch``) — a folder of cases matched by name, failures collected;
* :func:`write_outputs` (``report``) — ``volumes.csv``, per-case JSON, CSVs of changes and
  agreement, ``report.html`` (``html``, ``figures``).
"""

from medseg.volumetry.batch import (
    CaseResult,
    Failure,
    VolumetryResult,
    measure_case,
    measure_folder,
)
from medseg.volumetry.change import (
    Agreement,
    ChangeRecord,
    ComparisonRecord,
    VolumeEntry,
    agreement,
    compare_volumes,
    longitudinal_change,
)
from medseg.volumetry.diameter import max_pairwise_distance
from medseg.volumetry.report import check_outputs, statistics_json, write_outputs
from medseg.volumetry.stats import (
    CONNECTIVITY,
    VOLUME_FIELDS,
    Intensity,
    LabelStats,
    label_statistics,
)

__all__ = [
    "CONNECTIVITY",
    "VOLUME_FIELDS",
    "Agreement",
    "CaseResult",
    "ChangeRecord",
    "ComparisonRecord",
    "Failure",
    "Intensity",
    "LabelStats",
    "VolumeEntry",
    "VolumetryResult",
    "agreement",
    "check_outputs",
    "compare_volumes",
    "label_statistics",
    "longitudinal_change",
    "max_pairwise_distance",
    "measure_case",
    "measure_folder",
    "statistics_json",
    "write_outputs",
]
