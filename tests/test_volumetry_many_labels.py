"""A label map with many structures: the report draws pictures of the largest
``MAX_FIGURES_PER_CASE`` only (one per structure is hours for thousands of labels), and says
so in the report; every structure is still measured."""

from __future__ import annotations

import csv
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import medseg.volumetry.figures as figures_mod
from medseg.cli import main


def test_pictures_of_the_largest_structures_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(figures_mod, "MAX_FIGURES_PER_CASE", 5)
    drawn: list[int] = []
    real = figures_mod.label_figure

    def spy(labels, image, record, window):  # type: ignore[no-untyped-def]
        drawn.append(record.label)
        return real(labels, image, record, window)

    monkeypatch.setattr(figures_mod, "label_figure", spy)
    arr = np.zeros((24, 24, 24), np.int16)
    arr[0:6, 0:6, 0:6] = 1  # the largest: 216 voxels
    arr[10:14, 10:14, 10:14] = 2  # 64
    arr[16:19, 16:19, 16:19] = 3  # 27
    arr[20:22, 0:2, 0:2] = 4  # 8
    for i in range(40):  # one-voxel structures 5..44
        arr[i % 20, 22 + i // 20, 23] = 5 + i
    arr[0:2, 20:22, 10:12] = 45  # 8 voxels, like label 4
    seg = tmp_path / "case.nii.gz"
    nib.save(nib.Nifti1Image(arr, np.eye(4)), seg)
    out = tmp_path / "out"
    assert main(["volumetry", str(seg), "--out", str(out), "--quiet"]) == 0
    assert sorted(drawn) == [1, 2, 3, 4, 45]
    html = (out / "report.html").read_text()
    assert html.count("<figure data-label=") == 5
    assert "pictures of the 5 largest of 45 structures" in html
    with open(out / "volumes.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len({r["label"] for r in rows}) == 45  # every structure measured
