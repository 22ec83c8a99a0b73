"""Disk cache of preprocessed cases.

Layout::

    <cache_dir>/<plan.preprocessing_key()>/
        plan_preprocessing.json        # the plan fields the key was computed from
        <case_id>.image.npy            # float32 (C, X, Y, Z), memory-mappable
        <case_id>.label.npy            # uint8/int16 (X, Y, Z)
        <case_id>.fg.npy               # int32 (N, 4): (label value, x, y, z) foreground samples
        <case_id>.json                 # PreprocessInfo + source file fingerprints

The folder name changes whenever a plan field that affects preprocessing changes, so an edited
plan never reads stale arrays. A case is recomputed when any of its files' size or
modification time differ from the recorded ones. All files are written atomically, the JSON
last, so a case is valid exactly when its JSON exists and matches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medseg.datasets import Case
from medseg.plan import Plan
from medseg.transforms.preprocessing import PreprocessInfo


@dataclass(frozen=True)
class CachedCase:
    """A cached case: paths to its arrays and its :class:`PreprocessInfo`."""

    case_id: str
    image_path: Path
    label_path: Path | None
    fg_path: Path
    info: PreprocessInfo

    def load_image(self, mmap: bool = True) -> np.ndarray:
        """``float32 (C, X, Y, Z)`` (memory-mapped read-only by default)."""
        return np.load(self.image_path, mmap_mode="r" if mmap else None)

    def load_label(self, mmap: bool = True) -> np.ndarray | None:
        if self.label_path is None:
            return None
        return np.load(self.label_path, mmap_mode="r" if mmap else None)

    def foreground(self) -> np.ndarray:
        """``int32 (N, 4)`` rows ``(label value, x, y, z)``: sampled foreground voxels."""
        return np.load(self.fg_path)


def cache_folder(plan: Plan, cache_dir: str | Path) -> Path:
    """``cache_dir/<plan.preprocessing_key()>``."""
    return Path(cache_dir) / plan.preprocessing_key()


def ensure_cached(
    plan: Plan, cases: Sequence[Case], cache_dir: str | Path, *, num_workers: int = 0
) -> list[CachedCase]:
    """Preprocess every case not yet (validly) cached and return all cached cases, in order."""
    raise NotImplementedError


__all__ = ["CachedCase", "cache_folder", "ensure_cached"]
