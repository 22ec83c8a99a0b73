"""A segmentation is measured only against the scan it belongs to: when both sides are
DICOM-derived (a DICOM series or a DICOM SEG) and their Frame of Reference or Study Instance
UIDs differ, ``volumetry`` and ``evaluate`` refuse the case with one error naming both files
(patient identifiers never appear), unless ``allow_other_frame_of_reference`` /
``--allow-other-frame`` is given."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from support.dicom import write_series

from medseg.cli import main
from medseg.errors import GeometryMismatchError
from medseg.evaluation import evaluate_folders
from medseg.io import read_label_map
from medseg.io.dicom import read_dicom
from medseg.io.segmentation import write_segmentation
from medseg.volume import LabelMap, Volume, VolumeMeta, check_same_frame_of_reference
from medseg.volumetry import measure_folder

PATIENT = ("Doe^Secret", "PID-SECRET-42")  # what support.dicom.write_series writes


def _series(folder: Path, study: str, frame: str) -> Volume:
    """A 3-slice CT series of one fixed geometry, in study ``study`` and frame ``frame``."""
    write_series(folder, n=3, rows=6, cols=7, study_uid=study, frame_of_reference_uid=frame, seed=1)
    return read_dicom(folder)


def _seg(folder: Path, out: Path) -> Path:
    """A DICOM SEG (a box, label 1) of the series in ``folder``."""
    vol = read_dicom(folder)
    arr = np.zeros(vol.shape, np.uint8)
    arr[1:4, 2:5, :] = 1  # every slice: the SEG reads back on the whole source grid
    seg = LabelMap(arr, vol.affine, None, label_names={1: "liver"})
    return write_segmentation(seg, out, source=folder).path


@pytest.fixture
def scans(tmp_path: Path) -> dict[str, Path]:
    """``a`` and ``a_seg`` (its SEG); ``other_frame`` and ``other_study``: same geometry,
    another Frame of Reference UID / Study Instance UID, with their SEGs."""
    out = {}
    for name, study, frame in (
        ("a", "1.2.3.4", "1.2.3.4.1"),
        ("other_frame", "1.2.3.4", "1.2.3.4.2"),
        ("other_study", "1.2.3.5", "1.2.3.4.1"),
    ):
        _series(tmp_path / name, study, frame)
        out[name] = tmp_path / name
        out[f"{name}_seg"] = _seg(tmp_path / name, tmp_path / "segs" / f"{name}.dcm")
    return out


def test_readers_record_the_study_and_frame_of_reference(scans: dict[str, Path]) -> None:
    vol = read_dicom(scans["a"])
    assert (vol.meta.study_uid, vol.meta.frame_of_reference_uid) == ("1.2.3.4", "1.2.3.4.1")
    seg = read_label_map(scans["a_seg"])
    assert (seg.meta.study_uid, seg.meta.frame_of_reference_uid) == ("1.2.3.4", "1.2.3.4.1")
    assert seg.same_grid(vol)
    check_same_frame_of_reference(vol, seg)  # its own scan: accepted


@pytest.mark.parametrize(
    ("other", "what"),
    [("other_frame", "Frame of Reference UID"), ("other_study", "Study Instance UID")],
)
def test_check_names_both_files_and_both_uids(
    scans: dict[str, Path], other: str, what: str
) -> None:
    scan = read_dicom(scans[other])
    seg = read_label_map(scans["a_seg"])
    assert seg.same_grid(scan)  # the grid check alone cannot tell
    with pytest.raises(GeometryMismatchError) as info:
        check_same_frame_of_reference(scan, seg)
    msg = str(info.value)
    assert str(scans["a_seg"]) in msg and str(scans[other]) in msg
    assert what in msg and "allow_other_frame_of_reference" in msg and "--" not in msg
    check_same_frame_of_reference(scan, seg, allow_other_frame_of_reference=True)


def test_volumes_without_dicom_uids_are_not_checked() -> None:
    a = Volume(np.zeros((2, 2, 2)), np.eye(4), "a.nii.gz")
    b = Volume(np.zeros((2, 2, 2)), np.eye(4), "b.dcm", VolumeMeta(frame_of_reference_uid="1.2"))
    check_same_frame_of_reference(a, b)
    check_same_frame_of_reference(b, a)


@pytest.mark.parametrize("other", ["other_frame", "other_study"])
def test_volumetry_refuses_another_scan_unless_allowed(
    scans: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], other: str
) -> None:
    own = measure_folder(scans["a_seg"], images=scans["a"], figures=False)
    assert own.ok and len(own.cases) == 1

    res = measure_folder(scans["a_seg"], images=scans[other], figures=False)
    assert not res.cases and len(res.failures) == 1
    error = res.failures[0].error
    assert str(scans["a_seg"]) in error and str(scans[other]) in error

    out = tmp_path / "vol"
    args = ["volumetry", str(scans["a_seg"]), "--images", str(scans[other]), "--out", str(out)]
    assert main([*args, "--quiet", "--no-figures"]) == 1
    captured = capsys.readouterr()
    assert str(scans["a_seg"]) in captured.err and str(scans[other]) in captured.err
    allowed = [*args, "--quiet", "--no-figures", "--overwrite", "--allow-other-frame"]
    assert main(allowed) == 0
    captured = capsys.readouterr()
    text = captured.out + captured.err + "".join(p.read_text() for p in out.glob("*.csv"))
    assert not any(p in text for p in PATIENT)


@pytest.mark.parametrize("other", ["other_frame", "other_study"])
def test_evaluate_refuses_a_reference_of_another_scan_unless_allowed(
    scans: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], other: str
) -> None:
    pred, ref = scans["a_seg"], scans[f"{other}_seg"]
    res = evaluate_folders(pred, ref, None)
    assert res.n_cases == 1 and len(res.failures) == 1
    error = res.failures[0].error
    assert str(pred) in error and str(ref) in error
    assert evaluate_folders(pred, ref, None, allow_other_frame_of_reference=True).ok

    out = tmp_path / "ev"
    assert main(["evaluate", str(pred), str(ref), "--out", str(out), "--quiet"]) == 1
    captured = capsys.readouterr()
    assert str(pred) in captured.err and str(ref) in captured.err
    assert not any(p in captured.out + captured.err for p in PATIENT)
    args = ["evaluate", str(pred), str(ref), "--out", str(out), "--quiet", "--overwrite"]
    assert main([*args, "--allow-other-frame"]) == 0
    assert evaluate_folders(pred, scans["a_seg"], None).ok  # the same scan's two SEGs
