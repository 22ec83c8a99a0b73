"""``medseg volumetry`` end to end: folders matched by name, outputs and their columns, the
TotalSegmentator-style JSON, failures that do not stop the batch, overwrite protection,
baseline (folder, pairing CSV, previous output) and comparison, DICOM series inputs (the
shipped CT series, and a label map stored as a DICOM series), no patient identity in outputs.
Expected numbers come from nibabel / SimpleITK arrays and voxel counts × spacing."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from support.dicom import write_series
from support.paths import SAMPLE
from support.volumes import box, sphere, write_nifti

from medseg.cli import main
from medseg.io import read_volume, write_volume
from medseg.volume import LabelMap, affine_from_geometry

SPACING = (0.8, 0.6, 2.0)
AFFINE = affine_from_geometry(SPACING, (-20.0, 10.0, 5.0))
SHAPE = (30, 28, 14)


def _vol(*args: object) -> int:
    """``medseg volumetry ARGS...`` (arguments converted to str); returns the exit code."""
    return main(["volumetry", *(str(a) for a in args)])


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _case(radius: float, with_box: bool, seed: int) -> tuple[np.ndarray, np.ndarray]:
    lab = sphere(SHAPE, (14, 13, 7), radius, 1)
    if with_box:
        lab[box(SHAPE, (2, 2, 2), (6, 8, 5)) > 0] = 2
    img = np.random.default_rng(seed).normal(50, 10, SHAPE).astype(np.float32)
    return lab, img


@pytest.fixture
def folders(tmp_path: Path) -> dict[str, Path]:
    segs, imgs = tmp_path / "segs", tmp_path / "imgs"
    for name, (radius, with_box) in {"c1": (5.0, True), "c2": (4.0, False)}.items():
        lab, img = _case(radius, with_box, seed=len(name))
        write_nifti(segs / f"{name}.nii.gz", lab, AFFINE)
        write_nifti(imgs / f"{name}.nii.gz", img, AFFINE)
    names = tmp_path / "names.json"
    names.write_text(json.dumps({"1": "tumour", "2": "node", "3": "never_there"}))
    return {"segs": segs, "imgs": imgs, "names": names, "root": tmp_path}


def test_folder_outputs_and_columns(folders: dict[str, Path]) -> None:
    out = folders["root"] / "out"
    args = [folders["segs"], "--images", folders["imgs"], "--out", out]
    assert _vol(*args, "--label-names", folders["names"], "--quiet") == 0
    rows = _rows(out / "volumes.csv")
    head = ["case", "label", "name", "absent", "voxels", "volume_mm3", "volume_ml"]
    assert list(rows[0])[:7] == head
    assert "touches_border" in rows[0] and "intensity_p95" in rows[0]
    assert [(r["case"], r["label"]) for r in rows] == [
        (c, v) for c in ("c1", "c2") for v in ("1", "2", "3")
    ]
    for r in rows:
        seg_img = nib.load(folders["segs"] / f"{r['case']}.nii.gz")
        seg = np.asarray(seg_img.dataobj)
        voxel_mm3 = float(np.prod(seg_img.header.get_zooms()))  # float32 in the file
        img = np.asarray(nib.load(folders["imgs"] / f"{r['case']}.nii.gz").dataobj)
        mask = seg == int(r["label"])
        n = int(mask.sum())
        assert int(r["voxels"]) == n
        assert float(r["volume_mm3"]) == pytest.approx(n * voxel_mm3, rel=1e-6)
        assert float(r["volume_ml"]) == pytest.approx(n * voxel_mm3 / 1000, rel=1e-6)
        assert (r["absent"] == "True") == (n == 0)
        if n:
            assert float(r["intensity_mean"]) == pytest.approx(img[mask].mean(), rel=1e-6)
        else:
            assert r["intensity_mean"] == "nan" and r["diameter_mm"] == "nan"
    by = {(r["case"], r["name"]): r for r in rows}
    assert by[("c1", "node")]["touches_border"] == "False"
    assert by[("c2", "node")]["absent"] == "True"  # named and seen in c1: listed in c2

    doc = json.loads((out / "statistics" / "c1.json").read_text())
    assert list(doc) == ["tumour", "node", "never_there"]
    t = doc["tumour"]
    assert t["volume"] == t["volume_mm3"] == float(by[("c1", "tumour")]["volume_mm3"])
    assert t["intensity"] == t["intensity_mean"]
    assert t["volume_ml"] == pytest.approx(t["volume_mm3"] / 1000)
    assert len(t["centroid_ras_mm"]) == 3 and t["components"] == 1 and t["absent"] is False
    assert doc["never_there"]["absent"] is True and doc["never_there"]["volume"] == 0.0
    assert doc["never_there"]["intensity"] is None and doc["never_there"]["diameter_mm"] is None
    assert (out / "report.html").is_file() and (out / "settings.json").is_file()
    assert _rows(out / "failures.csv") == []
    settings = json.loads((out / "settings.json").read_text())
    assert settings["connectivity"] == 26

    # Nothing is overwritten without --overwrite; with it the run succeeds.
    before = (out / "volumes.csv").read_bytes()
    assert _vol(*args, "--quiet") == 1
    assert (out / "volumes.csv").read_bytes() == before
    assert _vol(*args, "--quiet", "--overwrite", "--no-figures") == 0
    assert not (out / "longitudinal.csv").exists()


def test_failures_reported_batch_goes_on(folders: dict[str, Path], capsys) -> None:
    segs, imgs = folders["segs"], folders["imgs"]
    lab, img = _case(4.0, False, 9)
    write_nifti(segs / "c3.nii.gz", lab, AFFINE)
    write_nifti(imgs / "c3.nii.gz", img[:, :, :-1], AFFINE)  # wrong grid
    write_nifti(segs / "c4.nii.gz", lab, AFFINE)  # no image
    (segs / "c5.nii.gz").write_bytes(b"not a nifti file")
    write_nifti(imgs / "c5.nii.gz", img, AFFINE)
    out = folders["root"] / "out"
    rc = _vol(segs, "--images", imgs, "--out", out, "--quiet")
    assert rc == 1
    fails = {r["case"]: r for r in _rows(out / "failures.csv")}
    assert set(fails) == {"c3", "c4", "c5"}
    assert fails["c3"]["role"] == "grid" and "does not match" in fails["c3"]["error"]
    assert fails["c4"]["role"] == "image" and "no image" in fails["c4"]["error"]
    assert fails["c5"]["role"] == "segmentation" and "c5.nii.gz" in fails["c5"]["error"]
    assert {r["case"] for r in _rows(out / "volumes.csv")} == {"c1", "c2"}
    err = capsys.readouterr().err
    assert "3 failure(s)" in err and "Traceback" not in err


def test_single_files_and_image_units(tmp_path: Path) -> None:
    lab, img = _case(5.0, True, 1)
    write_nifti(tmp_path / "seg.nii.gz", lab, AFFINE)
    write_nifti(tmp_path / "ct.nii.gz", (img * 10).astype(np.int16), AFFINE)
    out = tmp_path / "out"
    rc = _vol(
        tmp_path / "seg.nii.gz",
        "--images",
        tmp_path / "ct.nii.gz",
        "--out",
        out,
        "--image-units",
        "HU",
        "--quiet",
    )
    assert rc == 0
    rows = _rows(out / "volumes.csv")
    assert {r["case"] for r in rows} == {"ct"}  # named after the image, as evaluate names it
    assert {r["intensity_units"] for r in rows} == {"HU"}
    assert "CT window" in (out / "report.html").read_text()


def test_baseline_folder_csv_previous_output_and_compare(folders: dict[str, Path]) -> None:
    root, segs = folders["root"], folders["segs"]
    base = root / "base"
    lab_b, _ = _case(4.0, False, 3)  # c1 at baseline: smaller sphere, no node
    write_nifti(base / "c1.nii.gz", lab_b, AFFINE)
    write_nifti(base / "c2.nii.gz", _case(4.0, False, 4)[0], AFFINE)
    voxel_ml = float(np.prod(nib.load(segs / "c1.nii.gz").header.get_zooms())) / 1000

    out1 = root / "out1"
    rc = _vol(segs, "--out", out1, "--baseline", base, "--compare", base, "--quiet", "--no-figures")
    assert rc == 0
    rows = {(r["case"], r["label"]): r for r in _rows(out1 / "longitudinal.csv")}
    seg1 = np.asarray(nib.load(segs / "c1.nii.gz").dataobj)
    n_now, n_before = int((seg1 == 1).sum()), int((lab_b == 1).sum())
    r = rows[("c1", "1")]
    assert int(r["followup_voxels"]) == n_now and int(r["baseline_voxels"]) == n_before
    assert float(r["change_ml"]) == pytest.approx((n_now - n_before) * voxel_ml, rel=1e-6)
    assert float(r["change_percent"]) == pytest.approx(100 * (n_now - n_before) / n_before)
    assert r["status"] == "present_in_both" and r["label_set_differs"] == "True"
    node = rows[("c1", "2")]
    assert node["status"] == "new" and node["change_percent"] == "nan"
    assert rows[("c2", "1")]["label_set_differs"] == "False"
    assert float(rows[("c2", "1")]["change_ml"]) == 0.0
    comp = {(r["case"], r["label"]): r for r in _rows(out1 / "comparison.csv")}
    assert float(comp[("c1", "1")]["difference_ml"]) == pytest.approx(float(r["change_ml"]))
    assert comp[("c1", "2")]["status"] == "only_this"
    agree = {a["name"]: a for a in _rows(out1 / "agreement.csv")}
    assert agree["all"]["n_pairs"] == "3" and agree["all"]["n_one_sided"] == "1"

    # The same baseline as a CSV pairing cases (relative paths), and as a previous output.
    pairing = root / "pairs.csv"
    pairing.write_text("case,baseline\nc1,base/c1.nii.gz\nc2,base/c2.nii.gz\n")
    prev = root / "prev"
    assert _vol(base, "--out", prev, "--quiet", "--no-figures") == 0
    for other in (pairing, prev):
        out = root / f"out_{other.stem}"
        assert _vol(segs, "--out", out, "--baseline", other, "--quiet", "--no-figures") == 0
        again = {(x["case"], x["label"]): x for x in _rows(out / "longitudinal.csv")}
        for key in rows:
            assert again[key]["change_ml"] == rows[key]["change_ml"], (other, key)
            assert again[key]["label_set_differs"] == rows[key]["label_set_differs"]

    # A case without a baseline is a failure; its volumes are still written.
    (base / "c2.nii.gz").unlink()
    out3 = root / "out3"
    assert _vol(segs, "--out", out3, "--baseline", base, "--quiet", "--no-figures") == 1
    fails = _rows(out3 / "failures.csv")
    assert [(f["case"], f["role"]) for f in fails] == [("c2", "baseline")]
    assert {x["case"] for x in _rows(out3 / "volumes.csv")} == {"c1", "c2"}


def test_shipped_dicom_series_as_image(tmp_path: Path) -> None:
    import SimpleITK as sitk

    series = SAMPLE / "ct_dicom"
    ct = read_volume(series)
    lab = np.zeros(ct.shape, dtype=np.uint8)
    lab[ct.array > 300] = 1  # bone
    lab[(ct.array > 0) & (ct.array < 100)] = 2  # soft tissue
    write_volume(LabelMap(lab, ct.affine), tmp_path / "seg.nii.gz")
    out = tmp_path / "out"
    rc = _vol(tmp_path / "seg.nii.gz", "--images", series, "--out", out, "--quiet")
    assert rc == 0
    rows = {r["label"]: r for r in _rows(out / "volumes.csv")}
    assert rows["1"]["case"] == "ct_dicom"

    # Independent reader: SimpleITK (GDCM) gives the same HU values and spacing.
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(series)))
    ref = reader.Execute()
    hu = sitk.GetArrayFromImage(ref).astype(np.float64)
    voxel_mm3 = float(np.prod(ref.GetSpacing()))
    for v, mask in (("1", hu > 300), ("2", (hu > 0) & (hu < 100))):
        r = rows[v]
        assert r["intensity_units"] == "HU"
        assert int(r["voxels"]) == int(mask.sum())
        assert float(r["volume_mm3"]) == pytest.approx(mask.sum() * voxel_mm3, rel=1e-5)
        assert float(r["intensity_mean"]) == pytest.approx(hu[mask].mean(), rel=1e-9)
        assert float(r["intensity_p95"]) == pytest.approx(np.percentile(hu[mask], 95))


def test_dicom_series_segmentation_and_no_patient_identity(tmp_path: Path) -> None:
    lab = sphere((12, 10, 8), (6, 5, 4), 3.0, 1).astype(np.uint16)
    lab[0:3, 0:3, 0:2] = 2
    geometry = {"pixel_spacing": (0.5, 0.7), "step": 2.0}
    write_series(tmp_path / "segs" / "p1", volume=lab, intercept=0.0, **geometry)
    write_series(tmp_path / "imgs" / "p1", volume=(lab * 100).astype(np.uint16), **geometry)
    out = tmp_path / "out"
    rc = _vol(tmp_path / "segs", "--images", tmp_path / "imgs", "--out", out, "--quiet")
    assert rc == 0
    rows = {r["label"]: r for r in _rows(out / "volumes.csv")}
    for v in (1, 2):
        n = int((lab == v).sum())
        assert int(rows[str(v)]["voxels"]) == n
        assert float(rows[str(v)]["volume_mm3"]) == pytest.approx(n * 0.5 * 0.7 * 2.0)
        assert float(rows[str(v)]["intensity_mean"]) == pytest.approx(100 * v - 1024)
    assert rows["2"]["touches_border"] == "True"
    # write_series stores PatientName "Doe^Secret", PatientID "PID-SECRET-42", birth date.
    for path in out.rglob("*"):
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            for secret in ("Doe", "Secret", "SECRET", "19010101"):
                assert secret not in text, (path, secret)


def test_bad_label_names_file_is_one_error(tmp_path: Path, capsys) -> None:
    lab, _ = _case(4.0, False, 0)
    write_nifti(tmp_path / "s.nii.gz", lab, AFFINE)
    bad = tmp_path / "names.json"
    bad.write_text("{not json")
    rc = _vol(tmp_path / "s.nii.gz", "--out", tmp_path / "o", "--label-names", bad)
    assert rc == 1
    err = capsys.readouterr().err
    assert "names.json" in err and "Traceback" not in err


def test_label_names_with_background_and_negative_values(tmp_path: Path, capsys) -> None:
    """A label-name file that names the background (``"0"``, as MSD and TotalSegmentator
    tables do) measures the named structures only; a negative key is one error naming the
    file (both were tracebacks)."""
    lab, _ = _case(4.0, False, 0)
    write_nifti(tmp_path / "s.nii.gz", lab, AFFINE)
    names = tmp_path / "names.json"
    names.write_text(json.dumps({"0": "background", "1": "tumour", "2": "node"}))
    assert _vol(tmp_path / "s.nii.gz", "--out", tmp_path / "o", "--label-names", names) == 0
    rows = _rows(tmp_path / "o" / "volumes.csv")
    assert [(r["label"], r["name"], r["absent"]) for r in rows] == [
        ("1", "tumour", "False"),
        ("2", "node", "True"),
    ]
    assert int(rows[0]["voxels"]) == int(np.count_nonzero(lab == 1))
    capsys.readouterr()
    bad = tmp_path / "negative.json"
    bad.write_text(json.dumps({"-1": "outside", "1": "tumour"}))
    assert _vol(tmp_path / "s.nii.gz", "--out", tmp_path / "o2", "--label-names", bad) == 1
    err = capsys.readouterr().err
    assert f"{bad}: expected label values >= 0 as keys" in err and "Traceback" not in err
