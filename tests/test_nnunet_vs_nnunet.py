"""medseg vs nnU-Net itself on the same weights and scans (slow, real data): runs
``bench/nnunet_predict.py``, which builds nnU-Net v2's own virtual environment (PyPI), trains a
small 3d_fullres model on la2018_msd at 2 mm, and predicts the held-out cases at their native
grid with ``nnUNetv2_predict`` and with ``medseg predict``, without and with mirroring; then
synthetic folders (CT normalisation, two channels with a transpose, anisotropic spacing,
region-based labels) with ``nnUNetv2_predict_from_modelfolder``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from support.paths import REPO, shared_path


@pytest.mark.slow
@pytest.mark.realdata
def test_medseg_reproduces_nnunetv2_predict(tmp_path: Path) -> None:
    data = shared_path("la2018_msd")
    out = tmp_path / "run"
    res = subprocess.run(
        [sys.executable, str(REPO / "bench" / "nnunet_predict.py"), "--data", str(data),
         "--out", str(out), "--budget-s", "300"],
        capture_output=True, text=True, timeout=3 * 3600,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-4000:]
    doc = json.loads((out / "bench_nnunet_predict.json").read_text())
    assert [r["tta"] for r in doc["rows"]] == [False, True]
    for row in doc["rows"]:
        assert len(row["cases"]) == 3
        for case in row["cases"]:
            assert case["dice_between"] >= 0.99, (row["tta"], case)
    for row in doc["synthetic"]:
        assert row["identical_voxels"] >= 0.999, row
        for label in row["labels"].values():
            # a random network's small labels are scattered voxels at near-ties of the logits
            if min(label["medseg_voxels"], label["nnunet_voxels"]) >= 1000:
                assert label["dice"] >= 0.99, row
