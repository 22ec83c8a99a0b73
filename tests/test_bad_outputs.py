"""The bad-input corpus, output side: hostile names, outputs onto inputs, foreign files under
``--overwrite``, colliding names, mixed runs, failing and interrupted cases — run through
every command that writes (``predict``, ``segment``, ``convert``, ``evaluate``,
``volumetry``, ``demo``).

Each run must leave the inputs and every file medseg did not write untouched, write nothing
outside OUTPUT, and refuse with one line (exit 1, no traceback) where it refuses.
"""

from __future__ import annotations

import functools
import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from support.dicom import write_series
from support.files import stray_files
from support.paths import SAMPLE

from medseg.cli import main

LABEL = SAMPLE / "cord_t2w_label.nii.gz"


@functools.lru_cache(maxsize=1)
def _small() -> Path:
    """A small scan (20 x 20 x 10 voxels of 2 mm, a bright ball in noise): quick to predict."""
    from support.volumes import ball_arrays, write_nifti

    image, _ = ball_arrays((20, 20, 10), np.random.default_rng(0), radius=4.0)
    folder = Path(tempfile.mkdtemp(prefix="medseg_outputs_scan_"))
    return write_nifti(folder / "small.nii.gz", image.astype(np.float32), np.diag([2.0, 2, 2, 1]))


@functools.lru_cache(maxsize=2)
def _model(seed: int = 0) -> Path:
    """A checkpoint of a tiny untrained network (one channel); ``seed`` picks its weights."""
    import torch
    from support.plans import tiny_network, tiny_plan

    from medseg.checkpoint import CheckpointMeta, save_checkpoint
    from medseg.models import build_model

    torch.manual_seed(seed)
    plan = tiny_plan(target_spacing=(2.0, 2.0, 2.0), network=tiny_network(3, [4, 8, 8]))
    folder = Path(tempfile.mkdtemp(prefix=f"medseg_outputs_model{seed}_"))
    return save_checkpoint(folder / "tiny.pt", build_model(plan).state_dict(), CheckpointMeta(plan))


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exc:
        code = int(exc.code or 0)
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _refused(code: int, out: str, err: str, *needles: str) -> None:
    assert code == 1 and "Traceback" not in out + err, out + err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    for n in needles:
        assert n in err, (n, err)


def _inputs(root: Path) -> Path:
    """``root/in`` with a scan and its label (both copies of the sample)."""
    d = root / "in"
    d.mkdir(parents=True)
    shutil.copy(_small(), d / "x.nii.gz")
    shutil.copy(LABEL, d / "x_label.nii.gz")
    return d


# --- an input is never an output ---
def _predict(*extra: str) -> Callable[[Path], list[str]]:
    return lambda d: ["predict", "--model", str(_model()), *extra, "--device", "cpu", "--quiet"]


ONTO_INPUT: dict[str, Callable[[Path], list[str]]] = {
    "predict_file_into_its_folder": lambda d: [
        *_predict()(d), str(d / "x.nii.gz"), str(d), "--overwrite",
    ],
    "predict_folder_into_itself": lambda d: [*_predict()(d), str(d), str(d), "--overwrite"],
    "segment_onto_its_input": lambda d: [
        "segment", str(d / "x.nii.gz"), str(d / "x.nii.gz"), "--method", "otsu", "--overwrite",
    ],
    "segment_onto_its_mask": lambda d: [
        "segment", str(d / "x.nii.gz"), str(d / "x_label.nii.gz"), "--method", "otsu",
        "--mask", str(d / "x_label.nii.gz"), "--overwrite",
    ],
    "convert_onto_its_input": lambda d: [
        "convert", str(d / "x.nii.gz"), str(d / "x.nii.gz"), "--overwrite",
    ],
    "evaluate_into_the_prediction_folder": lambda d: [
        "evaluate", str(d), str(d), "--out", str(d), "--overwrite", "--quiet",
    ],
    "volumetry_into_the_segmentation_folder": lambda d: [
        "volumetry", str(d), "--out", str(d), "--overwrite", "--quiet", "--no-figures",
    ],
    "volumetry_inside_the_image_folder": lambda d: [
        "volumetry", str(d / "x_label.nii.gz"), "--images", str(d), "--out", str(d / "o"),
        "--quiet", "--no-figures",
    ],
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(ONTO_INPUT))
def test_an_input_is_never_an_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    d = _inputs(tmp_path)
    before = _snapshot(tmp_path)
    code, out, err = _run(ONTO_INPUT[case](d), capsys)
    _refused(code, out, err, "input")
    assert _snapshot(tmp_path) == before  # nothing replaced, nothing added
    assert stray_files(tmp_path) == []


# --- --overwrite replaces what medseg wrote, nothing else ---
FOREIGN: dict[str, tuple[Callable[[Path, Path], list[str]], str]] = {
    "predict": (
        lambda d, o: [*_predict()(d), str(d / "x.nii.gz"), str(o), "--overwrite"], "x.nii.gz"
    ),
    "segment": (
        lambda d, o: ["segment", str(d / "x.nii.gz"), str(o / "s.nii.gz"), "--method", "otsu",
                      "--overwrite"],
        "s.nii.gz",
    ),
    "convert": (
        lambda d, o: ["convert", str(d / "x.nii.gz"), str(o / "c.nrrd"), "--overwrite"], "c.nrrd"
    ),
    "evaluate": (
        lambda d, o: ["evaluate", str(d / "x_label.nii.gz"), str(LABEL), "--out", str(o),
                      "--overwrite", "--quiet"],
        "metrics.csv",
    ),
    "volumetry": (
        lambda d, o: ["volumetry", str(d / "x_label.nii.gz"), "--out", str(o), "--overwrite",
                      "--quiet", "--no-figures"],
        "volumes.csv",
    ),
}  # fmt: skip


@pytest.mark.parametrize("command", sorted(FOREIGN))
def test_overwrite_never_replaces_a_file_medseg_did_not_write(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    d = _inputs(tmp_path)
    argv, name = FOREIGN[command]
    o = tmp_path / "out"
    o.mkdir()
    (o / name).write_bytes(b"the user's own file")
    (o / "notes.txt").write_text("unrelated")
    code, out, err = _run(argv(d, o), capsys)
    assert code == 1 and "Traceback" not in out + err, out + err
    assert name in err and "not written by medseg" in err, err
    assert (o / name).read_bytes() == b"the user's own file"
    assert (o / "notes.txt").read_text() == "unrelated"
    assert stray_files(tmp_path) == []


def test_volumetry_overwrite_keeps_foreign_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = _inputs(tmp_path)
    o = tmp_path / "out"
    argv = ["volumetry", str(d / "x_label.nii.gz"), "--out", str(o), "--quiet", "--no-figures"]
    assert _run(argv, capsys)[0] == 0
    (o / "notes.txt").write_text("mine")
    (o / "statistics" / "old_case.json").write_text("{}")
    assert _run([*argv, "--overwrite"], capsys)[0] == 0
    assert (o / "notes.txt").read_text() == "mine"
    assert (o / "statistics" / "old_case.json").read_text() == "{}"
    doc = json.loads((o / "volumetry.json").read_text())
    assert "volumes.csv" in doc["files"] and "notes.txt" not in doc["files"]


def test_evaluate_overwrite_drops_its_stale_lesion_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    o = tmp_path / "out"
    base = ["evaluate", str(LABEL), str(LABEL), "--out", str(o), "--quiet"]
    assert _run([*base, "--lesion-wise"], capsys)[0] == 0
    assert (o / "lesions.csv").exists()
    (o / "mine.csv").write_text("keep")
    assert _run([*base, "--overwrite"], capsys)[0] == 0
    assert not (o / "lesions.csv").exists() and (o / "mine.csv").read_text() == "keep"


# --- names from untrusted sources ---
def test_csv_case_ids_cannot_leave_the_output_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = _inputs(tmp_path)
    listing = tmp_path / "cases.csv"
    victim = tmp_path / "victim"
    listing.write_text(f"case_id,image\n../../x,{d / 'x.nii.gz'}\n{victim},{d / 'x.nii.gz'}\n")
    o = tmp_path / "deep" / "out"
    before = _snapshot(tmp_path)
    code, out, err = _run([*_predict()(d), str(listing), str(o)], capsys)
    assert code == 0, out + err
    written = {
        p for p in tmp_path.rglob("*") if p.is_file() and str(p.relative_to(tmp_path)) not in before
    }
    assert written and all(o in p.parents for p in written), written
    assert not victim.with_suffix(".nii.gz").exists()
    names = sorted(p.name for p in o.iterdir())
    assert all("/" not in n and not n.startswith(".") for n in names), names


def test_formula_names_are_prefixed_in_every_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = tmp_path / "segs"
    d.mkdir()
    shutil.copy(LABEL, d / "=cmd.nii.gz")
    names = tmp_path / "names.json"
    names.write_text(json.dumps({"1": "@SUM(A1)"}))
    o1, o2 = tmp_path / "vol", tmp_path / "ev"
    vol = ["volumetry", str(d), "--out", str(o1), "--quiet", "--no-figures"]
    assert _run([*vol, "--label-names", str(names)], capsys)[0] == 0
    ev = ["evaluate", str(d), str(d), "--out", str(o2), "--quiet", "--label-names", str(names)]
    assert _run(ev, capsys)[0] == 0
    for table in (o1 / "volumes.csv", o2 / "metrics.csv"):
        text = table.read_text()
        assert "'=cmd" in text and "'@SUM(A1)" in text, table
        assert "\n=cmd" not in text and ",@SUM" not in text, table


def test_colliding_output_names_are_refused_before_writing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = tmp_path / "in"
    d.mkdir()
    shutil.copy(_small(), d / "a.nii.gz")
    shutil.copy(_small(), d / "a.seg.nii.gz")
    o = tmp_path / "out"
    argv = [*_predict("--output-format", "nrrd,seg.nrrd")(d), str(d), str(o)]
    code, out, err = _run(argv, capsys)
    _refused(code, out, err, "a.seg.nrrd", "would hold both")
    assert not o.exists() or not any(o.iterdir())
    # volumetry: two cases whose statistics would share one file on a case-insensitive disk
    s = tmp_path / "segs"
    s.mkdir()
    shutil.copy(LABEL, s / "A.nii.gz")
    shutil.copy(LABEL, s / "a.nii.gz")
    code, out, err = _run(
        ["volumetry", str(s), "--out", str(tmp_path / "v"), "--quiet", "--no-figures"], capsys
    )
    _refused(code, out, err, "would hold both")
    assert not (tmp_path / "v" / "volumes.csv").exists()


# --- mixed runs, failing and interrupted cases ---
def test_two_models_into_one_folder_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = tmp_path / "in"
    d.mkdir()
    for k in range(2):
        shutil.copy(_small(), d / f"c{k}.nii.gz")
    o = tmp_path / "out"
    part = ["--num-parts", "2", "--part-id"]
    first = ["predict", "--model", str(_model(0)), str(d), str(o), *part, "0", "--quiet"]
    assert _run([*first, "--device", "cpu"], capsys)[0] == 0
    second = ["predict", "--model", str(_model(1)), str(d), str(o), *part, "1", "--quiet"]
    code, out, err = _run([*second, "--device", "cpu"], capsys)
    _refused(code, out, err, "predict.json", "model.weights_sha256")
    assert sorted(p.name for p in o.glob("c*")) == ["c0.nii.gz"]
    # the same model again resumes: the first part's case counts as done
    code, out, err = _run([*first[:-5], "--quiet", "--device", "cpu"], capsys)
    assert code == 0 and "1 predicted, 1 already done" in out, out + err


def test_a_failing_case_leaves_none_of_its_outputs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import medseg.io.segmentation as segmentation

    real = segmentation.write_segmentation

    def refuse_nrrd(seg: object, path: Path, *, format: str, **kw: object) -> object:
        if format == "nrrd":
            from medseg.errors import OutputError

            raise OutputError(path, "refused (a simulated writer failure)")
        return real(seg, path, format=format, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(segmentation, "write_segmentation", refuse_nrrd)
    d = _inputs(tmp_path)
    o = tmp_path / "out"
    argv = [*_predict("--output-format", "nii.gz,nrrd")(d), str(d / "x.nii.gz"), str(o)]
    code, out, err = _run(argv, capsys)
    assert code == 1 and "simulated writer failure" in err, out + err
    assert not list(o.glob("x*")) and stray_files(tmp_path) == []
    monkeypatch.setattr(segmentation, "write_segmentation", real)
    assert _run(argv, capsys)[0] == 0  # the rerun does the case
    assert sorted(p.name for p in o.glob("x*")) == ["x.nii.gz", "x.nrrd"]


def test_a_kill_between_renames_then_a_rerun_completes_the_case(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    import medseg.io.manifest as manifest_mod

    real = os.replace
    renamed: list[str] = []

    def killed(a: object, b: object) -> None:
        if Path(str(b)).name.startswith("x."):
            renamed.append(Path(str(b)).name)
            if len(renamed) == 2:
                raise KeyboardInterrupt  # stands for SIGKILL between two renames
        real(a, b)  # type: ignore[arg-type]

    d = _inputs(tmp_path)
    o = tmp_path / "out"
    argv = [*_predict("--save-probabilities")(d), str(d / "x.nii.gz"), str(o)]
    monkeypatch.setattr(manifest_mod.os, "replace", killed)
    assert main(argv) != 0  # "interrupted"
    monkeypatch.setattr(manifest_mod.os, "replace", real)
    assert len(list(o.glob("x*"))) == 1  # one of the two files renamed
    code, out, err = _run(argv, capsys)
    assert code == 0 and "1 predicted, 0 already done" in out, out + err
    assert sorted(p.name for p in o.glob("x*")) == ["x.nii.gz", "x.probabilities.npz"]
    assert json.loads((o / "predict.json").read_text())["cases"]["x"]["status"] == "done"


def test_an_unwritten_dicom_seg_is_never_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vol = np.full((24, 24, 12), 100, np.uint16)
    write_series(tmp_path / "study" / "ct", volume=vol, pixel_spacing=(1.0, 1.0), step=1.0)
    o = tmp_path / "out"
    argv = [*_predict("--output-format", "nii.gz,dicom-seg", "--min-volume", "1e9")(tmp_path),
            str(tmp_path / "study"), str(o)]  # fmt: skip
    code, out, err = _run(argv, capsys)
    assert code == 0, out + err
    assert not list(o.glob("*.dcm"))
    from support.predict import run_predict

    report = run_predict(
        _model(), tmp_path / "study", tmp_path / "api", device="cpu",
        output_format=("nii.gz", "dicom-seg"), min_volume_ml=1e9,
    )  # fmt: skip
    outputs = report.done[0].outputs
    assert outputs and all(p.is_file() for p in outputs) and report.done[0].output == outputs[0]
    assert all(p.suffix != ".dcm" for p in outputs)
    case = next(iter(json.loads((o / "predict.json").read_text())["cases"].values()))
    assert case["files"] and all(not f.endswith(".dcm") for f in case["files"])
    assert "no DICOM SEG written" in case["note"]


# --- the demo ---
def test_demo_overwrite_removes_only_its_own_folders(tmp_path: Path) -> None:
    from medseg import demo
    from medseg.errors import OutputExistsError
    from medseg.io.manifest import RunManifest

    out = tmp_path / "demo"
    (out / "model").mkdir(parents=True)
    (out / "model" / "w.pt").write_text("old")
    (out / "mine.txt").write_text("keep")
    (out / "mine").mkdir()
    (out / "predictions" / "sub").mkdir(parents=True)
    (out / "predictions" / "sub" / "p.nii.gz").write_text("old")
    (out / "predictions" / "notes.txt").write_text("the user's, added later")
    m = RunManifest.open(out, "demo", compare=False)
    m.record_files([out / "model" / "w.pt", out / "predictions" / "sub" / "p.nii.gz"])
    demo._remove_earlier_demo(out)
    assert not (out / "model").exists() and (out / "mine.txt").read_text() == "keep"
    assert (out / "mine").is_dir() and not (out / "predictions" / "sub").exists()
    assert (out / "predictions" / "notes.txt").read_text() == "the user's, added later"
    with pytest.raises(OutputExistsError, match="not a demo folder"):
        demo._remove_earlier_demo(out)  # its demo.json went with it


# --- train --------------------------------------------------------------------------------------
def test_train_writes_its_manifest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from support.plans import write_training_run

    cfg = write_training_run(tmp_path, n_cases=3, epochs=1, iterations_per_epoch=2, val_every=1)
    out = tmp_path / "model"
    code, o, e = _run(["train", str(cfg), "--out", str(out), "--fold", "all"], capsys)
    assert code == 0, o + e
    doc = json.loads((out / "train.json").read_text())
    assert doc["format"] == "medseg-run-manifest" and doc["command"] == "train"
    assert "fold_all/checkpoint_last.pt" in doc["cases"]["fold_all"]["files"]
    assert doc["options"]["config"] == str(cfg)


def test_a_case_of_another_input_is_never_counted_as_done(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two input folders with the same file names into one output folder: the second one's
    cases are not "already done" with the first one's predictions; overwrite replaces them."""
    ins = [tmp_path / "in1", tmp_path / "in2"]
    for d in ins:
        d.mkdir()
        shutil.copy(_small(), d / "c0.nii.gz")
    o = tmp_path / "out"
    run = ["predict", "--model", str(_model()), "--device", "cpu", "--quiet"]
    assert _run([*run, str(ins[0]), str(o)], capsys)[0] == 0
    for _ in range(2):  # the refusal is not forgotten by the next run
        code, *outs = _run([*run, str(ins[1]), str(o)], capsys)
        assert code == 1 and "0 already done" in str(outs) and "1 failed" in str(outs), outs
        assert f"made from {ins[0] / 'c0.nii.gz'}" in str(outs), outs
    code, *outs = _run([*run, str(ins[1]), str(o), "--overwrite"], capsys)
    assert code == 0 and "1 predicted" in str(outs), outs
    doc = json.loads((o / "predict.json").read_text())
    assert doc["cases"]["c0"]["inputs"] == [str(ins[1] / "c0.nii.gz")]


def test_a_failure_keeps_the_earlier_outputs_replaceable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One of a case's two outputs deleted by hand: the rerun refuses (the other exists), and
    the rerun with overwrite replaces both (the refusal did not disown them)."""
    d = tmp_path / "in"
    d.mkdir()
    shutil.copy(_small(), d / "c0.nii.gz")
    o = tmp_path / "out"
    run = ["predict", "--model", str(_model()), str(d), str(o), "--device", "cpu", "--quiet"]
    run += ["--output-format", "nii.gz,nrrd"]
    assert _run(run, capsys)[0] == 0
    (o / "c0.nrrd").unlink()
    code, *outs = _run(run, capsys)
    assert code == 1 and "1 failed" in str(outs) and "output exists" in str(outs), outs
    code, *outs = _run([*run, "--overwrite"], capsys)
    assert code == 0 and "1 predicted" in str(outs), outs
    assert (o / "c0.nrrd").is_file() and (o / "c0.nii.gz").is_file()


def test_train_never_writes_onto_its_plan_or_splits(tmp_path: Path) -> None:
    """The model folder is the plan's folder (``medseg plan --out work/plan.yaml`` then
    ``medseg train work/plan.yaml --out work``): refused before anything is written; the plan
    and the splits beside it stay as they were."""
    from support.plans import write_training_run

    from medseg.errors import OutputError
    from medseg.training import train

    cfg = write_training_run(tmp_path, n_cases=3, n_folds=2, epochs=1, iterations_per_epoch=1)
    before = _snapshot(tmp_path / "plan")
    with pytest.raises(OutputError, match="is an input"):
        train(cfg, tmp_path / "plan", fold="all")
    assert _snapshot(tmp_path / "plan") == before
