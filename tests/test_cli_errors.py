"""Bad arguments and bad files given to the commands: one line naming the option or file,
exit 1, nothing written; and no library noise before medseg's own message."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from support.paths import REPO, SAMPLE
from support.volumes import write_ball_dataset

from medseg.cli import main

LABEL = str(SAMPLE / "cord_t2w_label.nii.gz")


def _error_line(capsys: pytest.CaptureFixture[str], command: str) -> str:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"medseg {command}: error: "), err
    return lines[0]


# --- defect 7: arguments ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("extra", "expect"),
    [
        (["--regions", "core="], "--regions: expected NAME=L,L,... (e.g. core=1,3), found 'core='"),
        (["--regions", "=1,2"], "--regions: expected NAME=L,L,..."),
    ],
)
def test_evaluate_bad_arguments(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], expect: str
) -> None:
    out = tmp_path / "eval"
    assert main(["evaluate", LABEL, LABEL, "--out", str(out), "--quiet", *extra]) == 1
    assert expect in _error_line(capsys, "evaluate")
    assert not out.exists()


# numeric options out of range: tests/test_option_ranges.py (refused when parsed, exit 2)


def test_plan_with_one_case_says_what_was_found(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ds = write_ball_dataset(tmp_path / "ds", n=1, shape=(12, 12, 10))
    assert main(["plan", str(ds), "--out", str(tmp_path / "p"), "--skip-check"]) == 0
    out = capsys.readouterr().out
    assert "no splits written: the dataset has 1 case; cross-validation needs at least 2" in out


BINARY = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00"
LATIN1 = "case_id,image,label\nc\xe9,a.nii.gz,b.nii.gz\n".encode("latin-1")


@pytest.mark.parametrize(
    ("data", "expect"),
    [
        (BINARY, "binary data (NUL byte at offset 8); expected a UTF-8 text CSV file"),
        (LATIN1, "not UTF-8 text (byte 0xe9 at offset 21); expected a UTF-8 text CSV file"),
    ],
    ids=["binary", "latin1"],
)
def test_check_given_a_binary_csv(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], data: bytes, expect: str
) -> None:
    csv = tmp_path / "cases.csv"
    csv.write_bytes(data)
    assert main(["check", str(csv)]) == 1
    assert f"{csv}: {expect}" in _error_line(capsys, "check")


@pytest.mark.parametrize("kind", ["binary", "bad_yaml"])
def test_binary_or_broken_config_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    bad = tmp_path / "cfg.yaml"
    bad.write_bytes(BINARY if kind == "binary" else b"rotation_prob: [0.2\nscale: {")
    ds = write_ball_dataset(tmp_path / "ds", n=2, shape=(12, 12, 10))
    assert main(["plan", str(ds), "--out", str(tmp_path / "p"), "--augmentation", str(bad)]) == 1
    line = _error_line(capsys, "plan")
    assert str(bad) in line
    assert ("binary data" if kind == "binary" else "invalid YAML") in line
    for option in ("--regions", "--label-names"):
        argv = ["evaluate", LABEL, LABEL, "--out", str(tmp_path / "e"), option, str(bad)]
        assert main(argv) == 1
        assert str(bad) in _error_line(capsys, "evaluate")


def test_check_goes_on_after_a_huge_header(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import gzip
    import struct

    ds = write_ball_dataset(tmp_path / "ds", n=3, shape=(12, 12, 10))
    victim = ds / "imagesTr" / "ball_001.nii.gz"
    raw = bytearray(gzip.decompress(victim.read_bytes()))
    raw[42:48] = struct.pack("<hhh", 30000, 30000, 30000)
    victim.write_bytes(gzip.compress(bytes(raw)))
    assert main(["check", str(ds)]) == 1
    out = capsys.readouterr().out
    assert "ball_001" in out and "30000" in out and "FAILED: 1 error(s) in 1 of 3 case(s)" in out


def test_convert_label_with_negative_values(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nib.save(nib.Nifti1Image(-np.ones((2, 2, 2), np.int16), np.eye(4)), tmp_path / "n.nii.gz")
    out = tmp_path / "o.nii.gz"
    assert main(["convert", "--label", str(tmp_path / "n.nii.gz"), str(out)]) == 1
    assert "n.nii.gz: label map has negative values" in _error_line(capsys, "convert")
    assert not out.exists()


# --- defect 13: no library noise before medseg's message ---------------------------------------
def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "medseg", *argv],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_undecodable_slice_gives_only_medseg_s_line(tmp_path: Path) -> None:
    folder = tmp_path / "ct"
    shutil.copytree(SAMPLE / "ct_dicom", folder)
    victim = folder / "slice_010.dcm"
    victim.write_bytes(victim.read_bytes()[:78000])
    res = _run("convert", str(folder), str(tmp_path / "ct.nii.gz"))
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith(f"medseg convert: error: {victim}: cannot decode pixel data")
    verbose = _run("-vv", "convert", str(folder), str(tmp_path / "ct.nii.gz"))
    assert "pydicom" in verbose.stderr  # the library's own account, on request


def test_library_warnings_are_quiet_unless_vv(tmp_path: Path) -> None:
    import struct

    img = nib.Nifti1Image(np.full((3, 3, 3), np.nan, np.float32), np.eye(4))
    img.set_sform(None, code=0)
    img.set_qform(np.eye(4), code=1)
    nib.save(img, tmp_path / "q.nii")
    raw = bytearray((tmp_path / "q.nii").read_bytes())
    raw[80:84] = struct.pack("<f", -1.0)  # nibabel warns and "fixes" pixdim[1] when loading
    (tmp_path / "q.nii").write_bytes(bytes(raw))
    res = _run("info", "--json", str(tmp_path / "q.nii"))  # nanmin of all-NaN: RuntimeWarning
    assert res.returncode == 0, res.stderr
    assert "RuntimeWarning" not in res.stderr and "should be positive" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "WARNING medseg.io" in lines[0] and "negative voxel" in lines[0]
    assert json.loads(res.stdout)["warnings"] == [lines[0].split("medseg.io: ", 1)[1]]
    verbose = _run("-vv", "info", str(tmp_path / "q.nii"))
    assert verbose.stderr.count("pixdim[1,2,3] should be positive") == 1  # once, not twice
