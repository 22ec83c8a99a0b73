"""Dataset discovery (MSD 4-D, nnU-Net v1/v2, CSV, folder pairs), validation and splits."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from support.paths import shared_path
from support.realdata import brats_dataset_json

from medseg.cli import main
from medseg.datasets import (
    Case,
    check_dataset,
    load_dataset,
    make_splits,
    read_case,
    read_splits,
    write_splits,
)
from medseg.errors import ConfigError, GeometryMismatchError, InputError

SHAPE = (12, 10, 8)


def _save(path: Path, arr: np.ndarray, affine: np.ndarray | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(
        nib.Nifti1Image(arr, np.diag([1.0, 1.0, 2.0, 1.0]) if affine is None else affine), str(path)
    )
    return path


def _label(shape: tuple[int, ...] = SHAPE, value: int = 1) -> np.ndarray:
    lab = np.zeros(shape, np.uint8)
    lab[3:6, 3:6, 2:5] = value
    return lab


def _image(rng: np.random.Generator, shape: tuple[int, ...] = SHAPE) -> np.ndarray:
    return rng.normal(100, 10, shape).astype(np.float32)


def _msd(root: Path, rng: np.random.Generator, n: int = 3, four_d: bool = True) -> Path:
    training = []
    for i in range(n):
        cid = f"case_{i:03d}"
        if four_d:
            _save(root / "imagesTr" / f"{cid}.nii.gz", np.stack([_image(rng), _image(rng)], -1))
        else:
            for c in range(2):
                _save(root / "imagesTr" / f"{cid}_{c:04d}.nii.gz", _image(rng))
        _save(root / "labelsTr" / f"{cid}.nii.gz", _label())
        training.append({"image": f"./imagesTr/{cid}.nii.gz", "label": f"./labelsTr/{cid}.nii.gz"})
    (root / "dataset.json").write_text(
        json.dumps(
            {
                "name": "Synth",
                "modality": {"0": "FLAIR", "1": "T1c"},
                "labels": {"0": "background", "1": "tumour"},
                "training": training,
            }
        )
    )
    return root


def test_msd_4d_images_become_channel_indices(tmp_path: Path, rng: np.random.Generator) -> None:
    ds = load_dataset(_msd(tmp_path, rng))
    assert ds.name == "Synth" and ds.channel_names == ["FLAIR", "T1c"]
    assert ds.label_names == {0: "background", 1: "tumour"}
    assert [c.case_id for c in ds.cases] == ["case_000", "case_001", "case_002"]
    c = ds.cases[0]
    assert c.channel_indices == (0, 1) and len(c.images) == 1 and c.n_channels == 2
    vols, lab = read_case(c)
    assert len(vols) == 2 and vols[0].shape == SHAPE and lab is not None
    data = np.asarray(nib.load(str(c.images[0])).dataobj)
    np.testing.assert_array_equal(vols[1].array, data[..., 1])
    assert lab.labels_present() == [1]


def test_nnunet_v1_split_channel_files(tmp_path: Path, rng: np.random.Generator) -> None:
    ds = load_dataset(_msd(tmp_path, rng, four_d=False) / "dataset.json")
    c = ds.cases[1]
    assert c.channel_indices is None
    assert [p.name for p in c.images] == ["case_001_0000.nii.gz", "case_001_0001.nii.gz"]
    assert check_dataset(ds) == []


def test_nnunet_v2_layout(tmp_path: Path, rng: np.random.Generator) -> None:
    for cid in ("a", "b"):
        _save(tmp_path / "imagesTr" / f"{cid}_0000.nii.gz", _image(rng))
        _save(tmp_path / "labelsTr" / f"{cid}.nii.gz", _label(value=2))
    (tmp_path / "dataset.json").write_text(
        json.dumps(
            {
                "channel_names": {"0": "CT"},
                "labels": {"background": 0, "liver": 1, "tumour": 2},
                "file_ending": ".nii.gz",
            }
        )
    )
    ds = load_dataset(tmp_path)
    assert ds.channel_names == ["CT"] and ds.label_names == {
        0: "background",
        1: "liver",
        2: "tumour",
    }
    assert [c.case_id for c in ds.cases] == ["a", "b"]
    problems = check_dataset(ds)  # valid, but label 1 is declared and never used: a warning
    assert [(p.case_id, p.severity) for p in problems] == [(None, "warning")]
    assert "1 (liver) occur in no case" in problems[0].message


def test_csv_and_folder_pairs(tmp_path: Path, rng: np.random.Generator) -> None:
    for cid in ("x", "y"):
        _save(tmp_path / "images" / f"{cid}.nii.gz", _image(rng))
        _save(tmp_path / "labels" / f"{cid}.nii.gz", _label())
    pairs = load_dataset(tmp_path)
    assert [c.case_id for c in pairs.cases] == ["x", "y"] and pairs.channel_names == ["image"]
    csv = tmp_path / "list.csv"
    csv.write_text("case_id,FLAIR,T1c,label\nx,images/x.nii.gz,images/x.nii.gz,labels/x.nii.gz\n")
    ds = load_dataset(csv)
    assert ds.channel_names == ["FLAIR", "T1c"] and ds.cases[0].images[0].is_absolute()
    problems = check_dataset(ds)
    assert [p.severity for p in problems] == ["warning"]  # no label names declared in a CSV


def test_load_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        load_dataset(tmp_path / "missing")
    (tmp_path / "dataset.json").write_text(json.dumps({"modality": {"0": "CT"}, "training": []}))
    with pytest.raises(ConfigError, match=r"dataset.json: missing key 'labels'"):
        load_dataset(tmp_path)
    bad = tmp_path / "bad.csv"
    bad.write_text("id,image\n1,a.nii.gz\n")
    with pytest.raises(ConfigError, match="case_id"):
        load_dataset(bad)


def test_check_reports_every_problem_per_case(tmp_path: Path, rng: np.random.Generator) -> None:
    root = _msd(tmp_path, rng, n=6, four_d=False)
    img = root / "imagesTr"
    lab = root / "labelsTr"
    # case_000: label on a different shape; case_001: NaN in channel 1;
    # case_002: undeclared label value 7; case_003: label missing;
    # case_004: channel 1 with another spacing; case_005: clean.
    _save(lab / "case_000.nii.gz", _label((12, 10, 9)))
    bad = _image(rng)
    bad[0, 0, 0] = np.nan
    _save(img / "case_001_0001.nii.gz", bad)
    _save(lab / "case_002.nii.gz", _label(value=7))
    (lab / "case_003.nii.gz").unlink()
    _save(img / "case_004_0001.nii.gz", _image(rng), np.diag([1.0, 1.0, 3.0, 1.0]))
    problems = check_dataset(load_dataset(root))
    by_case = {p.case_id: p for p in problems}
    assert set(by_case) == {"case_000", "case_001", "case_002", "case_003", "case_004"}
    assert "not on the image grid" in by_case["case_000"].message
    assert "NaN" in by_case["case_001"].message
    assert by_case["case_001"].path is not None
    assert by_case["case_001"].path.name == "case_001_0001.nii.gz"
    assert "[7]" in by_case["case_002"].message
    assert "missing" in by_case["case_003"].message
    assert "channel 1" in by_case["case_004"].message
    assert all(p.severity == "error" for p in problems)


def test_read_case_refuses_mismatched_grids(tmp_path: Path, rng: np.random.Generator) -> None:
    a = _save(tmp_path / "a.nii.gz", _image(rng))
    b = _save(tmp_path / "b.nii.gz", _image(rng), np.diag([2.0, 1.0, 2.0, 1.0]))
    with pytest.raises(GeometryMismatchError, match=r"b\.nii\.gz"):
        read_case(Case("c", (a, b), None))


def test_cli_check_exit_codes(
    tmp_path: Path, rng: np.random.Generator, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _msd(tmp_path / "ok", rng)
    assert main(["check", str(root)]) == 0
    assert "OK: 3 case(s)" in capsys.readouterr().out
    _save(root / "labelsTr" / "case_001.nii.gz", _label(value=9))
    _save(root / "labelsTr" / "case_002.nii.gz", _label((5, 5, 5)))
    assert main(["check", str(root)]) == 1
    out = capsys.readouterr().out
    assert "case_001:" in out and "case_002:" in out and "2 error(s) in 2 of 3" in out
    assert main(["check", str(root), "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["n_errors"] == 2 and {p["case_id"] for p in doc["problems"]} == {
        "case_001",
        "case_002",
    }


def test_splits_are_reproducible_and_partition(tmp_path: Path) -> None:
    ids = [f"c{i:02d}" for i in range(11)]
    s1 = make_splits(ids, n_folds=5, seed=3)
    assert s1 == make_splits(list(reversed(ids)), n_folds=5, seed=3)
    assert s1 != make_splits(ids, n_folds=5, seed=4)
    vals = [v for f in s1 for v in f["val"]]
    assert sorted(vals) == ids  # every case validated exactly once
    assert {len(f["val"]) for f in s1} <= {2, 3}
    for f in s1:
        assert set(f["train"]) | set(f["val"]) == set(ids) and not set(f["train"]) & set(f["val"])
    path = write_splits(s1, tmp_path / "splits.json")
    assert read_splits(path) == s1
    edited = json.loads(path.read_text())
    edited[0]["val"].append(edited[0]["train"][0])
    path.write_text(json.dumps(edited))
    with pytest.raises(ConfigError, match=r"\[0\]: cases in both train and val"):
        read_splits(path)
    with pytest.raises(ConfigError, match="need at least 5 cases"):
        make_splits(ids[:3], n_folds=5)


@pytest.mark.realdata
def test_la2018_loads_and_checks_clean(capsys: pytest.CaptureFixture[str]) -> None:
    root = shared_path("la2018_msd")
    ds = load_dataset(root)
    assert len(ds.cases) == 12 and ds.label_names == {0: "background", 1: "left_atrium"}
    assert main(["check", str(root)]) == 0
    assert "OK: 12 case(s)" in capsys.readouterr().out


@pytest.mark.realdata
def test_brats_multichannel_checks_clean(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = brats_dataset_json(tmp_path / "brats")
    ds = load_dataset(root)
    assert len(ds.cases) == 6 and ds.channel_names == ["FLAIR", "T1c"]
    vols, lab = read_case(ds.cases[0])
    assert len(vols) == 2 and vols[0].orientation == "LPS"
    assert lab is not None and lab.labels_present() == [1, 2, 3, 4]  # float32 labels accepted
    assert main(["check", str(root)]) == 0
    assert "OK: 6 case(s)" in capsys.readouterr().out


def test_declared_channels_must_match_the_4d_file(tmp_path: Path, rng: np.random.Generator) -> None:
    root = _msd(tmp_path, rng, n=2)
    _save(root / "imagesTr" / "case_001.nii.gz", _image(rng))  # 3-D, 2 channels declared
    problems = check_dataset(load_dataset(root))
    assert [(p.case_id, "found a 3-D image" in p.message) for p in problems] == [("case_001", True)]
    with pytest.raises(InputError, match="expected a 4-D image with 2 channels"):
        read_case(load_dataset(root).case("case_001"))


def test_unlabelled_cases_subset_and_unknown_split_ids(
    tmp_path: Path, rng: np.random.Generator, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _msd(tmp_path, rng)
    data = json.loads((root / "dataset.json").read_text())
    del data["training"][2]["label"]
    (root / "dataset.json").write_text(json.dumps(data))
    ds = load_dataset(root)
    assert ds.cases[2].label is None
    assert [p.message for p in check_dataset(ds)] == ["no label listed"]
    assert main(["check", str(root), "--allow-unlabelled"]) == 0
    capsys.readouterr()
    sub = ds.subset(["case_001", "case_000"])
    assert [c.case_id for c in sub.cases] == ["case_001", "case_000"]
    assert sub.channel_names == ds.channel_names
    source = str(root / "dataset.json")
    for call in (lambda: ds.case("ghost"), lambda: ds.subset(["case_000", "ghost"])):
        with pytest.raises(ConfigError) as info:
            call()
        assert str(info.value).startswith(f"{source}: no case 'ghost'; expected one of its 3")
    path = write_splits(
        [{"train": ["case_000", "ghost"], "val": ["case_001"]}], tmp_path / "s.json"
    )
    with pytest.raises(ConfigError, match=r"\[0\]\.train: unknown case ids \['ghost'\]"):
        read_splits(path, ds)


def test_empty_label_is_a_warning(
    tmp_path: Path, rng: np.random.Generator, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _msd(tmp_path, rng)
    _save(root / "labelsTr" / "case_002.nii.gz", np.zeros(SHAPE, np.uint8))
    problems = check_dataset(load_dataset(root))
    assert [(p.case_id, p.severity) for p in problems] == [("case_002", "warning")]
    assert main(["check", str(root)]) == 0  # warnings do not fail
    assert "warning: " in capsys.readouterr().out
