"""The output mechanism: safe names, output paths proven inside the folder, collisions,
inputs never outputs (:mod:`medseg.io.outputs`), the run manifest and per-case commits
(:mod:`medseg.io.manifest`), the one CSV writer (:mod:`medseg.io.report`)."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from support.files import stray_files

from medseg.errors import OutputError, OutputExistsError
from medseg.io import read_label_map, write_volume
from medseg.io.manifest import RunManifest
from medseg.io.outputs import (
    MAX_NAME_BYTES,
    case_stem,
    check_not_inputs,
    check_unique,
    output_path,
    safe_name,
    series_name,
)
from medseg.io.report import BatchReport, CaseOutcome, rows_to_csv
from medseg.io.run_files import write_run_files
from medseg.volume import LabelMap

HOSTILE = [
    "../../x",
    "/etc/passwd",
    "..",
    ".",
    "",
    "a/b\\c",
    "C:\\Windows\\x",
    "nul\x00byte",
    "tab\tand\nnewline",
    "CON",
    "com1.txt",
    "Lpt9",
    ".hidden",
    "x" * 400,
    "é" * 200,
    " ../ ",
    'a:b*c?d"e<f>g|h',
]


@pytest.mark.parametrize("name", HOSTILE)
def test_safe_name_is_one_harmless_component(name: str, tmp_path: Path) -> None:
    s = safe_name(name)
    assert s and s not in (".", "..") and not s.startswith(".")
    assert "/" not in s and "\\" not in s and "\x00" not in s
    assert not any(ord(c) < 32 for c in s)
    assert not any(c in s for c in ':*?"<>|')
    assert s.split(".")[0].upper() not in {"CON", "PRN", "AUX", "NUL", "COM1", "LPT9"}
    assert len(s.encode()) <= MAX_NAME_BYTES
    p = output_path(tmp_path, name, ".nii.gz")
    assert p.parent == tmp_path and p.name.endswith(".nii.gz")
    assert tmp_path.resolve() in p.resolve().parents


def test_safe_names_keep_ordinary_names_and_long_names_distinct() -> None:
    assert safe_name("case_01") == "case_01" and safe_name("Patient Ä 2") == "Patient Ä 2"
    assert safe_name("x" * 400) != safe_name("x" * 401)
    assert safe_name("../../x") != safe_name("x")


def test_output_path_refuses_a_link_leading_outside(tmp_path: Path) -> None:
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    os.symlink(elsewhere / "a.nii.gz", out / "a.nii.gz")
    with pytest.raises(OutputError, match="outside the output folder"):
        output_path(out, "a", ".nii.gz")
    os.symlink(elsewhere, out / "statistics")
    with pytest.raises(OutputError, match="outside the output folder"):
        output_path(out, "b", ".json", subdir="statistics")
    with pytest.raises(OutputError, match="suffix"):
        output_path(out, "a", "/../x")


def test_case_stems_and_series_names() -> None:
    assert case_stem(Path("d/case_01.nii.gz")) == "case_01"
    assert case_stem(Path("d/a.seg.nrrd")) == "a" and case_stem(Path("d/a.mha")) == "a"
    a = series_name(3, "CT / Thorax*", "1.2.3")
    assert a.startswith("s003_CT_Thorax_") and a != series_name(3, "CT / Thorax*", "1.2.4")
    assert series_name(-5, None, "k").startswith("s_")


def test_check_unique_refuses_colliding_and_case_folded_names(tmp_path: Path) -> None:
    check_unique([(tmp_path / "a.nrrd", "case a"), (tmp_path / "b.nrrd", "case b")])
    with pytest.raises(OutputError, match="would hold both case a and case A"):
        check_unique([(tmp_path / "a.nrrd", "case a"), (tmp_path / "A.nrrd", "case A")])
    with pytest.raises(OutputError, match=r"would hold both case a and case a\.seg"):
        check_unique([(tmp_path / "a.seg.nrrd", "case a"), (tmp_path / "a.seg.nrrd", "case a.seg")])


def test_check_not_inputs(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    scan = src / "x.nii.gz"
    scan.write_bytes(b"scan")
    os.link(scan, tmp_path / "hard.nii.gz")
    for out in (src, src / "sub", tmp_path):
        with pytest.raises(OutputError, match="input folder"):
            check_not_inputs([src], folder=out)
    check_not_inputs([src], folder=tmp_path / "apart")
    for f in (scan, src / "." / "x.nii.gz", tmp_path / "hard.nii.gz"):
        with pytest.raises(OutputError, match="is an input"):
            check_not_inputs([scan], files=[f])
    check_not_inputs([scan], files=[src / "x_seg.nii.gz"])  # beside the input is fine


# --- the run manifest -----------------------------------------------------------------------
def _commit(m: RunManifest, case: str, names: list[str], **kw: bool) -> list[Path]:
    targets = [m.folder / n for n in names]
    with m.commit_case(case, targets, inputs=[f"{case}.nii.gz"], **kw) as c:
        for t in targets:
            c.temporary(t).write_text(f"{case} {t.name}")
    return targets


def test_manifest_refuses_another_model_naming_the_difference(tmp_path: Path) -> None:
    a = {"kind": "medseg", "weights_sha256": {"m.pt": "aa"}}
    b = {"kind": "medseg", "weights_sha256": {"m.pt": "bb"}}
    m = RunManifest.open(tmp_path, "predict", model=a, options={"tta": False})
    _commit(m, "c1", ["c1.nii.gz"])
    with pytest.raises(OutputError, match=r"model\.weights_sha256\.m\.pt \('aa' then, 'bb' now\)"):
        RunManifest.open(tmp_path, "predict", model=b, options={"tta": False})
    with pytest.raises(OutputError, match=r"options\.tta \(False then, True now\)"):
        RunManifest.open(tmp_path, "predict", model=a, options={"tta": True})
    again = RunManifest.open(tmp_path, "predict", model=a, options={"tta": False})
    assert again.done("c1")
    redo = RunManifest.open(tmp_path, "predict", model=b, options={"tta": False}, overwrite=True)
    assert not redo.done("c1") and redo.owns(tmp_path / "c1.nii.gz")  # stale, replaceable
    doc = json.loads((tmp_path / "predict.json").read_text())
    assert doc["cases"]["c1"]["status"] == "stale" and doc["format"] == "medseg-run-manifest"


def test_overwrite_replaces_only_recorded_files(tmp_path: Path) -> None:
    m = RunManifest.open(tmp_path, "evaluate", compare=False)
    (tmp_path / "mine.csv").write_text("foreign")
    with pytest.raises(OutputExistsError, match=r"not recorded in evaluate\.json"):
        write_run_files(m, {tmp_path / "mine.csv": "x"}, overwrite=True)
    assert (tmp_path / "mine.csv").read_text() == "foreign"
    write_run_files(m, {tmp_path / "a.csv": "1", tmp_path / "b.csv": "2"}, overwrite=False)
    with pytest.raises(OutputExistsError):
        write_run_files(m, {tmp_path / "a.csv": "1"}, overwrite=False)
    m2 = RunManifest.open(tmp_path, "evaluate", compare=False, overwrite=True)
    write_run_files(m2, {tmp_path / "a.csv": "3"}, overwrite=True)  # b.csv not produced again
    assert (tmp_path / "a.csv").read_text() == "3" and not (tmp_path / "b.csv").exists()
    assert (tmp_path / "mine.csv").read_text() == "foreign"


@pytest.mark.parametrize("recorded", ["../victim/precious.txt", "/abs/precious.txt", "lnk/p.txt"])
def test_a_manifest_never_removes_a_file_outside_its_folder(recorded: str, tmp_path: Path) -> None:
    """A manifest edited by hand (or copied with a link beside it) that records a file
    outside the folder: ``--overwrite`` refuses, and the file outside stays."""
    out, victim = tmp_path / "out", tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("precious")
    (victim / "p.txt").write_text("precious")
    m = RunManifest.open(out, "evaluate", compare=False)
    write_run_files(m, {out / "a.csv": "1"}, overwrite=False)
    (out / "lnk").symlink_to(victim)
    doc = json.loads(m.path.read_text())
    doc["files"].append(recorded.replace("/abs", str(victim)))
    m.path.write_text(json.dumps(doc))
    with pytest.raises(OutputError, match=r"outside|not a file inside"):
        m2 = RunManifest.open(out, "evaluate", compare=False, overwrite=True)
        write_run_files(m2, {out / "a.csv": "2"}, overwrite=True)
    assert (victim / "precious.txt").read_text() == "precious"
    assert (victim / "p.txt").read_text() == "precious"


def test_a_failing_case_leaves_none_of_its_files(tmp_path: Path) -> None:
    m = RunManifest.open(tmp_path, "predict")
    targets = [tmp_path / "c.nii.gz", tmp_path / "c.dcm"]
    with pytest.raises(RuntimeError), m.commit_case("c", targets) as c:
        c.temporary(targets[0]).write_text("written")
        raise RuntimeError("the SEG was refused")
    assert not any(t.exists() for t in targets) and stray_files(tmp_path) == []
    assert not m.path.exists()  # nothing recorded: nothing written


def test_a_kill_between_renames_is_completed_by_the_rerun(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import medseg.io.manifest as manifest_mod

    real = os.replace
    calls: list[object] = []

    def killed_after_first(a: object, b: object) -> None:
        calls.extend([b] if Path(str(b)).name.startswith("c.") else [])
        if len(calls) == 2:
            raise KeyboardInterrupt  # stands for SIGKILL: nothing after it runs
        real(a, b)  # type: ignore[arg-type]

    monkeypatch.setattr(manifest_mod.os, "replace", killed_after_first)
    m = RunManifest.open(tmp_path, "predict")
    with pytest.raises(KeyboardInterrupt):
        _commit(m, "c", ["c.nii.gz", "c.probabilities.npz"])
    monkeypatch.setattr(manifest_mod.os, "replace", real)
    assert (tmp_path / "c.nii.gz").exists() and not (tmp_path / "c.probabilities.npz").exists()
    rerun = RunManifest.open(tmp_path, "predict")
    assert not rerun.done("c")  # pending: not counted as done, and not "output exists"
    _commit(rerun, "c", ["c.nii.gz", "c.probabilities.npz"])  # no overwrite needed
    assert rerun.done("c") and (tmp_path / "c.probabilities.npz").exists()


def test_a_failed_rename_takes_back_the_case(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import medseg.io.manifest as manifest_mod

    real = os.replace
    calls: list[object] = []

    def disk_full_on_second(a: object, b: object) -> None:
        calls.extend([b] if Path(str(b)).name.startswith("c.") else [])
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        real(a, b)  # type: ignore[arg-type]

    monkeypatch.setattr(manifest_mod.os, "replace", disk_full_on_second)
    m = RunManifest.open(tmp_path, "predict")
    with pytest.raises(OSError):
        _commit(m, "c", ["c.nii.gz", "c.nrrd"])
    assert not (tmp_path / "c.nii.gz").exists() and not (tmp_path / "c.nrrd").exists()


# --- the one CSV writer and report ------------------------------------------------------------
def test_csv_cells_that_start_like_formulas_are_prefixed() -> None:
    rows = [
        {"case": '=HYPERLINK("http://x")', "name": "+1", "v": -0.5, "n": -3},
        {"case": "@SUM(A1)", "name": "-2", "v": 1.0, "n": 2},
        {"case": "\tx", "name": "\rmal", "v": float("nan"), "n": 0},
        {"case": "ok-name", "name": ["=a", "b"], "v": 2.5, "n": 1},
    ]
    text = rows_to_csv(rows, ("case", "name", "v", "n"))
    got = list(csv.DictReader(io.StringIO(text)))
    assert [r["case"] for r in got] == ['\'=HYPERLINK("http://x")', "'@SUM(A1)", "'\tx", "ok-name"]
    assert [r["name"] for r in got] == ["'+1", "'-2", "'\\rmal", "'=a;b"]
    assert [r["v"] for r in got] == ["-0.5", "1.0", "nan", "2.5"]  # numbers stay numbers
    assert got[0]["n"] == "-3"


def test_batch_report_csv_and_summary(tmp_path: Path) -> None:
    r = BatchReport(tmp_path, verb="converted")
    r.cases += [
        CaseOutcome("a", "done", outputs=(tmp_path / "a.nii.gz",)),
        CaseOutcome("=b", "failed", error="bad"),
    ]
    assert "1 converted, 0 already done, 1 failed" in r.summary() and not r.ok
    rows = list(csv.DictReader(io.StringIO(r.to_csv())))
    assert rows[1]["case"] == "'=b" and rows[1]["error"] == "bad"
    assert r.as_json()["n_failed"] == 1


def test_write_volume_of_a_label_map_writes_its_label_table(tmp_path: Path) -> None:
    arr = np.zeros((4, 4, 4), np.uint8)
    arr[1, 1, 1], arr[2, 2, 2] = 1, 2
    lm = LabelMap(arr, np.eye(4), None, label_names={0: "background", 1: "liver", 2: "spleen"})
    for name in ("l.nii.gz", "l.nrrd"):
        write_volume(lm, tmp_path / name)
        back = read_label_map(tmp_path / name)
        assert back.label_names.get(1) == "liver" and back.label_names.get(2) == "spleen", name
