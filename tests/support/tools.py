"""External reference tools for the tests (dcmqi, dicom3tools) and world-coordinate checks.

:func:`tool` finds a command-line tool (on ``PATH`` or beside the running Python, where pip
puts console scripts of a virtual environment) or skips the test with the reason.
:func:`dcmqi_segments` converts a DICOM SEG with dcmqi's ``segimage2itkimage`` and returns each
segment's mask with its own affine; :func:`dciodvfy` validates a file with David Clunie's
validator. :func:`assert_same_world_labels` compares two label grids through world
coordinates only (independent of array order, orientation or cropping).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest


def tool(name: str, install: str) -> str:
    """Path of the executable ``name``, or skip the test saying how to install it."""
    found = shutil.which(name)
    if found is None:
        beside = Path(sys.executable).parent / name
        found = str(beside) if beside.exists() else None
    if found is None:
        pytest.skip(f"{name} not found ({install})")
    return found


def dcmqi_segments(seg_file: Path, out_dir: Path) -> list[dict[str, object]]:
    """Run ``segimage2itkimage`` (NIfTI output); one record per segment with ``label``
    (SegmentLabel), ``description`` (SegmentDescription), ``mask`` (bool array) and
    ``affine`` (RAS+, from nibabel)."""
    exe = tool("segimage2itkimage", "pip install dcmqi")
    out_dir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [exe, "--inputDICOM", str(seg_file), "--outputDirectory", str(out_dir), "-t", "nifti"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    meta = json.loads((out_dir / "meta.json").read_text())
    records = []
    for g, group in enumerate(meta["segmentAttributes"], start=1):
        img = nib.load(str(out_dir / f"{g}.nii.gz"))
        data = np.asanyarray(img.dataobj)
        for attr in group:
            records.append(
                {
                    "label": attr["SegmentLabel"],
                    "description": attr.get("SegmentDescription", ""),
                    "attributes": attr,
                    "mask": data == attr["labelID"],
                    "affine": np.asarray(img.affine, dtype=float),
                }
            )
    return records


def dciodvfy(path: Path) -> tuple[list[str], list[str]]:
    """``(errors, warnings)`` lines of ``dciodvfy path``."""
    exe = tool("dciodvfy", "apt-get install dicom3tools")
    proc = subprocess.run([exe, str(path)], capture_output=True, text=True, timeout=300)
    lines = (proc.stdout + proc.stderr).splitlines()
    errors = [ln for ln in lines if ln.startswith("Error")]
    warnings = [ln for ln in lines if ln.startswith("Warning")]
    return errors, warnings


def assert_dciodvfy_clean(path: Path) -> list[str]:
    """No ``Error`` line from ``dciodvfy``; returns its warnings (also printed, so ``pytest
    -rA`` shows them: e.g. empty Study Date/ID copied from anonymised sources)."""
    errors, warns = dciodvfy(path)
    for w in warns:
        print(f"dciodvfy {path.name}: {w}")
    assert errors == [], errors
    return warns


def world_points(mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """RAS+ (or whatever space ``affine`` maps to) centres of the ``True`` voxels, ``(N, 3)``."""
    ijk = np.argwhere(mask).astype(float)
    return ijk @ affine[:3, :3].T + affine[:3, 3]


def assert_mask_at_world(
    mask_a: np.ndarray,
    affine_a: np.ndarray,
    mask_b: np.ndarray,
    affine_b: np.ndarray,
    atol_vox: float = 1e-3,
) -> None:
    """The ``True`` voxels of ``a`` and ``b`` are the same set of world positions: every
    voxel centre of ``a`` lands (within ``atol_vox``) on a ``True`` voxel centre of ``b``,
    and both hold the same number of voxels."""
    assert int(mask_a.sum()) == int(mask_b.sum()), (int(mask_a.sum()), int(mask_b.sum()))
    if not mask_a.any():
        return
    pts = world_points(mask_a, affine_a)
    inv = np.linalg.inv(affine_b)
    ijk = pts @ inv[:3, :3].T + inv[:3, 3]
    idx = np.rint(ijk)
    assert np.max(np.abs(ijk - idx)) < atol_vox, float(np.max(np.abs(ijk - idx)))
    idx = idx.astype(int)
    inside = np.all((idx >= 0) & (idx < np.asarray(mask_b.shape)), axis=1)
    assert inside.all(), f"{int((~inside).sum())} voxels fall outside the other grid"
    assert mask_b[tuple(idx.T)].all()


def assert_same_points(a: np.ndarray, b: np.ndarray, atol_mm: float = 1e-3) -> None:
    """Two ``(N, 3)`` point sets are equal (as sets, within ``atol_mm``)."""
    assert a.shape == b.shape, (a.shape, b.shape)
    if not len(a):
        return
    ka = np.lexsort(np.round(a / atol_mm).T[::-1])
    kb = np.lexsort(np.round(b / atol_mm).T[::-1])
    np.testing.assert_allclose(a[ka], b[kb], atol=atol_mm, rtol=0)


def map_onto_grid(
    array: np.ndarray, affine: np.ndarray, shape: tuple[int, ...], target_affine: np.ndarray
) -> np.ndarray:
    """Values of ``array`` (grid ``affine``) at the voxel centres of a target grid that shares
    its voxel centres up to axis permutation/flips (asserted): exact, no interpolation."""
    m = np.linalg.inv(affine) @ target_affine  # target index -> source index
    assert np.allclose(m, np.rint(m), atol=1e-4), m
    idx = np.indices(shape).reshape(3, -1)
    src = np.rint(m[:3, :3] @ idx + m[:3, 3:4]).astype(int)
    assert np.all((src >= 0) & (src < np.asarray(array.shape)[:, None]))
    return array[tuple(src)].reshape(shape)
