"""``medseg info`` / ``medseg convert`` end to end, in-process, on the shipped sample data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from support.paths import SAMPLE

from medseg.cli import main
from medseg.io import read_volume


def test_info_on_nifti_prints_geometry(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", str(SAMPLE / "spleen_ct.nii.gz")]) == 0
    out = capsys.readouterr().out
    assert "164 x 166 x 26" in out
    assert "0.794922 x 0.794922 x 5" in out
    assert "RAS" in out and "float32" in out
    assert "-1019 .. 949" in out


def test_info_json_is_machine_readable(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "--json", str(SAMPLE / "cord_t2w.nii.gz")]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["shape"] == [131, 141, 16]
    assert rec["orientation"] == "RAS"
    assert rec["spacing_mm"] == pytest.approx([1.0, 1.0, 1.0])


def test_info_on_dicom_sample_folder(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", str(SAMPLE / "ct_dicom")]) == 0
    out = capsys.readouterr().out
    assert "1 DICOM series (1 readable" in out
    assert "512 x 512 x 20" in out
    assert "CT" in out
    assert "PatientName" not in out


def test_convert_dicom_sample_to_nifti(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ct.nii.gz"
    assert main(["convert", str(SAMPLE / "ct_dicom"), str(out)]) == 0
    vol = read_volume(out)
    src = read_volume(SAMPLE / "ct_dicom")
    np.testing.assert_array_equal(vol.array, src.array)
    np.testing.assert_allclose(vol.affine, src.affine, atol=1e-4)
    assert vol.shape == (512, 512, 20)
    # refuses to overwrite, and the file is untouched
    before = out.read_bytes()
    assert main(["convert", str(SAMPLE / "ct_dicom"), str(out)]) == 1
    assert "output exists" in capsys.readouterr().err
    assert out.read_bytes() == before
    assert main(["convert", str(SAMPLE / "ct_dicom"), str(out), "--overwrite"]) == 0


def test_convert_nifti_to_nrrd_and_label(tmp_path: Path) -> None:
    out = tmp_path / "cord.nrrd"
    lab = tmp_path / "cord_label.nii.gz"
    assert main(["convert", str(SAMPLE / "cord_t2w.nii.gz"), str(out)]) == 0
    assert main(["convert", "--label", str(SAMPLE / "cord_t2w_label.nii.gz"), str(lab)]) == 0
    a, b = read_volume(SAMPLE / "cord_t2w.nii.gz"), read_volume(out)
    np.testing.assert_array_equal(a.array, b.array)
    np.testing.assert_allclose(a.affine, b.affine, atol=1e-5)
    assert read_volume(lab).dtype == np.uint8


@pytest.mark.parametrize(
    ("make", "expect"),
    [
        (lambda d: (d / "x.nii.gz").write_bytes(b"\x1f\x8b broken"), "x.nii.gz"),
        (lambda d: (d / "x.png").write_bytes(b"png"), "unsupported format"),
        (lambda d: (d / "empty").mkdir(), "no DICOM"),
    ],
    ids=["corrupt", "unsupported", "empty-folder"],
)
def test_bad_input_one_clear_error_and_no_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], make: object, expect: str
) -> None:
    inp = tmp_path / "in"
    inp.mkdir()
    make(inp)  # type: ignore[operator]
    src = next(inp.iterdir())
    out = tmp_path / "out.nii.gz"
    assert main(["convert", str(src), str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("medseg convert: error: ")
    assert expect in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["in"]


def test_convert_refuses_unknown_output_suffix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["convert", str(SAMPLE / "cord_t2w.nii.gz"), str(tmp_path / "o.png")]) == 1
    assert "cannot write '.png'" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_nan_input_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import nibabel as nib

    arr = np.zeros((4, 4, 4), np.float32)
    arr[1, 1, 1] = np.inf
    nib.save(nib.Nifti1Image(arr, np.eye(4)), tmp_path / "inf.nii.gz")
    assert main(["convert", str(tmp_path / "inf.nii.gz"), str(tmp_path / "o.nii.gz")]) == 1
    assert "inf.nii.gz: 1 NaN or infinite voxel" in capsys.readouterr().err
    assert not (tmp_path / "o.nii.gz").exists()
