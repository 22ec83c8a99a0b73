"""Batch evaluation: match prediction and reference cases, compute metrics, write CSV/JSON.

Cases are matched by name: a file's name without its format suffix (``case_01.nii.gz`` →
``case_01``; ``.nii``, ``.nii.gz``, ``.nrrd``, ``.mha``, ``.mhd``, ``.dcm``), or a sub-folder's
name (a DICOM series folder is one case). ``pred`` and ``ref`` may also each be a single file
or a single DICOM series folder (a folder without sub-folders): then they form one case.

Every case is read once and all its labels are computed from that read. A case that cannot be
read, whose grids differ, or that has no counterpart on the other side is reported as a
failure (file, expected, found); the batch continues and :attr:`EvaluationResult.ok` is false.

Modules: :mod:`~medseg.evaluation.cases` (matching the two sides), :mod:`~medseg.evaluation.
batch` (:func:`evaluate_folders` and its outputs), :mod:`~medseg.evaluation.tables` (CSV, JSON
and terminal formatting, shared with the other batch commands).

Outputs in ``out_dir`` (written atomically, never overwritten unless ``overwrite=True``):

================  ==================================================================
``metrics.csv``   one row per case and label/region (:data:`~medseg.metrics.RECORD_FIELDS`)
``summary.csv``   one row per label and metric (:data:`~medseg.metrics.SUMMARY_FIELDS`)
``summary.json``  the same statistics grouped by label, plus the failures
``failures.csv``  ``case, pred, ref, error`` (header only when every case succeeded)
``settings.json`` resolved labels, regions, tolerance, empty-case policy, surface definition
``lesions.csv``   with ``lesion_wise``: one row per reference lesion (:data:`~medseg.metrics.
                  LESION_FIELDS`); ``metrics.csv`` then also has the lesion-wise and instance
                  columns (:data:`~medseg.metrics.OBJECT_FIELDS`) and the summaries their
                  statistics (:data:`~medseg.metrics.OBJECT_SUMMARY_METRICS`)
================  ==================================================================
"""

from medseg.evaluation.batch import (
    LESION_FILE,
    OUTPUT_FILES,
    EvaluationResult,
    evaluate_folders,
    write_outputs,
)
from medseg.evaluation.cases import (
    CASE_SUFFIXES,
    CaseFailure,
    CasePair,
    is_single_case,
    list_cases,
    match_cases,
)
from medseg.evaluation.tables import format_table, rows_to_csv, summary_to_json

__all__ = [
    "CASE_SUFFIXES",
    "LESION_FILE",
    "OUTPUT_FILES",
    "CaseFailure",
    "CasePair",
    "EvaluationResult",
    "evaluate_folders",
    "format_table",
    "is_single_case",
    "list_cases",
    "match_cases",
    "rows_to_csv",
    "summary_to_json",
    "write_outputs",
]
