"""A corpus of bad inputs, generated at test time from the shipped sample data, run through
every command of the ``medseg`` CLI.

Each run must: exit non-zero, print no traceback and no library noise, name the culprit file
(or folder) in its messages, leave nothing at the target output path and no temporary file
anywhere. Commands run in-process (``medseg.cli.main``), except inputs that could hang a
broken reader (FIFOs), which run in a subprocess with a timeout.

To add a command (predict, volumetry, segment, ...), add one row to :data:`COMMANDS`; to add a
bad input, one entry to :data:`INPUTS` (or :data:`OUTPUTS` for bad output locations).

``evaluate`` is a batch: a case that cannot be read is reported in ``failures.csv`` with the
other outputs, by design; for it the corpus checks that no metric row was produced and that
the failure names the file.
"""

from __future__ import annotations

import functools
import gzip
import json
import shutil
import struct
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from support.files import (
    make_dangling_link,
    make_fifo,
    make_link_loop,
    stray_files,
    unwritable_dir,
)
from support.paths import REPO, SAMPLE

from medseg.cli import main

IMAGE = SAMPLE / "cord_t2w.nii.gz"
LABEL = SAMPLE / "cord_t2w_label.nii.gz"


# --- bad inputs ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Bad:
    """``make(root)`` writes the bad input under ``root`` and returns ``(path to pass,
    culprit)``: the culprit's name must appear in the command's messages."""

    make: Callable[[Path], tuple[Path, Path]]
    #: "volume": an image / label path (file or DICOM folder); "dataset": a dataset description
    role: str
    #: run in a subprocess (a broken reader would block on it forever)
    subprocess: bool = False
    #: commands (keys of COMMANDS, or their first word) for which the input is acceptable
    fine_for: tuple[str, ...] = ()


def _dicom(root: Path, n: int = 10) -> Path:
    """The first ``n`` slices of the shipped JPEG 2000 CT series (contiguous; >= 8 compressed
    files, so they are decoded in worker processes)."""
    folder = root / "ct"
    folder.mkdir(parents=True)
    for f in sorted((SAMPLE / "ct_dicom").glob("*.dcm"))[:n]:
        shutil.copy(f, folder / f.name)
    return folder


def _dicom_damaged(damage: Callable[[Path], None], index: int) -> Callable[[Path], tuple]:
    def make(root: Path) -> tuple[Path, Path]:
        folder = _dicom(root)
        victim = sorted(folder.glob("*.dcm"))[index]
        damage(victim)
        return folder, victim

    return make


def _dicom_edit(**values: object) -> Callable[[Path], None]:
    def damage(f: Path) -> None:
        ds = pydicom.dcmread(f)
        for k, v in values.items():
            if isinstance(v, str) and k.startswith("Rescale"):
                ds.add_new(pydicom.datadict.tag_for_keyword(k), "LO", v)
            else:
                setattr(ds, k, v)
        ds.save_as(f)

    return damage


def _dicom_with(entry: Callable[[Path], Path]) -> Callable[[Path], tuple]:
    """A DICOM folder holding only ``entry`` (a link, a FIFO, ...)."""

    def make(root: Path) -> tuple[Path, Path]:
        folder = root / "series"
        folder.mkdir(parents=True)
        entry(folder / "im0001.dcm")
        return folder, folder

    return make


def _nifti_bytes(name: str, edit: Callable[[bytes], bytes]) -> Callable[[Path], tuple]:
    def make(root: Path) -> tuple[Path, Path]:
        root.mkdir(parents=True, exist_ok=True)
        raw = gzip.decompress(IMAGE.read_bytes())
        path = root / name
        data = edit(raw)
        path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
        return path, path

    return make


def _set(offset: int, fmt: str, *values: float) -> Callable[[bytes], bytes]:
    def edit(raw: bytes) -> bytes:
        b = bytearray(raw)
        b[offset : offset + struct.calcsize(fmt)] = struct.pack(fmt, *values)
        return bytes(b)

    return edit


def _no_forms_zero_pixdim(raw: bytes) -> bytes:
    b = bytearray(raw)
    b[76 + 4 : 76 + 16] = struct.pack("<fff", 0.0, 1.0, 1.0)  # pixdim[1..3]
    b[252:256] = struct.pack("<hh", 0, 0)  # qform_code, sform_code
    return bytes(b)


def _array_file(name: str, arr: np.ndarray) -> Callable[[Path], tuple]:
    def make(root: Path) -> tuple[Path, Path]:
        root.mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(arr, np.eye(4)), root / name)
        return root / name, root / name

    return make


def _file(name: str, data: bytes) -> Callable[[Path], tuple]:
    def make(root: Path) -> tuple[Path, Path]:
        root.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
        return root / name, root / name

    return make


def _entry(name: str, build: Callable[[Path], Path]) -> Callable[[Path], tuple]:
    def make(root: Path) -> tuple[Path, Path]:
        root.mkdir(parents=True, exist_ok=True)
        p = build(root / name)
        return p, p

    return make


def _csv(text: bytes) -> Callable[[Path], tuple]:
    return _file("cases.csv", text)


def _missing_in_csv(root: Path) -> tuple[Path, Path]:
    root.mkdir(parents=True, exist_ok=True)
    (root / "cases.csv").write_text(f"case_id,image,label\nc0,nope.nii.gz,{LABEL}\n")
    return root / "cases.csv", root / "nope.nii.gz"


def _dataset_json(content: bytes) -> Callable[[Path], tuple]:
    def make(root: Path) -> tuple[Path, Path]:
        (root / "ds").mkdir(parents=True)
        (root / "ds" / "dataset.json").write_bytes(content)
        return root / "ds", root / "ds" / "dataset.json"

    return make


def _truncate(n: int) -> Callable[[Path], None]:
    return lambda f: f.write_bytes(f.read_bytes()[:n])


def _forged_gzip_trailer(root: Path) -> tuple[Path, Path]:
    """1.2 MB of voxel data behind a header claiming 1 GiB, the gzip size trailer forged to
    match (it used to be trusted: the claimed size was allocated before the read failed)."""
    root.mkdir(parents=True, exist_ok=True)
    hdr = nib.Nifti1Header()
    hdr.set_data_dtype(np.uint8)
    hdr.set_data_shape((1024, 1024, 1024))
    hdr.set_sform(np.eye(4), code=1)
    hdr["vox_offset"] = 352
    payload = np.random.default_rng(0).integers(0, 256, 1_200_000, dtype=np.uint8).tobytes()
    data = bytearray(gzip.compress(hdr.binaryblock + b"\0" * 4 + payload, compresslevel=1))
    data[-4:] = ((352 + 1024**3) % (1 << 32)).to_bytes(4, "little")
    (root / "liar.nii.gz").write_bytes(bytes(data))
    return root / "liar.nii.gz", root / "liar.nii.gz"


GARBAGE = bytes(range(256)) * 40
INPUTS: dict[str, Bad] = {
    # DICOM series
    "dicom_zero_byte_last_slice": Bad(_dicom_damaged(lambda f: f.write_bytes(b""), -1), "volume"),
    "dicom_short_first_slice": Bad(_dicom_damaged(_truncate(60), 0), "volume"),
    "dicom_header_cut_slice": Bad(_dicom_damaged(_truncate(400), 4), "volume"),
    "dicom_undecodable_slice": Bad(
        _dicom_damaged(_truncate(78000), 5),
        "volume",
        fine_for=("info_headers_only",),  # its header is intact; only decoding fails
    ),
    "dicom_garbage_after_preamble": Bad(
        _dicom_damaged(lambda f: f.write_bytes(b"\0" * 128 + b"DICM" + GARBAGE), 3), "volume"
    ),
    "dicom_negative_spacing": Bad(
        _dicom_damaged(_dicom_edit(PixelSpacing=["-0.9765625", "0.9765625"]), 2), "volume"
    ),
    "dicom_rescale_slope_zero": Bad(_dicom_damaged(_dicom_edit(RescaleSlope="0"), 6), "volume"),
    "dicom_rescale_slope_text": Bad(_dicom_damaged(_dicom_edit(RescaleSlope="x"), 6), "volume"),
    "dicom_palette_colour": Bad(
        _dicom_damaged(_dicom_edit(PhotometricInterpretation="PALETTE COLOR"), 1),
        "volume",
        fine_for=("info",),  # info describes the series as refused (a colour image)
    ),
    "dicom_only_a_link_loop": Bad(_dicom_with(make_link_loop), "volume"),
    "dicom_only_a_dangling_link": Bad(_dicom_with(make_dangling_link), "volume"),
    "dicom_only_a_fifo": Bad(_dicom_with(make_fifo), "volume", subprocess=True),
    # NIfTI and other files
    "nifti_truncated": Bad(_file("cut.nii.gz", IMAGE.read_bytes()[:20000]), "volume"),
    "nifti_zero_bytes": Bad(_file("empty.nii.gz", b""), "volume"),
    "nifti_garbage": Bad(_file("garbage.nii.gz", GARBAGE), "volume"),
    "nifti_huge_dims": Bad(
        _nifti_bytes("huge.nii.gz", _set(42, "<hhh", 30000, 30000, 30000)), "volume"
    ),
    "nifti_forged_gzip_trailer": Bad(_forged_gzip_trailer, "volume"),
    "nifti_huge_dims_uncompressed": Bad(
        _nifti_bytes("huge.nii", _set(42, "<hhh", 30000, 30000, 30000)), "volume"
    ),
    "nifti_zero_pixdim_no_forms": Bad(_nifti_bytes("pix.nii", _no_forms_zero_pixdim), "volume"),
    "nifti_complex": Bad(_array_file("cplx.nii", np.zeros((4, 4, 4), np.complex64)), "volume"),
    "nifti_zero_length_axis": Bad(_array_file("z.nii", np.zeros((0, 4, 4), np.float32)), "volume"),
    "nifti_nan": Bad(
        _array_file("nan.nii.gz", np.full((4, 4, 4), np.nan, np.float32)),
        "volume",
        fine_for=("info",),  # info describes NaN volumes (and counts the NaN voxels)
    ),
    "fifo_named_nifti": Bad(_entry("pipe.nii.gz", make_fifo), "volume", subprocess=True),
    "dangling_link_nifti": Bad(_entry("gone.nii.gz", make_dangling_link), "volume"),
    "link_loop_nifti": Bad(_entry("loop.nii.gz", make_link_loop), "volume"),
    "unsupported_format": Bad(_file("scan.png", b"\x89PNG\r\n\x1a\n" + GARBAGE), "volume"),
    # dataset descriptions
    "csv_binary": Bad(_csv(b"case_id,image\x00\x01\x02" + GARBAGE), "dataset"),
    "csv_not_utf8": Bad(
        _csv("case_id,image,label\nc\xe9,a.nii.gz,b.nii.gz\n".encode("latin-1")), "dataset"
    ),
    "csv_missing_image": Bad(_missing_in_csv, "dataset"),
    "dataset_json_binary": Bad(_dataset_json(GARBAGE), "dataset"),
    "dataset_json_invalid": Bad(_dataset_json(b'{"name": "x", "training": [,]}'), "dataset"),
}


def _dataset_around(bad_image: Path, root: Path) -> Path:
    """A two-case Decathlon dataset whose second case's image is ``bad_image``."""
    ds = root / "dataset"
    (ds / "imagesTr").mkdir(parents=True)
    (ds / "labelsTr").mkdir()
    shutil.copy(IMAGE, ds / "imagesTr" / "good.nii.gz")
    shutil.copy(LABEL, ds / "labelsTr" / "good.nii.gz")
    shutil.copy(LABEL, ds / "labelsTr" / "bad.nii.gz")
    training = [
        {"image": "./imagesTr/good.nii.gz", "label": "./labelsTr/good.nii.gz"},
        {"image": str(bad_image), "label": "./labelsTr/bad.nii.gz"},
    ]
    doc = {
        "name": "corpus",
        "modality": {"0": "MR"},
        "labels": {"0": "bg", "1": "cord"},
        "training": training,
    }
    (ds / "dataset.json").write_text(json.dumps(doc))
    return ds


# --- commands ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Command:
    """``argv(input, out)``: the command line; ``role``: the input role it reads;
    ``target``: where its output would go (must not exist afterwards); ``batch``: the output
    is a report that records failures (see the module docstring)."""

    argv: Callable[[Path, Path], list[str]]
    role: str
    target: str = "out"
    batch: bool = False
    #: for a batch: the table whose rows are results (it must hold only its header)
    results: str = "metrics.csv"


COMMANDS: dict[str, Command] = {
    "info": Command(lambda i, o: ["info", str(i)], "volume", target=""),
    "info_headers_only": Command(
        lambda i, o: ["info", "--headers-only", str(i)], "volume", target=""
    ),
    "convert": Command(
        lambda i, o: ["convert", str(i), str(o / "out.nii.gz")], "volume", target="out/out.nii.gz"
    ),
    "convert_label": Command(
        lambda i, o: ["convert", "--label", str(i), str(o / "l.nrrd")],
        "volume",
        target="out/l.nrrd",
    ),
    "evaluate": Command(
        lambda i, o: ["evaluate", str(i), str(LABEL), "--out", str(o), "--quiet"],
        "volume",
        batch=True,
    ),
    "check": Command(lambda i, o: ["check", str(i)], "dataset", target=""),
    "plan": Command(lambda i, o: ["plan", str(i), "--out", str(o)], "dataset"),
    "predict": Command(
        lambda i, o: ["predict", "--model", str(_model()), str(i), str(o), "--quiet"], "volume"
    ),
    "segment": Command(
        lambda i, o: ["segment", str(i), str(o / "seg.nii.gz"), "--method", "otsu"],
        "volume",
        target="out/seg.nii.gz",
    ),
    "volumetry": Command(
        lambda i, o: ["volumetry", str(i), "--out", str(o), "--no-figures"],
        "volume",
        batch=True,
        results="volumes.csv",
    ),
}


@functools.lru_cache(maxsize=1)
def _model() -> Path:
    """A checkpoint of a tiny untrained network for one CT-like channel (made once)."""
    from support.plans import tiny_network, tiny_plan

    from medseg.checkpoint import CheckpointMeta, save_checkpoint
    from medseg.models import build_model

    plan = tiny_plan(target_spacing=(2.0, 2.0, 2.0), network=tiny_network(3, [4, 8, 8]))
    folder = Path(tempfile.mkdtemp(prefix="medseg_corpus_model_"))
    return save_checkpoint(folder / "tiny.pt", build_model(plan).state_dict(), CheckpointMeta(plan))


def _cases() -> list[tuple[str, str]]:
    out = []
    for bname, bad in INPUTS.items():
        for cname, cmd in COMMANDS.items():
            if cname in bad.fine_for or cname.split("_")[0] in bad.fine_for:
                continue
            if cmd.role == bad.role or (cmd.role == "dataset" and bad.role == "volume"):
                out.append((bname, cname))
    return out


def _run(argv: list[str], in_subprocess: bool, capsys: pytest.CaptureFixture[str]) -> tuple:
    if in_subprocess:
        res = subprocess.run(
            [sys.executable, "-m", "medseg", *argv],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        return res.returncode, res.stdout, res.stderr
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse
        code = int(exc.code or 0)
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def _check_run(
    code: int, out: str, err: str, culprit: Path, root: Path, cmd: Command, out_dir: Path
) -> None:
    text = out + err
    assert code != 0, text
    assert "Traceback" not in text, text
    for noise in ("Warning:", "ERROR pydicom", "nibabel.global", "Level 35"):
        assert noise not in err, err
    assert culprit.name in text, text
    if cmd.batch and out_dir.exists():
        metrics = (out_dir / cmd.results).read_text().splitlines()
        assert metrics[1:] == [], metrics  # no result for a bad input
        assert culprit.name in (out_dir / "failures.csv").read_text()
    elif cmd.target:
        assert not (root / cmd.target).exists()
    assert stray_files(root) == []


@pytest.mark.parametrize(("bad_name", "command"), _cases())
def test_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], bad_name: str, command: str
) -> None:
    bad, cmd = INPUTS[bad_name], COMMANDS[command]
    path, culprit = bad.make(tmp_path / "in")
    if cmd.role == "dataset" and bad.role == "volume":
        path = _dataset_around(path, tmp_path / "in")
    out_dir = tmp_path / "out"
    code, out, err = _run(cmd.argv(path, out_dir), bad.subprocess, capsys)
    _check_run(code, out, err, culprit, tmp_path, cmd, out_dir)


# --- bad output locations ---------------------------------------------------------------------
def _file_in_the_way(root: Path, cmd: Command) -> Path:
    (root / "out").write_text("not a folder")
    return root / "out"


def _existing_folder(root: Path, cmd: Command) -> Path:
    (root / cmd.target).mkdir(parents=True)
    return root / cmd.target


OUTPUTS: dict[str, Callable[[Path, Command], Path]] = {
    "out_is_a_file": _file_in_the_way,  # the output folder (or a parent) is a file
    "target_is_a_folder": _existing_folder,  # a file output that exists as a folder
}
GOOD_INPUT = {"volume": lambda root: IMAGE, "dataset": lambda root: _dataset_around(IMAGE, root)}


def _output_cases() -> list[tuple[str, str]]:
    out = []
    for cname, cmd in COMMANDS.items():
        if not cmd.target:
            continue
        for where in [*OUTPUTS, "read_only"]:
            if where == "target_is_a_folder" and cmd.target == "out":
                continue  # the output is a folder: an existing one is fine
            out.append((where, cname))
    return out


@pytest.mark.parametrize(("where", "command"), _output_cases())
def test_bad_output_location(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    command: str,
    where: str,
) -> None:
    cmd = COMMANDS[command]
    good = GOOD_INPUT[cmd.role](tmp_path / "in")
    if where == "read_only":
        with unwritable_dir(tmp_path / "ro", monkeypatch) as ro:
            code, out, err = _run(cmd.argv(good, ro / "out"), False, capsys)
            culprit = ro
    else:
        culprit = OUTPUTS[where](tmp_path, cmd)
        code, out, err = _run(cmd.argv(good, tmp_path / "out"), False, capsys)
    text = out + err
    assert code == 1 and "Traceback" not in text, text
    assert str(culprit) in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert stray_files(tmp_path) == []
