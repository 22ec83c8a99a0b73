"""Synthetic volumes with known answers.

* :func:`box` and :func:`sphere` — binary masks whose voxel counts and surface distances are
  known analytically (a sphere of radius r voxels holds about 4/3·π·r³ voxels; two concentric
  spheres are ``r1 - r2`` apart);
* :func:`label_map` / :func:`volume` — wrap an array with a spacing/direction into medseg types;
* :func:`write_nifti` — write an array with an affine (nibabel, independent of medseg's writer);
* :func:`ball_arrays` / :func:`write_ball_dataset` — a tiny Decathlon-layout dataset of noisy
  balls (label 1 inside a ball of known radius), for training tests.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np

from medseg.volume import LabelMap, Volume, affine_from_geometry


def box(shape: Sequence[int], lo: Sequence[int], hi: Sequence[int], value: int = 1) -> np.ndarray:
    """uint8 array of ``shape`` with ``value`` in ``[lo, hi)`` (per axis), 0 elsewhere."""
    a = np.zeros(tuple(shape), dtype=np.uint8)
    a[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = value
    return a


def sphere(
    shape: Sequence[int], centre: Sequence[float], radius_vox: float, value: int = 1
) -> np.ndarray:
    """uint8 ball: ``value`` where the distance (in voxels) to ``centre`` is ≤ ``radius_vox``."""
    g = np.indices(tuple(shape), dtype=float)
    r2 = sum((g[i] - centre[i]) ** 2 for i in range(3))
    return ((r2 <= radius_vox**2) * value).astype(np.uint8)


def label_map(
    arr: np.ndarray,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    direction: np.ndarray | None = None,
    name: str = "mem",
    origin: Sequence[float] = (0.0, 0.0, 0.0),
    label_names: dict[int, str] | None = None,
) -> LabelMap:
    """A :class:`LabelMap` of ``arr`` on a grid of ``spacing`` mm (and ``direction``)."""
    return LabelMap(
        arr, affine_from_geometry(spacing, origin, direction), name, label_names=label_names
    )


def volume(
    arr: np.ndarray,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    origin: Sequence[float] = (0.0, 0.0, 0.0),
    direction: np.ndarray | None = None,
    name: str = "mem",
) -> Volume:
    """A :class:`Volume` of ``arr`` on a grid of ``spacing`` mm."""
    return Volume(arr, affine_from_geometry(spacing, origin, direction), name)


def write_nifti(path: Path, array: np.ndarray, affine: np.ndarray | None = None) -> Path:
    """Write ``array`` with ``affine`` (default identity) as NIfTI through nibabel."""
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, np.eye(4) if affine is None else affine), str(path))
    return path


def ball_arrays(
    shape: Sequence[int], rng: np.random.Generator, *, radius: float = 5.0, noise: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """``(image float32 (X, Y, Z), label uint8)``: label 1 inside a ball of ``radius`` voxels
    at a random centre, image = label + Gaussian noise of std ``noise``."""
    lo = int(np.ceil(radius)) + 1
    centre = [int(rng.integers(lo, max(lo + 1, s - lo))) for s in shape]
    label = sphere(shape, centre, radius)
    image = (label + rng.normal(0.0, noise, tuple(shape))).astype(np.float32)
    return image, label


def write_ball_dataset(
    root: Path,
    n: int = 4,
    shape: Sequence[int] = (24, 24, 20),
    seed: int = 0,
    affine: np.ndarray | None = None,
    radius: float = 5.0,
) -> Path:
    """``n`` noisy-ball cases in the Decathlon layout (``dataset.json``, ``imagesTr/``,
    ``labelsTr/``; identity affine unless given); returns ``root``."""
    rng = np.random.default_rng(seed)
    (root / "imagesTr").mkdir(parents=True, exist_ok=True)
    (root / "labelsTr").mkdir(parents=True, exist_ok=True)
    training = []
    for i in range(n):
        cid = f"ball_{i:03d}"
        image, label = ball_arrays(shape, rng, radius=radius)
        write_nifti(root / "imagesTr" / f"{cid}.nii.gz", image, affine)
        write_nifti(root / "labelsTr" / f"{cid}.nii.gz", label, affine)
        training.append({"image": f"./imagesTr/{cid}.nii.gz", "label": f"./labelsTr/{cid}.nii.gz"})
    doc = {
        "name": "balls",
        "modality": {"0": "MR"},
        "labels": {"0": "background", "1": "ball"},
        "numTraining": n,
        "training": training,
    }
    (root / "dataset.json").write_text(json.dumps(doc, indent=2), encoding="utf-8")
    return root
