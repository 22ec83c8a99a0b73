"""Tiny synthetic segmentation data with a known answer (for tests, examples and benchmarks):
noisy images of balls, label 1 inside a ball of known radius."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from medseg.training.sampling import ArrayCase


def ball_case(
    case_id: str,
    shape: tuple[int, int, int],
    rng: np.random.Generator,
    *,
    radius: float = 5.0,
    noise: float = 0.5,
) -> ArrayCase:
    """One case: label 1 inside a ball of ``radius`` voxels at a random centre, image =
    label + Gaussian noise (``noise`` std), float32 ``(1, *shape)``, spacing 1 mm."""
    lo = np.ceil(radius).astype(int) + 1
    centre = [int(rng.integers(lo, max(lo + 1, s - lo))) for s in shape]
    grid = np.indices(shape, dtype=np.float32)
    dist = np.sqrt(sum((grid[a] - centre[a]) ** 2 for a in range(3)))
    label = (dist <= radius).astype(np.uint8)
    image = (label + rng.normal(0.0, noise, shape)).astype(np.float32)[None]
    return ArrayCase(case_id, image, label, (1.0, 1.0, 1.0))


def ball_cases(
    n: int, shape: tuple[int, int, int] = (24, 24, 20), seed: int = 0, **kwargs: float
) -> list[ArrayCase]:
    """``n`` cases from :func:`ball_case` with one seeded generator."""
    rng = np.random.default_rng(seed)
    return [ball_case(f"ball_{i:03d}", shape, rng, **kwargs) for i in range(n)]


def write_ball_dataset(
    root: str | Path, n: int = 4, shape: tuple[int, int, int] = (24, 24, 20), seed: int = 0
) -> Path:
    """Write :func:`ball_cases` as a Decathlon-layout dataset (``dataset.json``,
    ``imagesTr/``, ``labelsTr/``; 1 mm RAS affine) and return ``root``."""
    import nibabel as nib

    r = Path(root)
    (r / "imagesTr").mkdir(parents=True, exist_ok=True)
    (r / "labelsTr").mkdir(parents=True, exist_ok=True)
    training = []
    for c in ball_cases(n, shape, seed):
        assert c.label is not None
        nib.save(nib.Nifti1Image(c.image[0], np.eye(4)), r / "imagesTr" / f"{c.case_id}.nii.gz")
        nib.save(nib.Nifti1Image(c.label, np.eye(4)), r / "labelsTr" / f"{c.case_id}.nii.gz")
        training.append(
            {"image": f"./imagesTr/{c.case_id}.nii.gz", "label": f"./labelsTr/{c.case_id}.nii.gz"}
        )
    doc = {
        "name": "balls",
        "modality": {"0": "MR"},
        "labels": {"0": "background", "1": "ball"},
        "numTraining": n,
        "training": training,
    }
    (r / "dataset.json").write_text(json.dumps(doc, indent=2), encoding="utf-8")
    return r


__all__ = ["ball_case", "ball_cases", "write_ball_dataset"]
