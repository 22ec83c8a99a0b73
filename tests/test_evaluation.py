"""Tests of medseg.evaluation and the ``medseg evaluate`` command."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from support.dicom import write_series
from support.paths import SAMPLE, shared_path

from medseg.cli import main
from medseg.errors import InputError, OutputExistsError
from medseg.evaluation import (
    OUTPUT_FILES,
    evaluate_folders,
    is_single_case,
    match_cases,
)
from medseg.io.outputs import case_stem
from medseg.metrics import EmptyPolicy

REQUIRED_COLUMNS = (
    "case", "label", "name", "dice", "hd_mm", "hd95_mm", "assd_mm", "nsd",
    "ref_voxels", "pred_voxels", "ref_empty", "pred_empty",
)  # fmt: skip
SPACING = (1.0, 1.5, 2.0)


def write_nii(path: Path, arr: np.ndarray, spacing=SPACING) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(arr, np.diag([*spacing, 1.0])), str(path))
    return path


def labels_ab() -> tuple[np.ndarray, np.ndarray]:
    ref = np.zeros((20, 16, 12), dtype=np.uint8)
    ref[3:10, 3:10, 3:8] = 1
    ref[12:17, 4:12, 2:9] = 2
    pred = np.roll(ref, 1, axis=0)
    return pred, ref


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture
def batch(tmp_path: Path) -> tuple[Path, Path]:
    pred_dir, ref_dir = tmp_path / "pred", tmp_path / "ref"
    pred, ref = labels_ab()
    write_nii(ref_dir / "a.nii.gz", ref)
    write_nii(pred_dir / "a.nii.gz", ref)  # perfect
    write_nii(ref_dir / "b.nii.gz", ref)
    write_nii(pred_dir / "b.nii.gz", pred)  # shifted
    missed = pred.copy()
    missed[missed == 2] = 0
    missed[0:2, 0:2, 0:2] = 3  # hallucinated label 3, label 2 missed
    write_nii(ref_dir / "c.nii.gz", ref)
    write_nii(pred_dir / "c.nii.gz", missed)
    write_nii(ref_dir / "only_ref.nii.gz", ref)
    write_nii(pred_dir / "only_pred.nii.gz", ref)
    write_nii(ref_dir / "grid.nii.gz", ref)
    write_nii(pred_dir / "grid.nii.gz", ref[:, :, :10])
    (pred_dir / "notes.txt").write_text("ignored")
    return pred_dir, ref_dir


def test_cli_batch_outputs_failures_and_exit_code(batch, tmp_path, capsys) -> None:
    pred_dir, ref_dir = batch
    out = tmp_path / "out"
    rc = main(["evaluate", str(pred_dir), str(ref_dir), "--out", str(out), "--tolerance-mm", "2"])
    cap = capsys.readouterr()
    assert rc == 1  # three failed cases
    for name in OUTPUT_FILES:
        assert (out / name).is_file(), name
    rows = read_csv(out / "metrics.csv")
    assert set(REQUIRED_COLUMNS) <= set(rows[0])
    # one row per case and label, labels 1..3 in every evaluated case
    assert [(r["case"], r["label"]) for r in rows] == [
        (c, str(v)) for c in ("a", "b", "c") for v in (1, 2, 3)
    ]
    by = {(r["case"], r["label"]): r for r in rows}
    assert float(by[("a", "1")]["dice"]) == 1.0 and float(by[("a", "1")]["hd95_mm"]) == 0.0
    assert float(by[("b", "1")]["hd_mm"]) == pytest.approx(1.0)  # 1 voxel along axis 0 = 1 mm
    missed = by[("c", "2")]
    assert missed["pred_empty"] == "True" and float(missed["dice"]) == 0.0
    diag = math.sqrt(sum((n * s) ** 2 for n, s in zip((20, 16, 12), SPACING, strict=True)))
    assert float(missed["hd95_mm"]) == pytest.approx(diag)
    halluc = by[("c", "3")]
    assert halluc["ref_empty"] == "True" and halluc["pred_empty"] == "False"
    assert by[("a", "3")]["undefined"] == "both_empty" and by[("a", "3")]["dice"] == "nan"
    failures = read_csv(out / "failures.csv")
    assert {f["case"] for f in failures} == {"grid", "only_pred", "only_ref"}
    grid = next(f for f in failures if f["case"] == "grid")
    assert "grid.nii.gz" in grid["error"] and "does not match" in grid["error"]
    assert "3 case(s) failed" in cap.err and "no prediction for case 'only_ref'" in cap.err
    assert "label" in cap.out and "hd95_mm" in cap.out and "3/6 case(s) evaluated" in cap.out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_cases"] == 6 and summary["n_failed"] == 3
    lab2 = next(e for e in summary["labels"] if e["label"] == "2")
    hd95 = lab2["metrics"]["hd95_mm"]
    assert hd95["n_cases"] == 3 and hd95["n_undefined"] == 1 and hd95["n_substituted"] == 1
    lab3 = next(e for e in summary["labels"] if e["label"] == "3")
    assert lab3["metrics"]["dice"]["n_nan"] == 2 and lab3["metrics"]["dice"]["mean"] == 0.0
    srows = read_csv(out / "summary.csv")
    assert {"mean", "std", "median", "p5", "p95", "n_cases", "n_undefined"} <= set(srows[0])
    settings = json.loads((out / "settings.json").read_text())
    assert settings["tolerance_mm"] == 2.0
    assert settings["empty_policy"] == {"both_empty_dice": "nan", "one_empty_distance": "diagonal"}
    assert settings["surface"] == "border"


def test_outputs_are_not_overwritten_without_flag(batch, tmp_path, capsys) -> None:
    pred_dir, ref_dir = batch
    out = tmp_path / "out"
    args = ["evaluate", str(pred_dir / "a.nii.gz"), str(ref_dir / "a.nii.gz"), "--out", str(out)]
    assert main(args) == 0
    before = (out / "metrics.csv").read_text()
    capsys.readouterr()
    assert main(args) == 1
    assert "output exists" in capsys.readouterr().err
    assert (out / "metrics.csv").read_text() == before
    assert main([*args, "--overwrite", "--labels", "1"]) == 0
    assert len(read_csv(out / "metrics.csv")) == 1
    assert not list(out.glob(".*part*"))  # no temporary files left behind


def test_single_files_regions_labels_and_names(batch, tmp_path, capsys) -> None:
    pred_dir, ref_dir = batch
    names = tmp_path / "names.json"
    names.write_text(json.dumps({"total": {"1": "liver", "2": "spleen"}, "other": {}}))
    regions = tmp_path / "regions.yaml"
    regions.write_text("regions:\n  both: [1, 2]\n")
    out = tmp_path / "out"
    rc = main([
        "evaluate", str(pred_dir / "b.nii.gz"), str(ref_dir / "b.nii.gz"), "--out", str(out),
        "--labels", "1-2", "--regions", "one_and_two=1,2", str(regions),
        "--label-names", str(names), "--label-names-key", "total", "--quiet",
    ])  # fmt: skip
    cap = capsys.readouterr()
    assert rc == 0 and cap.out == ""
    rows = read_csv(out / "metrics.csv")
    assert [(r["case"], r["label"], r["name"], r["kind"]) for r in rows] == [
        ("b", "1", "liver", "label"),
        ("b", "2", "spleen", "label"),
        ("b", "1+2", "one_and_two", "region"),
        ("b", "1+2", "both", "region"),
    ]
    settings = json.loads((out / "settings.json").read_text())
    assert settings["labels"] == [1, 2]
    assert settings["regions"] == {"one_and_two": [1, 2], "both": [1, 2]}
    assert settings["label_names"] == {"1": "liver", "2": "spleen"}


def test_bad_command_line_values(batch, tmp_path, capsys) -> None:
    pred_dir, ref_dir = batch
    base = ["evaluate", str(pred_dir / "a.nii.gz"), str(ref_dir / "a.nii.gz")]
    out = ["--out", str(tmp_path / "o")]
    assert main([*base, *out, "--labels", "1,x"]) == 1
    assert "labels: expected integers" in capsys.readouterr().err
    assert main([*base, *out, "--empty-distance", "far"]) == 1
    assert "number of mm" in capsys.readouterr().err
    nested = tmp_path / "names.json"
    nested.write_text(json.dumps({"total": {"1": "a"}, "mr": {"1": "b"}}))
    assert main([*base, *out, "--label-names", str(nested)]) == 1
    assert "--label-names-key" in capsys.readouterr().err
    assert main([*base, *out, "--regions", "=1,2"]) == 1
    assert "NAME=L,L" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "nope"), str(ref_dir), *out]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_float_labels_accepted_and_non_integral_reported(tmp_path) -> None:
    pred, ref = labels_ab()
    write_nii(tmp_path / "r" / "x.nii.gz", ref.astype(np.float32))  # integral floats: fine
    write_nii(tmp_path / "p" / "x.nii.gz", pred.astype(np.float32))
    write_nii(tmp_path / "r" / "y.nii.gz", ref)
    write_nii(tmp_path / "p" / "y.nii.gz", pred.astype(np.float32) * 0.5)  # 0.5: refused
    res = evaluate_folders(tmp_path / "p", tmp_path / "r", tmp_path / "out")
    assert not res.ok
    assert {r.case for r in res.records} == {"x"}
    (f,) = res.failures
    assert f.case == "y" and "y.nii.gz" in f.error and "non-integral" in f.error


def test_api_without_output_and_policy(batch) -> None:
    pred_dir, ref_dir = batch
    res = evaluate_folders(
        pred_dir / "c.nii.gz",
        ref_dir / "c.nii.gz",
        None,
        policy=EmptyPolicy(one_empty_distance="nan"),
    )
    assert res.ok and res.outputs == {}
    r2 = next(r for r in res.records if r.label == "2")
    assert math.isnan(r2.hd95_mm) and r2.dice == 0.0
    hd95 = next(s for s in res.summary if s.label == "2" and s.metric == "hd95_mm")
    assert hd95.n_nan == 1 and hd95.n_used == 0


def test_api_rejects_unknown_modes_before_work(batch) -> None:
    pred_dir, ref_dir = batch
    with pytest.raises(ValueError, match="surface definition"):
        evaluate_folders(pred_dir, ref_dir, None, surface="mesh")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="distance method"):
        evaluate_folders(pred_dir, ref_dir, None, method="fast")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="tolerance"):
        evaluate_folders(pred_dir, ref_dir, None, tolerance_mm=float("nan"))


def test_outputs_checked_before_work(batch, tmp_path) -> None:
    pred_dir, ref_dir = batch
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.json").write_text("{}")
    with pytest.raises(OutputExistsError):
        evaluate_folders(pred_dir, ref_dir, out)
    assert not (out / "metrics.csv").exists()


def test_progress_bar_only_when_asked(batch, capsys) -> None:
    pred_dir, ref_dir = batch
    evaluate_folders(pred_dir / "a.nii.gz", ref_dir / "a.nii.gz", None, progress=True)
    assert "case" in capsys.readouterr().err
    evaluate_folders(pred_dir / "a.nii.gz", ref_dir / "a.nii.gz", None, progress=False)
    assert capsys.readouterr().err == ""


def test_case_matching_rules(tmp_path) -> None:
    assert case_stem(Path("x/case_01.nii.gz")) == "case_01"
    assert case_stem(Path("x/case_01.nrrd")) == "case_01"
    pred_dir, ref_dir = tmp_path / "p", tmp_path / "r"
    pred, ref = labels_ab()
    write_nii(ref_dir / "k.nii.gz", ref)
    write_nii(pred_dir / "k.nii", pred)  # different suffix, same case
    write_nii(ref_dir / "dup.nii.gz", ref)
    write_nii(ref_dir / "dup.nii", ref)
    write_nii(pred_dir / "dup.nii.gz", ref)
    pairs, failures = match_cases(pred_dir, ref_dir)
    assert [(p.case, p.pred.name, p.ref.name) for p in pairs] == [("k", "k.nii", "k.nii.gz")]
    (f,) = failures
    assert f.case == "dup" and "two for case 'dup'" in f.error
    with pytest.raises(InputError, match="single case"):
        match_cases(pred_dir / "k.nii", ref_dir)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="found none"):
        match_cases(empty, empty)


def test_dicom_series_folders_are_cases(tmp_path) -> None:
    assert is_single_case(SAMPLE / "ct_dicom")
    for side in ("p", "r"):
        shutil.copytree(SAMPLE / "ct_dicom", tmp_path / side / "patient_1")
    assert not is_single_case(tmp_path / "p")
    pairs, failures = match_cases(tmp_path / "p", tmp_path / "r")
    assert failures == [] and [p.case for p in pairs] == ["patient_1"]
    pairs, _ = match_cases(tmp_path / "p" / "patient_1", tmp_path / "r" / "patient_1")
    assert [p.case for p in pairs] == ["patient_1"]


@pytest.mark.realdata
def test_cli_on_totalsegmentator_pair_with_label_names(tmp_path, capsys) -> None:
    d = shared_path("totalsegmentator_example")
    out = tmp_path / "out"
    rc = main([
        "evaluate", str(d / "example_seg_fast.nii.gz"), str(d / "example_seg.nii.gz"),
        "--out", str(out), "--label-names", str(d / "label_map_total_and_total_mr.json"),
        "--label-names-key", "total", "--regions", "lungs=10-14", "--tolerance-mm", "3",
    ])  # fmt: skip
    assert rc == 0
    rows = read_csv(out / "metrics.csv")
    by = {r["label"]: r for r in rows}
    assert by["5"]["name"] == "liver" and float(by["5"]["dice"]) > 0.9
    assert by["10+11+12+13+14"]["name"] == "lungs"
    assert "liver" in capsys.readouterr().out


@pytest.mark.realdata
def test_brats_folder_of_float_label_maps(tmp_path) -> None:
    d = shared_path("brats2015_deepmedic", "test")
    for case in ("brats_2013_pat0001_1", "brats_2013_pat0002_1"):
        src = d / case / "OTMultiClass.nii.gz"
        (tmp_path / "r").mkdir(exist_ok=True)
        (tmp_path / "p").mkdir(exist_ok=True)
        shutil.copy(src, tmp_path / "r" / f"{case}.nii.gz")
        shutil.copy(src, tmp_path / "p" / f"{case}.nii.gz")
    res = evaluate_folders(
        tmp_path / "p", tmp_path / "r", tmp_path / "out", regions={"core": [1, 3, 4]}
    )
    assert res.ok and len(res.records) == 2 * 5
    assert all(r.dice == 1.0 and r.hd95_mm == 0.0 for r in res.records)
    # Voxel counts from the data's PROVENANCE (pat0001, labels 1-4).
    counts = {r.label: r.ref_voxels for r in res.records if r.case == "brats_2013_pat0001_1"}
    assert [counts[k] for k in ("1", "2", "3", "4")] == [26371, 53050, 818, 31485]


def test_evaluation_does_not_import_torch(batch) -> None:
    import subprocess
    import sys

    pred_dir, ref_dir = batch
    p, r = str(pred_dir / "b.nii.gz"), str(ref_dir / "b.nii.gz")
    code = (
        "import sys\n"
        "from medseg.evaluation import evaluate_folders\n"
        f"r = evaluate_folders({p!r}, {r!r}, None)\n"
        "assert r.ok and len(r.records) == 2\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cli_surfels_mode_recorded(batch, tmp_path) -> None:
    pred_dir, ref_dir = batch
    out = tmp_path / "out"
    args = [str(pred_dir / "b.nii.gz"), str(ref_dir / "b.nii.gz"), "--out", str(out)]
    assert main(["evaluate", *args, "--surface", "surfels", "--quiet"]) == 0
    rows = read_csv(out / "metrics.csv")
    assert {r["surface"] for r in rows} == {"surfels"}
    assert json.loads((out / "settings.json").read_text())["surface"] == "surfels"
    # One-voxel shift along axis 0 (1 mm): both definitions give HD = 1 mm for a box.
    assert float(rows[0]["hd_mm"]) == pytest.approx(1.0)


@pytest.mark.realdata
def test_nrrd_reference_matched_with_nifti_prediction(tmp_path) -> None:
    from medseg.io import read_label_map, write_volume

    src = shared_path("pyradiomics_testcases", "brain1_label.nrrd")
    (tmp_path / "r").mkdir()
    shutil.copy(src, tmp_path / "r" / "brain1.nrrd")
    ref = read_label_map(src)
    shifted = ref.with_array(np.roll(ref.array, 2, axis=1))
    write_volume(shifted, tmp_path / "p" / "brain1.nii.gz")
    res = evaluate_folders(tmp_path / "p", tmp_path / "r", None)
    assert res.ok, res.failures
    (r,) = res.records
    assert r.case == "brain1" and r.ref_voxels == int((ref.array == 1).sum())
    # Shift of 2 voxels along array axis 1 (0.78 mm spacing), not the 6.5 mm slice axis.
    assert r.hd_mm == pytest.approx(2 * ref.spacing[1], rel=1e-6)


def test_all_cases_failing_still_writes_outputs_and_exits_1(tmp_path, capsys) -> None:
    pred, ref = labels_ab()
    write_nii(tmp_path / "r" / "x.nii.gz", ref)
    write_nii(tmp_path / "p" / "x.nii.gz", pred[:, :, :5])
    out = tmp_path / "out"
    assert main(["evaluate", str(tmp_path / "p"), str(tmp_path / "r"), "--out", str(out)]) == 1
    cap = capsys.readouterr()
    assert "no labels evaluated" in cap.out and "0/1 case(s) evaluated" in cap.out
    assert "1 case(s) failed" in cap.err and "x.nii.gz" in cap.err
    assert read_csv(out / "metrics.csv") == []
    assert json.loads((out / "summary.json").read_text())["n_failed"] == 1


def write_dicom_series(folder: Path, vol: np.ndarray, spacing=(0.8, 0.8, 2.0)) -> None:
    """Uncompressed axial DICOM series of a (columns i, rows j, slices k) uint16 label array."""
    write_series(
        folder,
        volume=vol,
        pixel_spacing=(spacing[1], spacing[0]),
        step=spacing[2],
        origin=(0.0, 0.0, 0.0),
        intercept=0.0,
        modality="OT",
        shuffle=False,
    )


def test_dicom_series_case_folders_end_to_end(tmp_path, capsys) -> None:
    ref = np.zeros((20, 16, 6), np.uint16)
    ref[4:12, 3:10, 1:5] = 1
    ref[13:18, 5:12, 2:4] = 2
    pred = np.roll(ref, 1, axis=0)  # one column = 0.8 mm
    write_dicom_series(tmp_path / "r" / "case1", ref)
    write_dicom_series(tmp_path / "p" / "case1", pred)
    out = tmp_path / "out"
    assert main(["evaluate", str(tmp_path / "p"), str(tmp_path / "r"), "--out", str(out)]) == 0
    rows = {r["label"]: r for r in read_csv(out / "metrics.csv")}
    assert rows["1"]["case"] == "case1"
    assert float(rows["1"]["dice"]) == pytest.approx(2 * 7 / 16)  # 8 columns, 7 overlap
    assert float(rows["2"]["dice"]) == pytest.approx(2 * 4 / 10)
    assert float(rows["1"]["hd_mm"]) == pytest.approx(0.8)
    assert "1/1 case(s) evaluated" in capsys.readouterr().out


# --- pixel accuracy and the lesion-wise view ---------------------------------------------------


def test_pixel_accuracy_is_tp_plus_tn_over_all_voxels(batch) -> None:
    pred_dir, ref_dir = batch
    res = evaluate_folders(pred_dir / "b.nii.gz", ref_dir / "b.nii.gz", None)
    pred, ref = labels_ab()
    n = ref.size
    for r in res.records:
        v = r.labels[0]
        agree = np.count_nonzero((pred == v) == (ref == v))  # TP + TN, counted directly
        assert r.accuracy == pytest.approx(agree / n)
    # a prediction of nothing still scores 1 - ref/N: the background dominates accuracy
    empty = evaluate_folders(pred_dir / "c.nii.gz", ref_dir / "c.nii.gz", None)
    missed = next(r for r in empty.records if r.label == "2")
    assert missed.dice == 0.0 and missed.accuracy == pytest.approx(1 - (ref == 2).sum() / n)
    acc = {s.label: s for s in empty.summary if s.metric == "accuracy"}
    assert acc["2"].n_undefined == 0 and acc["2"].treatment == "all measured"


def lesion_batch(tmp_path: Path) -> tuple[Path, Path]:
    """Two cases of label 1 with several lesions on an anisotropic grid (mm³ counts)."""
    sp = (0.8, 0.5, 0.5)
    ref = np.zeros((30, 40, 40), dtype=np.uint8)
    ref[2:8, 2:12, 2:12] = 1  # 600 voxels = 120 mm³
    ref[15:20, 20:30, 20:30] = 1  # 500 voxels = 100 mm³, missed in case a
    ref[25:27, 2:5, 30:33] = 1  # 18 voxels = 3.6 mm³: left out of the scores
    pred = np.zeros_like(ref)
    pred[2:8, 2:12, 2:12] = 1
    pred[20:24, 35:39, 2:6] = 1  # false positive
    ref_dir, pred_dir = tmp_path / "ref", tmp_path / "pred"
    write_nii(ref_dir / "a.nii.gz", ref, sp)
    write_nii(pred_dir / "a.nii.gz", pred, sp)
    write_nii(ref_dir / "b.nii.gz", ref, sp)
    write_nii(pred_dir / "b.nii.gz", ref, sp)  # perfect
    write_nii(ref_dir / "c.nii.gz", np.zeros_like(ref), sp)  # no lesion at all...
    write_nii(pred_dir / "c.nii.gz", np.zeros_like(ref), sp)  # ...and none predicted
    return pred_dir, ref_dir


def test_cli_lesion_wise_outputs(tmp_path, capsys) -> None:
    pred_dir, ref_dir = lesion_batch(tmp_path)
    out = tmp_path / "out"
    rc = main(["evaluate", str(pred_dir), str(ref_dir), "--out", str(out), "--lesion-wise"])
    cap = capsys.readouterr()
    assert rc == 0 and "lesion_dice" in cap.out
    rows = {r["case"]: r for r in read_csv(out / "metrics.csv")}
    assert set(rows) == {"a", "b", "c"}
    a, b, c = rows["a"], rows["b"], rows["c"]
    assert (a["num_tp"], a["num_fn"], a["num_fp"], a["num_small"]) == ("1", "1", "1", "1")
    assert float(a["lesion_dice"]) == pytest.approx(1.0 / 3)  # (1 + 0) / (2 kept + 1 FP)
    assert float(a["lesion_hd95_mm"]) == pytest.approx((0 + 374 + 374) / 3)
    assert float(a["detection_f1"]) == pytest.approx(2 / 4)
    assert (a["inst_ref"], a["inst_pred"], a["inst_tp"]) == ("3", "2", "1")
    assert float(a["rq"]) == pytest.approx(1 / (1 + 0.5 + 1.0))
    assert float(b["lesion_dice"]) == 1.0 and float(b["pq"]) == 1.0
    # no lesion and no false positive: BraTS's 1 and 0; RQ/SQ/PQ undefined
    assert c["undefined"] == "both_empty"
    assert float(c["lesion_dice"]) == 1.0 and float(c["lesion_hd95_mm"]) == 0.0
    assert c["rq"] == "nan"
    lesions = read_csv(out / "lesions.csv")
    assert list(lesions[0]) == [
        "case", "label", "name", "kind", "lesion", "voxels", "volume_mm3", "counted",
        "detected", "n_pred_components", "dice", "hd95_mm",
    ]  # fmt: skip
    in_a = [r for r in lesions if r["case"] == "a"]
    assert len(in_a) == 3 and sum(r["counted"] == "True" for r in in_a) == 2
    vols = sorted(float(r["volume_mm3"]) for r in in_a)
    assert vols == pytest.approx([3.6, 100.0, 120.0])
    missed = next(r for r in in_a if float(r["volume_mm3"]) == pytest.approx(100.0))
    assert missed["detected"] == "False" and float(missed["hd95_mm"]) == 374.0
    summary = {(r["label"], r["metric"]): r for r in read_csv(out / "summary.csv")}
    lw = summary[("1", "lesion_dice")]
    assert float(lw["mean"]) == pytest.approx((1 / 3 + 1 + 1) / 3)
    assert lw["n_substituted"] == "1" and "no lesion and no false positive" in lw["treatment"]
    assert summary[("1", "pq")]["n_nan"] == "1"
    settings = json.loads((out / "settings.json").read_text())
    assert settings["lesion_wise"]["dilation"] == 3
    assert settings["lesion_wise"]["min_volume_mm3"] == 50.0
    # lesions.csv is protected from overwriting like the other outputs
    assert main(["evaluate", str(pred_dir), str(ref_dir), "--out", str(out), "--lesion-wise"]) == 1
    assert "output exists" in capsys.readouterr().err


def test_cli_lesion_options(tmp_path, capsys) -> None:
    pred_dir, ref_dir = lesion_batch(tmp_path)
    out = tmp_path / "o"
    args = ["evaluate", str(pred_dir / "a.nii.gz"), str(ref_dir / "a.nii.gz"), "--out", str(out)]
    assert main([*args, "--lesion-min-volume", "2"]) == 1  # needs --lesion-wise
    assert "apply with --lesion-wise" in capsys.readouterr().err
    with pytest.raises(SystemExit) as ex:  # out of range: refused when parsed
        main([*args, "--lesion-wise", "--lesion-dilation", "-1"])
    assert ex.value.code == 2
    assert "dilation" in capsys.readouterr().err
    rc = main([
        *args, "--lesion-wise", "--lesion-min-volume", "2", "--lesion-dilation", "1",
        "--connectivity", "6", "--iou-threshold", "0.3", "--quiet",
    ])  # fmt: skip
    assert rc == 0
    (row,) = read_csv(out / "metrics.csv")
    assert row["num_small"] == "0" and row["num_fn"] == "2"  # the 3.6 mm³ lesion now counts
    s = json.loads((out / "settings.json").read_text())["lesion_wise"]
    assert (s["dilation"], s["connectivity"], s["iou_threshold"]) == (1, 6, 0.3)


def test_outputs_without_lesion_wise_are_unchanged(batch, tmp_path) -> None:
    pred_dir, ref_dir = batch
    out = tmp_path / "plain"
    assert main(["evaluate", str(pred_dir / "b.nii.gz"), str(ref_dir / "b.nii.gz"),
                 "--out", str(out), "--quiet"]) == 0  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == sorted((*OUTPUT_FILES, "evaluate.json"))
    (row, *_) = read_csv(out / "metrics.csv")
    assert "lesion_dice" not in row and "accuracy" in row
    assert "lesion_wise" not in json.loads((out / "settings.json").read_text())
