"""The shared output mechanism (``medseg.io.atomic``): up-front checks, one clear error per
filesystem problem, the usual file mode, companions of ``.mhd`` files, and no temporary file
left behind by SIGTERM (or, after SIGKILL, by the next run)."""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from support.files import stray_files, unwritable_dir
from support.paths import REPO, SAMPLE

from medseg.cli import main
from medseg.errors import OutputError, OutputExistsError
from medseg.io import read_volume, write_volume
from medseg.io.atomic import (
    check_output_dir,
    check_writable,
    clean_stale_temporaries,
    usual_file_mode,
)
from medseg.volume import Volume

CORD = SAMPLE / "cord_t2w.nii.gz"


def _vol() -> Volume:
    return Volume(np.arange(24, dtype=np.int16).reshape(2, 3, 4), np.diag([0.5, 0.6, 2.0, 1]))


def _one_error_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


# --- defect 5: filesystem errors on output -----------------------------------------------------
def test_read_only_folder_refused_before_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import medseg.io.convert as convert

    def no_read(*a: object, **k: object) -> None:
        raise AssertionError("the input was read before the output was checked")

    with unwritable_dir(tmp_path / "ro", monkeypatch) as ro:
        with pytest.raises(OutputError, match=r"ro: cannot write in this folder: "):
            check_writable(ro / "x.nii.gz", overwrite=False)
        with pytest.raises(OutputError, match=r"ro: cannot write in this folder"):
            check_output_dir(ro)
        monkeypatch.setattr(convert, "read_volume", no_read)
        assert main(["convert", str(CORD), str(ro / "out.nii.gz")]) == 1
        line = _one_error_line(capsys.readouterr().err)
        assert str(ro) in line and "cannot write in this folder" in line
        assert list(ro.iterdir()) == []


def test_parent_that_is_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "notes.txt"
    blocker.write_text("x")
    target = blocker / "sub" / "out.nii.gz"
    with pytest.raises(OutputError, match=r"notes\.txt is a file, not a folder"):
        write_volume(_vol(), target)
    assert main(["convert", str(CORD), str(target)]) == 1
    assert "notes.txt is a file, not a folder" in _one_error_line(capsys.readouterr().err)
    assert blocker.read_text() == "x"


def test_existing_folder_as_output_file_refused_even_with_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "out.nii.gz"
    folder.mkdir()
    (folder / "keep.txt").write_text("x")
    for extra in ([], ["--overwrite"]):
        assert main(["convert", str(CORD), str(folder), *extra]) == 1
        line = _one_error_line(capsys.readouterr().err)
        assert "out.nii.gz: is a folder; expected a file path" in line
    assert (folder / "keep.txt").read_text() == "x"
    assert stray_files(tmp_path) == []


def test_evaluate_out_that_is_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "eval.txt"
    out.write_text("x")
    lab = SAMPLE / "cord_t2w_label.nii.gz"
    assert main(["evaluate", str(lab), str(lab), "--out", str(out), "--quiet"]) == 1
    line = _one_error_line(capsys.readouterr().err)
    assert "eval.txt: exists and is not a folder" in line
    assert out.read_text() == "x"


def test_disk_full_while_writing_is_one_error_naming_the_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def full(img: object, filename: str) -> None:
        Path(filename).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(nib, "save", full)
    target = tmp_path / "out.nii.gz"
    assert main(["convert", str(CORD), str(target)]) == 1
    line = _one_error_line(capsys.readouterr().err)
    assert f"{target}: cannot write: No space left on device" in line
    assert list(tmp_path.iterdir()) == []


def test_failed_run_removes_the_empty_output_folders_it_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"\x1f\x8b not gzip")
    assert main(["convert", str(bad), str(tmp_path / "new" / "sub" / "out.nii.gz")]) == 1
    assert "bad.nii.gz" in _one_error_line(capsys.readouterr().err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.nii.gz"]


# --- defect 9: .mhd companions ----------------------------------------------------------------
def test_mhd_does_not_replace_an_existing_data_file(tmp_path: Path) -> None:
    data = tmp_path / "v.zraw"
    data.write_bytes(b"someone else's data")
    with pytest.raises(OutputExistsError, match=r"v\.zraw: output exists"):
        write_volume(_vol(), tmp_path / "v.mhd")
    assert data.read_bytes() == b"someone else's data"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.zraw"]
    write_volume(_vol(), tmp_path / "v.mhd", overwrite=True)
    np.testing.assert_array_equal(read_volume(tmp_path / "v.mhd").array, _vol().array)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mhd", "v.zraw"]


# --- defect 10: file mode -----------------------------------------------------------------------
@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_outputs_get_the_usual_mode(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        assert usual_file_mode() == 0o666 & ~umask
        for name in ("v.nii.gz", "v.nrrd", "v.mhd"):
            write_volume(_vol(), tmp_path / name)
        reference = tmp_path / "plain.txt"
        reference.write_text("made with open()")
    finally:
        os.umask(old)
    want = reference.stat().st_mode & 0o777
    assert want == 0o666 & ~umask
    for p in tmp_path.iterdir():
        assert p.stat().st_mode & 0o777 == want, p.name


# --- defect 11: temporaries after SIGTERM / SIGKILL --------------------------------------------
_SLOW_CHILD = r"""
import sys, time
from pathlib import Path
import nibabel as nib
from medseg.cli import main

def slow_save(img, filename):
    Path(filename).write_bytes(b"partial" * 100000)
    Path(sys.argv[3]).write_text("writing")
    time.sleep(120)

nib.save = slow_save
sys.exit(main(["convert", sys.argv[1], sys.argv[2]]))
"""


def _start_slow_convert(tmp_path: Path) -> tuple[subprocess.Popen[str], Path, Path]:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    target, marker = out_dir / "ct.nii.gz", tmp_path / "marker"
    proc = subprocess.Popen(
        [sys.executable, "-c", _SLOW_CHILD, str(CORD), str(target), str(marker)],
        cwd=REPO,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "the child never started writing"
        time.sleep(0.02)
    assert len(stray_files(out_dir)) == 1  # the temporary file being written
    return proc, out_dir, target


def test_sigterm_removes_the_temporary_file(tmp_path: Path) -> None:
    proc, out_dir, target = _start_slow_convert(tmp_path)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "terminated by SIGTERM" in err and "Traceback" not in err
    assert list(out_dir.iterdir()) == []
    assert not target.exists()


def test_temporary_left_by_sigkill_is_removed_by_the_next_run(tmp_path: Path) -> None:
    proc, out_dir, _ = _start_slow_convert(tmp_path)
    proc.kill()
    proc.communicate(timeout=60)
    (stale,) = stray_files(out_dir)
    res = subprocess.run(
        [sys.executable, "-m", "medseg", "convert", str(CORD), str(out_dir / "other.nii.gz")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert f"removed {stale}" in res.stderr and "interrupted medseg run" in res.stderr
    assert sorted(p.name for p in out_dir.iterdir()) == ["convert.json", "other.nii.gz"]


def test_stale_cleanup_spares_live_processes_and_other_hosts(tmp_path: Path) -> None:
    host = "".join(c for c in socket.gethostname() if c.isalnum())[:24]
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    names = {
        "dead": f".a.nii.gz.medseg-{host}-{dead}-abc12345.part.nii.gz",
        "live": f".b.nii.gz.medseg-{host}-{os.getppid()}-abc12345.part.nii.gz",
        "other_host": f".c.nii.gz.medseg-elsewhere{host}-{dead}-abc12345.part.nii.gz",
        "not_ours": f".d.nii.gz.tool-{host}-{dead}-abc12345.part.nii.gz",
    }
    for n in names.values():
        (tmp_path / n).write_bytes(b"x")
    removed = clean_stale_temporaries(tmp_path)
    assert [p.name for p in removed] == [names["dead"]]
    left = {p.name for p in tmp_path.iterdir()}
    assert left == {names["live"], names["other_host"], names["not_ours"]}
