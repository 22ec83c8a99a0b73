"""A plan made for one dataset is refused on another before training: other channels (CT vs
MRI), other labels (spleen vs left atrium), or, for absolute intensity schemes (CT), other
intensities. The message names the plan file and the dataset."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml
from support.volumes import write_ball_dataset

from medseg.cli import main
from medseg.datasets import load_dataset
from medseg.errors import ConfigError
from medseg.plan import save_plan
from medseg.planning import check_plan_fits_dataset, plan_dataset


def _edit(root: Path, **doc_changes: object) -> Path:
    doc = json.loads((root / "dataset.json").read_text())
    doc.update(doc_changes)
    (root / "dataset.json").write_text(json.dumps(doc))
    return root


def _shift_images(root: Path, by: float) -> None:
    for f in (root / "imagesTr").glob("*.nii.gz"):
        img = nib.load(f)
        nib.save(nib.Nifti1Image(np.asarray(img.dataobj) + by, img.affine), f)


@pytest.fixture(scope="module")
def ct_plan(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A CT-like dataset (foreground ~ 40 HU, CT normalisation) and its plan file."""
    root = tmp_path_factory.mktemp("ct")
    ds_dir = _edit(write_ball_dataset(root / "ds", n=2, shape=(16, 16, 12)), modality={"0": "CT"})
    _shift_images(ds_dir, 0.0)
    for f in (ds_dir / "imagesTr").glob("*.nii.gz"):  # ball = 40 HU +- 10, air around
        img = nib.load(f)
        a = np.asarray(img.dataobj)
        nib.save(nib.Nifti1Image((a * 40 - 1000 * (a < 0.5)).astype(np.float32), img.affine), f)
    plan = plan_dataset(load_dataset(ds_dir))
    assert plan.preprocessing.normalization[0].scheme == "ct"
    return save_plan(plan, root / "plan.yaml"), ds_dir


def _other(tmp_path: Path, **changes: object) -> Path:
    return _edit(write_ball_dataset(tmp_path / "other", n=2, shape=(16, 16, 12)), **changes)


def test_same_kind_of_data_fits(ct_plan: tuple[Path, Path]) -> None:
    from medseg.plan import load_plan

    plan_file, ds_dir = ct_plan
    check_plan_fits_dataset(load_plan(plan_file), load_dataset(ds_dir), plan_file)


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"modality": {"0": "MRI"}}, "the plan's channels are ['CT'], the dataset's ['MRI']"),
        (
            {"modality": {"0": "CT"}, "labels": {"0": "background", "1": "left_atrium"}},
            "the plan's labels are {0: background, 1: ball}, the dataset's {0: background, "
            "1: left_atrium}",
        ),
        (
            {"modality": {"0": "CT", "1": "PET"}},
            "the plan's channels are ['CT'], the dataset's ['CT', 'PET']",
        ),
    ],
)
def test_other_channels_or_labels_are_refused(
    ct_plan: tuple[Path, Path], tmp_path: Path, changes: dict[str, object], fragment: str
) -> None:
    from medseg.plan import load_plan

    plan_file, _ = ct_plan
    root = _other(tmp_path, **changes)
    if len(changes["modality"]) == 2:  # type: ignore[arg-type]  # a second image per case
        doc = json.loads((root / "dataset.json").read_text())
        for case in doc["training"]:
            case["image"] = [case["image"], case["image"]]
        (root / "dataset.json").write_text(json.dumps(doc))
    other = load_dataset(root)
    with pytest.raises(ConfigError) as err:
        check_plan_fits_dataset(load_plan(plan_file), other, plan_file)
    msg = str(err.value)
    assert msg.startswith(f"{plan_file}: the plan does not fit the dataset {other.source}")
    assert fragment in msg, msg


def test_other_intensities_are_refused_for_ct(ct_plan: tuple[Path, Path], tmp_path: Path) -> None:
    """Same channel name and labels, but MR-like intensities (foreground ~ 1000)."""
    from medseg.plan import load_plan

    plan_file, _ = ct_plan
    root = _other(tmp_path, modality={"0": "CT"})
    _shift_images(root, 1000.0)
    with pytest.raises(ConfigError, match=r"channel 'CT' is normalised on an absolute scale"):
        check_plan_fits_dataset(load_plan(plan_file), load_dataset(root), plan_file)


def test_train_refuses_before_writing(
    ct_plan: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan_file, _ = ct_plan
    other = _other(tmp_path, modality={"0": "MRI"}, labels={"0": "background", "1": "atrium"})
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"plan": str(plan_file), "data": {"dataset": str(other)}}))
    out = tmp_path / "model"
    assert main(["train", str(cfg), "--out", str(out), "--fold", "all", "--epochs", "1"]) == 1
    err = capsys.readouterr().err
    assert str(plan_file) in err and str(other) in err and "Traceback" not in err, err
    assert not (out / "fold_all").exists()
