"""`medseg demo` end to end with a shortened recipe (the full one runs in CI's set-up command):
every output exists, lies on its scan's grid, the DICOM SEG reads back equal to the NIfTI
prediction, and the summary says where everything is; a second run into the same folder is
refused without --overwrite."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import medseg.demo as demo
from medseg.cli import main
from medseg.io import read_label_map, read_volume
from medseg.io.outputs import case_stem


def test_demo_runs_the_whole_pipeline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(demo.DEMO_RECIPE, "epochs", 1)
    monkeypatch.setitem(demo.DEMO_RECIPE, "iterations_per_epoch", 2)
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    doc = json.loads((out / "demo.json").read_text())
    outputs = {k: Path(v) for k, v in doc["outputs"].items()}
    for key in ("plan", "model", "nifti_prediction", "dicom_prediction", "report"):
        assert outputs[key].exists(), key
        assert str(outputs[key]) in printed, key
    nii_any = read_label_map(outputs["dicom_prediction"]).array.any()
    assert ("dicom_seg" in outputs) == nii_any  # a SEG needs a segment: none is reported
    assert not nii_any or outputs["dicom_seg"].exists()
    if not nii_any:
        assert "no DICOM SEG written" in printed
    assert "not a spleen model" in printed and "3D Slicer" in printed and "browser" in printed
    scan = read_volume(demo.SAMPLE / "spleen_ct.nii.gz")
    assert read_label_map(outputs["nifti_prediction"]).same_grid(scan)
    ct = read_volume(outputs["dicom_copy"])
    nii = read_label_map(outputs["dicom_prediction"])
    assert nii.same_grid(ct)
    original = read_volume(demo.SAMPLE / "ct_dicom")
    assert np.array_equal(ct.array, original.array) and ct.same_grid(original)  # pixels kept
    if nii.array.any():  # the SEG holds the slices with a segment, at the same positions
        seg = read_label_map(outputs["dicom_seg"])
        ks = np.flatnonzero(nii.array.any(axis=(0, 1)))
        np.testing.assert_array_equal(seg.array, nii.array[..., ks[0] : ks[-1] + 1])
        np.testing.assert_allclose(
            seg.voxel_to_world([0, 0, 0]), nii.voxel_to_world([0, 0, ks[0]]), atol=1e-3
        )
    assert set(doc["dice"]) and all(0.0 <= d <= 1.0 for d in doc["dice"].values())
    assert "<img" in outputs["report"].read_text()
    assert main(["demo", "--out", str(out)]) == 1
    assert "pass --overwrite" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_model_segments_both_scans(tmp_path: Path) -> None:
    """The full recipe (as ``medseg demo`` runs it): on both scans it was trained on, the
    post-processed prediction is one component with Dice >= 0.85 against the reference mask,
    counted here with numpy on the scan's own grid (independent of ``medseg.metrics``)."""
    from scipy import ndimage

    res = demo.run_demo(tmp_path / "demo")
    refs = {
        "nifti_prediction": demo.SAMPLE / "spleen_ct_label.nii.gz",
        "dicom_prediction": demo.SAMPLE / "ct_dicom_spleen.nii.gz",
    }
    for key, ref_path in refs.items():
        pred = read_label_map(res.outputs[key])
        ref = read_label_map(ref_path)
        assert pred.same_grid(ref), key
        p, r = pred.array == 1, ref.array == 1
        dice = 2.0 * np.count_nonzero(p & r) / (np.count_nonzero(p) + np.count_nonzero(r))
        assert dice >= 0.85, (key, dice)
        assert ndimage.label(p, structure=np.ones((3, 3, 3)))[1] == 1, key  # largest kept
        assert dice == pytest.approx(res.dice[case_stem(res.outputs[key])], abs=1e-6)


@pytest.mark.parametrize(
    ("lo", "hi"),
    [(124.0, 1616.0), (252.0, 312.0), (200.0, 250.0), (1.01, 1.02), (0.5, 2e4), (1e-3, 1e6)],
)
def test_report_log_axes_have_few_distinct_ticks(lo: float, hi: float) -> None:
    """The report's log axes (volumes against references) carry 2 to 6 ticks inside their
    limits, labelled in distinct plain numbers: no crowded, overlapping minor-tick labels."""
    from medseg.volumetry.figures import log_ticks

    ticks = log_ticks(lo, hi)
    assert 2 <= len(ticks) <= 6
    assert all(lo <= t <= hi for t in ticks) and ticks == sorted(set(ticks))
    assert len({f"{t:g}" for t in ticks}) == len(ticks)
