"""DICOM inputs that must be refused (or accepted with a recorded warning), never read into a
silently shorter, cropped, scrambled or flipped volume; and messages that say what was found.

Series are written by :func:`support.dicom.write_series` (known geometry, ``shuffle=False`` so
file ``im000k.dcm`` is slice ``k`` along the normal), then damaged with pydicom or by hand.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import RLELossless
from support.dicom import AXIAL, write_series
from support.files import make_dangling_link, make_fifo, make_link_loop
from support.paths import REPO

from medseg.cli import main
from medseg.errors import DicomSeriesError, InputError
from medseg.io.dicom import pixels as pixels_mod
from medseg.io.dicom import read_dicom, scan_dicom_folder


def _series(folder: Path, n: int = 6, **kw: object) -> list[Path]:
    write_series(folder, n=n, rows=8, cols=9, shuffle=False, **kw)  # type: ignore[arg-type]
    return sorted(folder.glob("im*.dcm"))


def _edit(path: Path, **values: object) -> None:
    """Set (or delete, for ``None``) attributes of one file, invalid values included."""
    from pydicom import config

    settings = config.settings
    saved = (settings.reading_validation_mode, settings.writing_validation_mode)
    settings.reading_validation_mode = settings.writing_validation_mode = config.IGNORE
    try:
        ds = pydicom.dcmread(path)
        for k, v in values.items():
            if v is None:
                delattr(ds, k)
            elif isinstance(v, str) and k.startswith("Rescale"):  # any text, stored as LO
                ds.add_new(pydicom.datadict.tag_for_keyword(k), "LO", v)
            else:
                setattr(ds, k, v)
        ds.save_as(path)
    finally:
        settings.reading_validation_mode, settings.writing_validation_mode = saved


# --- defect 1: unreadable or too-short files at either end of a series -------------------------
DAMAGE: dict[str, Callable[[Path], None]] = {
    "zero_bytes": lambda f: f.write_bytes(b""),
    "nul_preamble_only": lambda f: f.write_bytes(b"\x00" * 100),
    "short_dcm": lambda f: f.write_bytes(f.read_bytes()[:60]),
    "header_only": lambda f: f.write_bytes(f.read_bytes()[:200]),
}


@pytest.mark.parametrize("end", [0, -1], ids=["first", "last"])
@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_end_slice_refuses_the_series(
    tmp_path: Path, damage: str, end: int, capsys: pytest.CaptureFixture[str]
) -> None:
    files = _series(tmp_path / "s")
    victim = files[end]
    DAMAGE[damage](victim)
    scan = scan_dicom_folder(tmp_path / "s")
    assert [p for p, _ in scan.unreadable] == [victim]
    (s,) = scan.series
    assert s.problem is not None and victim.name in s.problem
    with pytest.raises(InputError) as ei:
        read_dicom(tmp_path / "s")
    assert ei.value.path == victim
    out = tmp_path / "out.nii.gz"
    assert main(["convert", str(tmp_path / "s"), str(out)]) == 1
    assert victim.name in capsys.readouterr().err
    assert not out.exists()
    assert main(["info", str(tmp_path / "s")]) == 1
    assert victim.name in capsys.readouterr().out


def test_short_text_file_beside_a_series_is_not_dicom(tmp_path: Path) -> None:
    _series(tmp_path / "s", n=3)
    (tmp_path / "s" / "notes.txt").write_text("hello")
    (tmp_path / "s" / ".gitkeep").write_bytes(b"")
    scan = scan_dicom_folder(tmp_path / "s")
    assert scan.unreadable == [] and scan.series[0].problem is None


# --- defect 2: pixel data length must equal what the header declares ---------------------------
@pytest.mark.parametrize("attr", ["Rows", "Columns"])
def test_more_pixel_data_than_rows_x_columns_refused(tmp_path: Path, attr: str) -> None:
    files = _series(tmp_path / "s", n=3)
    for f in files:  # every slice, so they still form one series of the smaller size
        _edit(f, **{attr: 7})
    with pytest.raises(InputError, match=r"pixel data holds 144 bytes; the header declares"):
        read_dicom(tmp_path / "s")


def test_compressed_frame_larger_than_declared_refused(tmp_path: Path) -> None:
    files = _series(tmp_path / "s", n=3, transfer_syntax=RLELossless)
    for f in files:
        _edit(f, Rows=7)
    with pytest.raises(InputError, match=r"im0000\.dcm: .*(7|63)"):
        read_dicom(tmp_path / "s", parallel=False)


# --- defect 3: header values that would silently change the volume -----------------------------
@pytest.mark.parametrize(
    ("values", "expect"),
    [
        ({"PixelSpacing": ["-0.5", "0.7"]}, r"im0002\.dcm: PixelSpacing \(-0.5, 0.7\) mm: exp"),
        ({"PixelSpacing": ["0", "0.7"]}, r"im0002\.dcm: PixelSpacing \(0, 0.7\) mm: expected"),
        ({"RescaleSlope": "0"}, r"im0002\.dcm: RescaleSlope 0: expected a non-zero number"),
        ({"RescaleSlope": "abc"}, r"im0002\.dcm: RescaleSlope 'abc': expected one finite"),
        ({"RescaleIntercept": "x1"}, r"im0002\.dcm: RescaleIntercept 'x1': expected one"),
        ({"BitsStored": 17}, r"im0002\.dcm: BitsStored 17 > BitsAllocated 16"),
        ({"PhotometricInterpretation": "PALETTE COLOR"}, r"colour image \(.*PALETTE COLOR"),
        ({"PhotometricInterpretation": "FOO"}, r"unknown PhotometricInterpretation 'FOO'"),
    ],
    ids=[
        "negative_spacing",
        "zero_spacing",
        "slope_0",
        "slope_text",
        "intercept_text",
        "bits_stored",
        "palette",
        "unknown_pi",
    ],
)
def test_invalid_header_value_refused_with_reason(
    tmp_path: Path, values: dict[str, object], expect: str
) -> None:
    files = _series(tmp_path / "s", n=5)
    _edit(files[2], **values)
    with pytest.raises(InputError, match=expect):
        read_dicom(tmp_path / "s")


def test_missing_photometric_interpretation_assumed_with_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    files = _series(tmp_path / "s", n=3)
    _edit(files[1], PhotometricInterpretation=None)
    vol = read_dicom(tmp_path / "s")
    (warning,) = vol.meta.extra["warnings"]
    assert "im0001.dcm" in warning and "assumed MONOCHROME2" in warning
    assert warning in caplog.text


def test_monochrome1_is_read_as_stored_values(tmp_path: Path) -> None:
    files = _series(tmp_path / "s", n=3)
    for f in files:
        _edit(f, PhotometricInterpretation="MONOCHROME1")
    assert read_dicom(tmp_path / "s").shape == (9, 8, 3)


# --- defect 4: a decoder that fails or dies in a worker process -------------------------------
def _compressed_series(folder: Path, n: int = 10) -> list[Path]:
    return _series(folder, n=n, transfer_syntax=RLELossless)


def _crash_on(victim: Path, how: str) -> Callable[..., np.ndarray]:
    real = pixels_mod.decode_encapsulated

    def decode(h: object) -> np.ndarray:
        if h.path == victim:  # type: ignore[attr-defined]
            if how == "segfault":
                faulthandler.disable()  # pytest's handler would print the child's stack
                os.kill(os.getpid(), signal.SIGSEGV)
            if how == "exit":
                os._exit(3)
            raise InputError(victim, "cannot decode pixel data (simulated)")
        return real(h)  # type: ignore[arg-type]

    return decode


@pytest.mark.parametrize("how", ["segfault", "exit", "error"])
def test_worker_that_dies_or_fails_names_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    files = _compressed_series(tmp_path / "s")
    monkeypatch.setattr(pixels_mod, "_usable_cpus", lambda: 2)
    monkeypatch.setattr(pixels_mod, "decode_encapsulated", _crash_on(files[4], how))
    with pytest.raises(InputError) as ei:
        read_dicom(tmp_path / "s", parallel=True)
    assert ei.value.path == files[4]
    if how == "segfault":
        assert "decoding process died (killed by SIGSEGV)" in str(ei.value)
    if how == "exit":
        assert "decoding process died (exit status 3)" in str(ei.value)


def test_batch_goes_on_after_a_worker_dies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = _compressed_series(tmp_path / "study" / "a")
    write_series(tmp_path / "study" / "b", n=3, series_number=9, description="good")
    monkeypatch.setattr(pixels_mod, "_usable_cpus", lambda: 2)
    monkeypatch.setattr(pixels_mod, "decode_encapsulated", _crash_on(bad[3], "segfault"))
    out = tmp_path / "out"
    assert main(["convert", str(tmp_path / "study"), str(out), "--all"]) == 1
    cap = capsys.readouterr()
    assert "1 converted, 0 already done, 1 failed" in cap.err and bad[3].name in cap.err
    written = sorted(p.name for p in out.iterdir())
    assert written[0] == "convert.json" and len(written) == 2
    assert written[1].startswith("s009_good_") and written[1].endswith(".nii.gz")
    assert main(["info", str(tmp_path / "study")]) == 1
    cap = capsys.readouterr()
    assert "killed by SIGSEGV" in cap.out and "2 DICOM series" in cap.out


# --- defect 8: links and non-regular files in a DICOM folder ----------------------------------
def test_links_and_fifos_are_skipped_with_the_reason(tmp_path: Path) -> None:
    _series(tmp_path / "s", n=3)
    loop = make_link_loop(tmp_path / "s" / "loop.dcm")
    dangling = make_dangling_link(tmp_path / "s" / "gone.dcm")
    fifo = make_fifo(tmp_path / "s" / "pipe.dcm")
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", tmp_path / "s" / "linked_dir")
    scan = scan_dicom_folder(tmp_path / "s")
    reasons = {p.name: r for p, r in scan.skipped}
    assert "symbolic link loop" in reasons[loop.name]
    assert "dangling symbolic link" in reasons[dangling.name]
    assert "FIFO" in reasons[fifo.name] and "not opened" in reasons[fifo.name]
    assert "not followed" in reasons["linked_dir"]
    assert scan.series[0].problem is None and read_dicom(tmp_path / "s").shape == (9, 8, 3)


@pytest.mark.parametrize("target", ["folder", "file"])
def test_info_on_a_fifo_never_hangs(tmp_path: Path, target: str) -> None:
    _series(tmp_path / "s", n=3)
    fifo = make_fifo(tmp_path / "s" / "pipe.nii.gz")
    path = tmp_path / "s" if target == "folder" else fifo
    res = subprocess.run(
        [sys.executable, "-m", "medseg", "info", str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Traceback" not in res.stderr
    if target == "folder":
        assert res.returncode == 0, res.stderr
        assert "pipe.nii.gz" in res.stdout and "FIFO" in res.stdout
    else:
        assert res.returncode == 1
        assert f"{fifo}: a FIFO (named pipe); expected a regular file" in res.stderr


# --- defect 14: messages that say what was found -----------------------------------------------
def _rotated_iop(deg: float) -> list[str]:
    t = np.deg2rad(deg)
    return [f"{v:.8f}" for v in (np.cos(t), np.sin(t), 0.0, -np.sin(t), np.cos(t), 0.0)]


def test_one_slice_slightly_off_orientation_is_named(tmp_path: Path) -> None:
    per_slice: list[dict[str, object]] = [{} for _ in range(8)]
    per_slice[3] = {"ImageOrientationPatient": _rotated_iop(0.5)}
    write_series(tmp_path / "s", n=8, iop=AXIAL, per_slice=per_slice, shuffle=False)
    problems = [s.problem for s in scan_dicom_folder(tmp_path / "s").series if s.problem]
    (problem,) = problems
    assert "im0003.dcm" in problem and "0.5 degrees off the other 7 slices" in problem


def test_slice_shifted_sideways_is_not_called_a_tilt(tmp_path: Path) -> None:
    pos = [np.array([0.0, 0.0, 2.0 * k]) for k in range(8)]
    pos[-1] = pos[-1] + np.array([1000.0, 0.0, 0.0])
    write_series(tmp_path / "s", positions=pos, shuffle=False)
    with pytest.raises(DicomSeriesError) as ei:
        read_dicom(tmp_path / "s")
    msg = str(ei.value)
    assert "im0007.dcm" in msg and "shifted 1e+03 mm in-plane" in msg and "tilt" not in msg


def test_unreadable_middle_slice_is_named_not_called_uneven_spacing(tmp_path: Path) -> None:
    files = _series(tmp_path / "s", n=6)
    files[2].write_bytes(files[2].read_bytes()[:300])
    (s,) = scan_dicom_folder(tmp_path / "s").series
    assert s.problem is not None and s.problem.startswith("1 unreadable file(s)")
    assert "im0002.dcm" in s.problem
    with pytest.raises(InputError) as ei:
        read_dicom(tmp_path / "s")
    assert ei.value.path == files[2]


def test_parallel_decoding_keeps_peak_memory_low(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Decoded frames are dropped as soon as they are copied into the volume (no future keeps
    its result alive), as in the serial path."""
    import tracemalloc

    write_series(
        tmp_path / "s", n=24, rows=256, cols=256, shuffle=False, transfer_syntax=RLELossless
    )
    monkeypatch.setattr(pixels_mod, "_usable_cpus", lambda: 2)
    scan = scan_dicom_folder(tmp_path / "s")
    tracemalloc.start()
    try:
        vol = read_dicom(tmp_path / "s", scan=scan, parallel=True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak <= 1.5 * vol.array.nbytes, (peak, vol.array.nbytes)
