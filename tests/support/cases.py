"""Real cases for the classical-segmentation tests and benchmark: readers returning medseg
types plus the reference masks the expectations are checked against.

Each function returns ``(image Volume, {name: boolean mask})``. The shipped spleen crop needs
nothing else; the others use the real-data tier (:func:`support.paths.shared_path`, which
skips or fails when ``../shared/data`` is absent).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np

from medseg.io import read_label_map, read_volume
from medseg.volume import Volume
from support.paths import SAMPLE, shared_path

Masks = dict[str, np.ndarray]


@lru_cache(maxsize=1)
def spleen_ct() -> tuple[Volume, Masks]:
    """The shipped MSD spleen CT crop (HU, 0.795×0.795×5 mm) and its manual spleen mask."""
    ct = read_volume(SAMPLE / "spleen_ct.nii.gz")
    ref = read_label_map(SAMPLE / "spleen_ct_label.nii.gz")
    return ct, {"spleen": ref.array > 0}


def totalseg_ct(small: bool = True) -> tuple[Volume, Masks]:
    """TotalSegmentator's example CT (3 mm, HU) with its model-made reference: ``bone``
    (vertebrae, ribs and other bones, not cartilage) and ``vertebrae``, plus each vertebra."""
    return _totalseg_ct(shared_path("totalsegmentator_example"), small)


# The readers below are cached per process; the public functions above/below call
# shared_path on every use, so every test using them is seen reading ../shared.
@lru_cache(maxsize=2)
def _totalseg_ct(folder: Path, small: bool) -> tuple[Volume, Masks]:
    ct_name, seg_name = (
        ("example_ct_sm", "example_seg")
        if small
        else ("example_ct", "example_seg_fast_force_split")
    )
    ct = read_volume(folder / f"{ct_name}.nii.gz")
    seg = read_label_map(folder / f"{seg_name}.nii.gz").array
    names = json.loads((folder / "label_map_total_and_total_mr.json").read_text())["total"]
    present = [int(v) for v in np.unique(seg) if v]
    bones = ("vertebra", "rib_", "sacrum", "sternum", "hip", "femur", "scapula", "clavicula")
    bone = [v for v in present if any(k in names[str(v)] for k in bones)]
    vert = [v for v in present if "vertebra" in names[str(v)]]
    masks: Masks = {"bone": np.isin(seg, bone), "vertebrae": np.isin(seg, vert)}
    for v in vert:
        masks[names[str(v)]] = seg == v
    return ct, masks


def brats_case(case: str = "validation/brats_2013_pat0003_1") -> tuple[Volume, Masks]:
    """A BraTS 2015 case as redistributed by DeepMedic: z-scored FLAIR (1 mm), the ``brain``
    mask (stored as 0.99999997, thresholded at 0.5) and the ``whole_tumour`` (labels 1-4)."""
    return _brats_case(shared_path("brats2015_deepmedic", *case.split("/")))


@lru_cache(maxsize=6)
def _brats_case(folder: Path) -> tuple[Volume, Masks]:
    flair = read_volume(folder / "Flair_subtrMeanDivStd.nii.gz")
    seg = read_label_map(folder / "OTMultiClass.nii.gz").array
    brain = read_volume(folder / "brainmask.nii.gz").array > 0.5
    return flair, {"brain": brain, "whole_tumour": seg > 0}


def ms_flair(patient: str = "patient19") -> tuple[Volume, Masks]:
    """An MS patient's skull-stripped FLAIR in MNI space (1 mm) with its consensus lesion mask
    and ``brain`` (the non-zero voxels)."""
    return _ms_flair(shared_path("ms_lesions_ljubljana", "mni", patient))


@lru_cache(maxsize=3)
def _ms_flair(folder: Path) -> tuple[Volume, Masks]:
    flair = read_volume(folder / "FLAIR.nii.gz")
    lesions = read_label_map(folder / "GOLD_STANDARD.nii.gz").array > 0
    return flair, {"lesions": lesions, "brain": flair.array != 0}


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two boolean masks (1 when both are empty)."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    s = int(a.sum()) + int(b.sum())
    return 1.0 if s == 0 else 2.0 * int((a & b).sum()) / s


def deepest_voxel(mask: np.ndarray, spacing=(1.0, 1.0, 1.0)) -> tuple[int, int, int]:
    """The voxel of ``mask`` farthest (in mm) from its background (a seed well inside it)."""
    from scipy import ndimage

    d = ndimage.distance_transform_edt(mask, sampling=spacing)
    i = np.unravel_index(int(np.argmax(d)), mask.shape)
    return (int(i[0]), int(i[1]), int(i[2]))
