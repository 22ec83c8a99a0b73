"""Plan model validation, YAML round trip, planning rules and the ``medseg plan`` CLI."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml
from support.paths import shared_path
from support.realdata import brats_dataset_json

from medseg.cli import main
from medseg.datasets import load_dataset
from medseg.errors import ConfigError, OutputExistsError
from medseg.plan import ChannelStats, Fingerprint, load_plan, plan_to_yaml, save_plan
from medseg.planning import (
    choose_target_spacing,
    estimate_vram_gb,
    network_topology,
    plan_dataset,
    plan_from_fingerprint,
)


def _fingerprint(shape=(256, 256, 256), spacing=(1.0, 1.0, 1.0), n=20) -> Fingerprint:
    return Fingerprint(
        n_cases=n,
        spacings=[spacing] * n,
        shapes=[shape] * n,
        shapes_after_crop=[shape] * n,
        median_spacing=spacing,
        median_shape=shape,
        intensity=[
            ChannelStats(
                channel="CT",
                mean=40,
                std=60,
                median=45,
                percentile_00_5=-90,
                percentile_99_5=250,
                min=-1000,
                max=2000,
            )
        ],
        label_volume_ml_median={1: 12.5},
        label_case_count={1: n},
        modalities=["CT"],
    )


def _plan(gpu: float = 8.0, **kw):
    return plan_from_fingerprint(
        _fingerprint(**kw),
        dataset="/data",
        dataset_name="synthetic",
        channel_names=["CT"],
        label_names={0: "background", 1: "liver"},
        gpu_memory_gb=gpu,
    )


def test_target_spacing_median_and_anisotropy_rule() -> None:
    iso = np.array([[1.0, 1.0, 1.2], [0.8, 0.8, 1.0], [1.2, 1.2, 1.4]])
    t, why = choose_target_spacing(iso)
    assert t == (1.0, 1.0, 1.2) and "median" in why
    thick = np.array([[0.7, 0.7, z] for z in (2.5, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 6.0)])
    t, why = choose_target_spacing(thick)
    assert t[:2] == (0.7, 0.7)
    assert t[2] == pytest.approx(np.percentile(thick[:, 2], 10)) and "anisotropic" in why


def test_topology_respects_feature_map_and_anisotropy() -> None:
    net = network_topology((128, 128, 32), (0.7, 0.7, 3.0))
    assert net.strides[0] == [1, 1, 1]
    assert net.strides[1] == [2, 2, 1] and net.strides[2] == [2, 2, 1]  # z waits (thick slices)
    assert net.kernel_sizes[0] == [3, 3, 1]
    ts = net.total_stride()
    assert all(p // t >= 4 for p, t in zip((128, 128, 32), ts, strict=True))
    assert net.filters[0] == 32 and max(net.filters) <= 320
    assert len(network_topology((8, 8, 8), (1, 1, 1)).filters) == 2


def test_patch_and_batch_respond_to_memory_budget() -> None:
    small, large = _plan(4.0), _plan(40.0)
    for p in (small, large):
        assert estimate_vram_gb(p.patch_size, p.batch_size, p.network, 1) <= p.gpu_memory_gb
        assert all(s % t == 0 for s, t in zip(p.patch_size, p.network.total_stride(), strict=True))
    vox = [int(np.prod(p.patch_size)) * p.batch_size for p in (small, large)]
    assert vox[1] > 2 * vox[0]
    assert np.prod(large.patch_size) >= np.prod(small.patch_size)
    with pytest.raises(ConfigError, match="gpu_memory_gb"):
        _plan(1.0)


def test_ct_channel_gets_ct_normalisation_from_statistics() -> None:
    p = _plan()
    n = p.preprocessing.normalization[0]
    assert (n.scheme, n.clip_low, n.clip_high, n.mean, n.std) == ("ct", -90, 250, 40, 60)
    assert any("target_spacing" in note for note in p.notes)


def test_yaml_round_trip_and_readable_keys(tmp_path: Path) -> None:
    p = _plan()
    path = save_plan(p, tmp_path / "out")
    assert path == tmp_path / "out" / "plan.yaml"
    text = path.read_text()
    for key in (
        "target_spacing:",
        "patch_size:",
        "batch_size:",
        "normalization:",
        "network:",
        "augmentation:",
        "foreground_ratio:",
        "label_names: {0: background, 1: liver}",
    ):
        assert key in text
    assert load_plan(path) == p
    assert load_plan(tmp_path / "out") == p
    with pytest.raises(OutputExistsError):
        save_plan(p, path)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (
            lambda d: d["augmentation"].update(flip_probability=0.5),
            r"augmentation\.flip_probability: unknown key",
        ),
        (lambda d: d["augmentation"].update(flip_prob=1.5), r"augmentation\.flip_prob"),
        (lambda d: d.update(patch_size=[100, 100, 100]), "divisible"),
        (
            lambda d: d["preprocessing"]["normalization"][0].update(scheme="minmax"),
            r"preprocessing\.normalization\.0\.scheme",
        ),
        (
            lambda d: d["preprocessing"].pop("target_spacing"),
            r"preprocessing\.target_spacing: Field required",
        ),
        (
            lambda d: d["network"].update(deep_supr_num=9),
            r"network: Value error, deep_supr_num: 9 heads need at least 11 stages",
        ),
        (
            lambda d: d["network"].update(architecture="segresnet"),
            r"only the dynunet architecture has deep supervision",
        ),
    ],
)
def test_load_plan_names_the_bad_key(tmp_path: Path, edit, match: str) -> None:
    data = yaml.safe_load(plan_to_yaml(_plan()))
    edit(data)
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=match) as err:
        load_plan(path)
    assert str(path) in str(err.value)


def test_preprocessing_key_tracks_preprocessing_fields_only() -> None:
    p = _plan()
    key = p.preprocessing.key()
    assert p.model_copy(update={"batch_size": 7}).preprocessing.key() == key
    coarse = p.preprocessing.model_copy(update={"target_spacing": (2.0, 2.0, 2.0)})
    assert coarse.key() != key


def test_a_plan_in_an_unreleased_layout_is_refused(tmp_path: Path) -> None:
    """A plan with the preprocessing fields at the top level (a layout never released) is
    refused with the key paths, not converted."""
    v1 = yaml.safe_load(plan_to_yaml(_plan()))
    v1.update(v1.pop("preprocessing"))
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump(v1))
    with pytest.raises(
        ConfigError, match=r"old\.yaml: invalid plan: .*target_spacing: unknown key"
    ):
        load_plan(path)


def test_default_network_has_valid_deep_supervision() -> None:
    for shape in ((8, 8, 8), (16, 16, 16), (128, 128, 64)):
        net = network_topology(shape, (1.0, 1.0, 1.0))
        n = len(net.filters)
        assert net.deep_supervision == (n >= 3)
        if net.deep_supervision:
            assert 1 <= net.deep_supr_num <= n - 2


def _synthetic_ct_dataset(root: Path, rng: np.random.Generator, n: int = 3) -> list[np.ndarray]:
    """CT-named channel, 0.8 x 0.8 x 3 mm; foreground HU values returned per case."""
    training, fg_values = [], []
    for i in range(n):
        shape = (32 + 2 * i, 30, 12)
        img = rng.normal(-800, 50, shape).astype(np.float32)
        lab = np.zeros(shape, np.uint8)
        lab[8:20, 8:20, 3:9] = 1
        img[lab == 1] = rng.normal(60, 20, int(lab.sum()))
        fg_values.append(img[lab == 1])
        aff = np.diag([0.8, 0.8, 3.0, 1.0])
        (root / "imagesTr").mkdir(parents=True, exist_ok=True)
        (root / "labelsTr").mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(img, aff), str(root / "imagesTr" / f"c{i}.nii.gz"))
        nib.save(nib.Nifti1Image(lab, aff), str(root / "labelsTr" / f"c{i}.nii.gz"))
        training.append({"image": f"imagesTr/c{i}.nii.gz", "label": f"labelsTr/c{i}.nii.gz"})
    (root / "dataset.json").write_text(
        json.dumps(
            {
                "name": "SynthCT",
                "modality": {"0": "CT"},
                "labels": {"0": "background", "1": "organ"},
                "training": training,
            }
        )
    )
    return fg_values


def test_plan_dataset_statistics_match_numpy(tmp_path: Path, rng: np.random.Generator) -> None:
    fg = np.concatenate(_synthetic_ct_dataset(tmp_path, rng))
    plan = plan_dataset(load_dataset(tmp_path), gpu_memory_gb=8, voxels_per_case=10**6)
    st = plan.fingerprint.intensity[0]  # type: ignore[union-attr]
    lo, hi = np.percentile(fg.astype(np.float64), [0.5, 99.5])
    assert st.percentile_00_5 == pytest.approx(lo) and st.percentile_99_5 == pytest.approx(hi)
    assert st.mean == pytest.approx(fg.mean(), rel=1e-6) and st.std == pytest.approx(
        fg.std(), rel=1e-5
    )
    n = plan.preprocessing.normalization[0]
    assert n.scheme == "ct" and n.clip_low == pytest.approx(lo)
    assert plan.preprocessing.target_spacing == pytest.approx((0.8, 0.8, 3.0))
    ml = 12 * 12 * 6 * 0.8 * 0.8 * 3.0 / 1000
    assert plan.fingerprint.label_volume_ml_median[1] == pytest.approx(ml)  # type: ignore[union-attr]


def test_cli_plan_writes_plan_and_splits(
    tmp_path: Path, rng: np.random.Generator, capsys: pytest.CaptureFixture[str]
) -> None:
    _synthetic_ct_dataset(tmp_path / "ds", rng)
    out = tmp_path / "plan"
    assert (
        main(
            [
                "plan",
                str(tmp_path / "ds"),
                "--out",
                str(out),
                "--folds",
                "3",
                "--gpu-memory-gb",
                "6",
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "target_spacing" in text and "why:" in text
    plan = load_plan(out / "plan.yaml")
    assert plan.gpu_memory_gb == 6 and plan.dataset_name == "SynthCT"
    assert len(json.loads((out / "splits.json").read_text())) == 3
    assert main(["plan", str(tmp_path / "ds"), "--out", str(out)]) == 1  # refuses to overwrite
    assert "exists" in capsys.readouterr().err
    # A broken dataset is refused before planning.
    nib.save(
        nib.Nifti1Image(np.zeros((3, 3, 3), np.uint8), np.eye(4)),
        str(tmp_path / "ds" / "labelsTr" / "c0.nii.gz"),
    )
    assert main(["plan", str(tmp_path / "ds"), "--out", str(tmp_path / "p2")]) == 1
    assert "not on the image grid" in capsys.readouterr().err


@pytest.mark.realdata
def test_cli_plan_la2018(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = shared_path("la2018_msd")
    assert main(["plan", str(root), "--out", str(tmp_path), "--voxels-per-case", "5000"]) == 0
    plan = load_plan(tmp_path / "plan.yaml")
    assert plan.preprocessing.target_spacing == pytest.approx((0.625, 0.625, 0.625))
    assert plan.label_names == {0: "background", 1: "left_atrium"}
    assert plan.fingerprint is not None and plan.fingerprint.n_cases == 12
    assert "left_atrium" in capsys.readouterr().out


@pytest.mark.realdata
def test_cli_plan_brats_multichannel(tmp_path: Path) -> None:
    root = brats_dataset_json(tmp_path / "brats")
    # (`medseg check` on the same dataset is covered in test_datasets.py)
    argv = ["plan", str(root), "--out", str(tmp_path / "p"), "--gpu-memory-gb", "11"]
    assert main([*argv, "--skip-check"]) == 0
    plan = load_plan(tmp_path / "p")
    assert plan.channel_names == ["FLAIR", "T1c"]
    assert [n.scheme for n in plan.preprocessing.normalization] == ["zscore", "zscore"]
    assert plan.preprocessing.target_spacing == pytest.approx((1.0, 1.0, 1.0))
    fp = plan.fingerprint
    assert fp is not None and fp.label_case_count == {1: 6, 2: 6, 3: 6, 4: 6}
    # PROVENANCE: pat0001 has 53050 oedema voxels of 1 mm^3, etc.: median over the six cases.
    oedema = [53050, 53736, 148264, 45203, 35416, 109935]
    assert fp.label_volume_ml_median[2] == pytest.approx(np.median(oedema) / 1000)


def test_default_augmentation_config_matches_the_model(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    from support.paths import REPO

    from medseg.plan import AugmentationPlan, load_augmentation

    cfg = REPO / "configs" / "augmentation_default.yaml"
    assert load_augmentation(cfg) == AugmentationPlan()  # the documented file cannot drift
    custom = tmp_path / "aug.yaml"
    custom.write_text("elastic_prob: 0.3\nflip_axes: [0, 1]\n")
    _synthetic_ct_dataset(tmp_path / "ds", rng)
    assert (
        main(
            [
                "plan",
                str(tmp_path / "ds"),
                "--out",
                str(tmp_path / "p"),
                "--augmentation",
                str(custom),
            ]
        )
        == 0
    )
    aug = load_plan(tmp_path / "p").augmentation
    assert aug.elastic_prob == 0.3 and aug.flip_axes == [0, 1] and aug.gamma_prob == 0.3
    custom.write_text("elastic_probability: 0.3\n")
    with pytest.raises(
        ConfigError,
        match=r"aug\.yaml: invalid augmentation config: "
        r"elastic_probability",
    ):
        load_augmentation(custom)
