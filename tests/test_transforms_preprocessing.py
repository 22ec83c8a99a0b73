"""The shared preprocessing pipeline and its exact inverse onto the original grid."""

from __future__ import annotations

import json

import numpy as np
import pytest
from support.paths import SAMPLE
from support.plans import tiny_plan

from medseg.errors import GeometryMismatchError, InputError, InvalidVolumeError
from medseg.io import read_label_map, read_volume
from medseg.plan.schema import Preprocessing
from medseg.transforms.preprocessing import (
    PreprocessInfo,
    preprocess_case,
    restore_to_original,
)
from medseg.volume import LabelMap, Volume, affine_from_geometry


def make_plan(
    target=(1.0, 1.0, 1.0),
    channels=("MR",),
    crop=True,
    scheme="zscore",
    label_interpolation="nearest",
) -> Preprocessing:
    return tiny_plan(
        channels=channels,
        labels={0: "background", 1: "ball", 2: "core"},
        target_spacing=target,
        crop=crop,
        scheme=scheme,
        label_interpolation=label_interpolation,
    ).preprocessing


def _oblique_lps() -> np.ndarray:
    a = np.deg2rad(15)
    rot = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    return rot @ np.diag([-1.0, -1.0, 1.0])


def _ball_case(
    rng: np.random.Generator, spacing=(0.9, 1.2, 2.5), direction=None, shape=(40, 34, 18), pad=4
):
    """Object inside a zero background (so cropping does something): ball label 1, core 2."""
    aff = affine_from_geometry(spacing, (30.0, -12.0, 7.0), direction)
    g = np.indices(shape).astype(float) * np.asarray(spacing)[:, None, None, None]
    centre = (np.asarray(shape) - 1) / 2 * np.asarray(spacing)
    d = np.sqrt(((g - centre[:, None, None, None]) ** 2).sum(0))
    lab = np.where(d < 12, 1, 0).astype(np.uint8)
    lab[d < 5] = 2
    body = np.zeros(shape, bool)
    body[pad:-pad, pad:-pad, 2:-2] = True
    lab[~body] = 0  # labels lie inside the imaged (non-zero) region
    img = np.where(body, rng.normal(200, 30, shape), 0).astype(np.float32)
    img[lab == 2] += 100
    world_centre = aff[:3, :3] @ ((np.asarray(shape) - 1) / 2) + aff[:3, 3]
    return (
        Volume(img, aff, "synthetic.nii.gz"),
        LabelMap(lab, aff, "synthetic_label.nii.gz"),
        world_centre,
    )


@pytest.mark.parametrize("direction", [None, np.diag([-1.0, -1.0, 1.0]), _oblique_lps()])
def test_identity_spacing_round_trip_is_exact(direction, rng: np.random.Generator) -> None:
    img, lab, _ = _ball_case(rng, spacing=(1.0, 1.0, 1.0), direction=direction)
    pre = preprocess_case([img], make_plan((1.0, 1.0, 1.0)), lab)
    assert pre.image.dtype == np.float32 and pre.image.ndim == 4
    assert pre.info.cropped_shape == pre.info.resampled_shape != pre.info.canonical_shape
    back = restore_to_original(pre.label, pre.info, is_label=True)
    np.testing.assert_array_equal(back, lab.array)
    restored = LabelMap(back, np.asarray(pre.info.original_affine))
    assert restored.same_grid(lab, atol=0)


@pytest.mark.parametrize("direction", [None, _oblique_lps()])
@pytest.mark.parametrize("label_interpolation", ["nearest", "linear_onehot"])
def test_resampled_round_trip_returns_original_grid(
    direction, label_interpolation, rng: np.random.Generator
) -> None:
    img, lab, world_centre = _ball_case(rng, direction=direction)
    plan = make_plan((1.5, 1.5, 1.5), label_interpolation=label_interpolation)
    pre = preprocess_case([img], plan, lab)
    info = pre.info
    assert pre.label is not None and pre.label.shape == pre.image.shape[1:]
    # The preprocessed grid is RAS and puts the ball where the original has it (world mm).
    paff = info.preprocessed_affine()
    ijk = np.argwhere(pre.label == 2).mean(0)
    # (the centroid of the centred core is exact by symmetry: a fraction of a voxel, e.g. the
    # half-voxel offset of a wrong sampling convention, fails)
    np.testing.assert_allclose(paff[:3, :3] @ ijk + paff[:3, 3], world_centre, atol=0.05)
    back = restore_to_original(pre.label, info, is_label=True)
    assert back.shape == lab.shape
    for v in (1, 2):
        a, b = back == v, lab.array == v
        assert 2 * (a & b).sum() / (a.sum() + b.sum()) > 0.85
    # Probabilities: (C, ...) back onto the grid, background 1 outside the crop box.
    probs = np.stack([(pre.label == v).astype(np.float32) for v in range(3)])
    pback = restore_to_original(probs, info, is_label=False)
    assert pback.shape == (3, *lab.shape)
    np.testing.assert_allclose(pback.sum(0), 1, atol=1e-5)
    assert pback[0, 0, 0, 0] == 1 and pback[1:, 0, 0, 0].sum() == 0
    assert (np.argmax(pback, 0) == lab.array).mean() > 0.97


def test_zscore_output_inside_nonzero_region(rng: np.random.Generator) -> None:
    img, lab, _ = _ball_case(rng, spacing=(1.0, 1.0, 1.0))
    pre = preprocess_case([img], make_plan((1.0, 1.0, 1.0)), lab)
    mask = pre.image[0] != 0
    assert abs(pre.image[0][mask].mean()) < 1e-4 and abs(pre.image[0][mask].std() - 1) < 1e-4
    # Without cropping / mask: statistics over the whole image.
    pre2 = preprocess_case([img], make_plan((1.0, 1.0, 1.0), crop=False), lab)
    assert pre2.image.shape[1:] == img.shape
    assert abs(pre2.image.mean()) < 1e-4 and abs(pre2.image.std() - 1) < 1e-4


def test_multichannel_and_grid_checks(rng: np.random.Generator) -> None:
    img, lab, _ = _ball_case(rng)
    other = img.with_array(img.array * 2)
    pre = preprocess_case([img, other], make_plan((1.5, 1.5, 1.5), channels=("A", "B")), lab)
    assert pre.image.shape[0] == 2
    np.testing.assert_allclose(pre.image[0], pre.image[1], atol=1e-4)  # z-score is scale-free
    with pytest.raises(InputError, match="the model expects 1"):
        preprocess_case([img, other], make_plan(), lab)
    shifted = Volume(img.array, img.affine + _shift(1.0))
    with pytest.raises(GeometryMismatchError):
        preprocess_case([img], make_plan(), LabelMap(lab.array, shifted.affine))
    with pytest.raises(GeometryMismatchError, match="does not match the preprocessed shape"):
        restore_to_original(np.zeros((3, 3, 3), np.uint8), pre.info, is_label=True)
    shape = pre.info.resampled_shape
    with pytest.raises(InvalidVolumeError, match=r"labels: expected shape \(X, Y, Z\)"):
        restore_to_original(np.zeros((2, *shape), np.uint8), pre.info, is_label=True)
    with pytest.raises(InvalidVolumeError, match=r"probabilities: expected shape \(C, X, Y, Z\)"):
        restore_to_original(np.zeros(shape, np.float32), pre.info, is_label=False)


def _shift(mm: float) -> np.ndarray:
    s = np.zeros((4, 4))
    s[0, 3] = mm
    return s


def test_info_json_round_trip(rng: np.random.Generator) -> None:
    img, lab, _ = _ball_case(rng, direction=_oblique_lps())
    info = preprocess_case([img], make_plan((1.5, 1.5, 1.5)), lab).info
    again = PreprocessInfo.from_dict(json.loads(json.dumps(info.to_dict())))
    assert again == info


@pytest.mark.parametrize("direction", [None, np.diag([-1.0, -1.0, 1.0]), _oblique_lps()])
def test_preprocessed_affine_puts_every_voxel_at_its_world_position(direction) -> None:
    """An image that is a linear ramp of the world position (within the CT window, so the
    normalisation is linear): after linear resampling to 1.5 mm, voxel ``o`` must hold the
    ramp's value at ``preprocessed_affine() @ o``. Unlike a centroid, a ramp also catches
    flips and permutations; 1e-3 normalised units is ~0.02 mm of position."""
    spacing, shape = (0.9, 1.2, 2.5), (40, 34, 18)
    aff = affine_from_geometry(spacing, (30.0, -12.0, 7.0), direction)
    centre = aff[:3, :3] @ ((np.asarray(shape) - 1) / 2) + aff[:3, 3]
    w = np.array([2.0, -1.5, 3.0])  # HU per mm

    def ramp(world: np.ndarray) -> np.ndarray:  # (..., 3) RAS mm -> HU in [-100, 300]
        return 100.0 + (world - centre) @ w

    ijk = np.indices(shape).reshape(3, -1).T
    img = Volume(ramp(ijk @ aff[:3, :3].T + aff[:3, 3]).reshape(shape).astype(np.float32), aff)
    assert img.array.min() > -100 and img.array.max() < 300
    plan = make_plan((1.5, 1.5, 1.5), channels=("CT",), crop=False, scheme="ct")
    pre = preprocess_case([img], plan)
    paff = pre.info.preprocessed_affine()
    out_shape = pre.image.shape[1:]
    o = np.indices(out_shape).reshape(3, -1).T
    expected = ((ramp(o @ paff[:3, :3].T + paff[:3, 3]) - 50) / 80).reshape(out_shape)
    inner = tuple(slice(1, s - 1) for s in out_shape)  # edge voxels extrapolate
    np.testing.assert_allclose(pre.image[0][inner], expected[inner], atol=1e-3)


def test_sample_ct_round_trip_exact_grid() -> None:
    """Shipped spleen CT (0.795 x 0.795 x 5 mm): to 1.5 mm isotropic-ish and back."""
    img = read_volume(SAMPLE / "spleen_ct.nii.gz")
    lab = read_label_map(SAMPLE / "spleen_ct_label.nii.gz")
    plan = make_plan((1.6, 1.6, 2.5), channels=("CT",), crop=False, scheme="ct")
    pre = preprocess_case([img], plan, lab)
    assert pre.image.max() <= (300 - 50) / 80 + 1e-5 and pre.image.min() >= (-100 - 50) / 80 - 1e-5
    back = restore_to_original(pre.label, pre.info, is_label=True)
    assert LabelMap(back, np.asarray(pre.info.original_affine)).same_grid(lab, atol=0)
    a, b = back == 1, lab.array == 1
    assert 2 * (a & b).sum() / (a.sum() + b.sum()) > 0.9


@pytest.mark.realdata
def test_brats_lps_two_channels_round_trip() -> None:
    """BraTS (LPS, FLAIR + T1c, float32 labels): preprocess to 1.5 mm and back."""
    from support.paths import shared_path

    d = shared_path("brats2015_deepmedic", "train", "brats_2013_pat0005_1")
    flair = read_volume(d / "Flair_subtrMeanDivStd.nii.gz")
    t1c = read_volume(d / "T1c_subtrMeanDivStd.nii.gz")
    lab = read_label_map(d / "OTMultiClass.nii.gz")
    assert flair.orientation == "LPS"
    plan = make_plan((1.5, 1.5, 1.5), channels=("FLAIR", "T1c"), crop=False)
    pre = preprocess_case([flair, t1c], plan, lab)
    assert pre.info.reorientation.flip == (True, True, False)
    assert pre.image.shape == (2, 160, 160, 103)
    back = restore_to_original(pre.label, pre.info, is_label=True)
    assert LabelMap(back, np.asarray(pre.info.original_affine)).same_grid(lab, atol=0)
    whole_a, whole_b = back > 0, lab.array > 0
    assert 2 * (whole_a & whole_b).sum() / (whole_a.sum() + whole_b.sum()) > 0.95


def test_nonzero_mask_fills_holes(rng: np.random.Generator) -> None:
    """A zero voxel inside the body is tissue: it is normalised, not treated as background."""
    img, lab, _ = _ball_case(rng, spacing=(1.0, 1.0, 1.0))
    arr = img.array.copy()
    arr[20, 17, 9] = 0.0  # inside the body box
    pre = preprocess_case([img.with_array(arr)], make_plan((1.0, 1.0, 1.0)), lab)
    lo = [a for a, _ in pre.info.crop_box]
    assert pre.image[0, 20 - lo[0], 17 - lo[1], 9 - lo[2]] < -3  # (0 - ~200) / ~30
