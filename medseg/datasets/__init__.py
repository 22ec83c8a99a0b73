"""Datasets: discovery of the supported layouts, validation and cross-validation splits.

================  ====================================================================
``records``       :class:`Case`, :class:`Dataset`, :class:`Problem`
``layouts``       :func:`load_dataset`: Decathlon / nnU-Net v1, nnU-Net v2, CSV, folder pairs
``checks``        :func:`read_case`, :func:`check_dataset`
``splits``        :func:`make_splits`, :func:`write_splits`, :func:`read_splits`
================  ====================================================================

Everything here is torch-free.
"""

from medseg.datasets.checks import check_dataset, read_case
from medseg.datasets.layouts import load_dataset
from medseg.datasets.records import Case, Dataset, Problem
from medseg.datasets.splits import make_splits, read_splits, write_splits

__all__ = [
    "Case",
    "Dataset",
    "Problem",
    "check_dataset",
    "load_dataset",
    "make_splits",
    "read_case",
    "read_splits",
    "write_splits",
]
