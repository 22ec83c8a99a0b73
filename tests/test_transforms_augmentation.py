"""Augmentation: parameter sampling follows the plan, each transform does what it says."""

from __future__ import annotations

import numpy as np
import pytest

from medseg.plan import AugmentationPlan
from medseg.transforms.augmentation import (
    AugmentationParams,
    apply_augmentation,
    region_size,
    sample_params,
)

OFF = dict(
    rotation_prob=0,
    scale_prob=0,
    elastic_prob=0,
    flip_prob=0,
    noise_prob=0,
    blur_prob=0,
    brightness_prob=0,
    contrast_prob=0,
    gamma_prob=0,
    low_resolution_prob=0,
)
PATCH = (24, 20, 16)


def _blob(rng: np.random.Generator, shape=PATCH) -> tuple[np.ndarray, np.ndarray]:
    lab = np.zeros(shape, np.uint8)
    lab[6:14, 5:12, 4:10] = 1
    lab[8:11, 7:9, 5:8] = 2
    img = (lab.astype(np.float32) + rng.normal(0, 0.01, shape).astype(np.float32))[None]
    return img, lab


def test_all_off_is_identity_and_sampling_is_seeded(rng: np.random.Generator) -> None:
    p = sample_params(AugmentationPlan(**OFF), rng)
    assert p == AugmentationParams()
    img, lab = _blob(rng)
    out, olab = apply_augmentation(img, lab, p, PATCH)
    np.testing.assert_array_equal(out, img)
    np.testing.assert_array_equal(olab, lab)
    aug = AugmentationPlan()
    a = sample_params(aug, np.random.default_rng(5))
    assert a == sample_params(aug, np.random.default_rng(5))


def test_probabilities_follow_the_plan() -> None:
    aug = AugmentationPlan(**{**OFF, "rotation_prob": 0.2, "gamma_prob": 0.7, "flip_prob": 0.5})
    rng = np.random.default_rng(0)
    draws = [sample_params(aug, rng) for _ in range(3000)]
    rot = np.mean([d.rotation_rad is not None for d in draws])
    gam = np.mean([d.gamma is not None for d in draws])
    flips = np.mean([len(d.flip_axes) for d in draws]) / 3
    assert abs(rot - 0.2) < 0.03 and abs(gam - 0.7) < 0.03 and abs(flips - 0.5) < 0.03
    assert all(0.7 <= d.gamma <= 1.5 for d in draws if d.gamma is not None)
    inplane = AugmentationPlan(**{**OFF, "rotation_prob": 1.0, "rotation_3d": False})
    r = sample_params(inplane, rng).rotation_rad
    assert r is not None and r[0] == 0 and r[1] == 0 and r[2] != 0


def test_flip_moves_image_and_label_together(rng: np.random.Generator) -> None:
    img, lab = _blob(rng)
    out, olab = apply_augmentation(img, lab, AugmentationParams(flip_axes=(0, 2)), PATCH)
    np.testing.assert_array_equal(olab, lab[::-1, :, ::-1])
    np.testing.assert_array_equal(out[0], img[0, ::-1, :, ::-1])


@pytest.mark.parametrize("elastic", [False, True])
def test_spatial_transform_keeps_image_and_label_aligned(
    elastic: bool, rng: np.random.Generator
) -> None:
    p = AugmentationParams(
        rotation_rad=(0.3, -0.2, 0.4), scale=1.2, elastic=(6.0, 80.0, 3) if elastic else None
    )
    region = region_size(PATCH, p)
    assert all(r > s for r, s in zip(region, PATCH, strict=True))
    img, lab = _blob(rng, region)
    lab[...] = 0
    g = np.indices(region)
    c = np.asarray(region)[:, None, None, None] / 2
    lab[((g - c) ** 2).sum(0) < 36] = 1
    img = lab[None].astype(np.float32)
    out, olab = apply_augmentation(img, lab, p, PATCH)
    assert out.shape == (1, *PATCH) and olab is not None and olab.shape == PATCH
    assert olab.dtype == lab.dtype and set(np.unique(olab)) <= {0, 1}
    agree = ((out[0] > 0.5) == (olab == 1)).mean()
    assert agree > 0.98
    assert olab.sum() > 0  # the centred ball survives


def test_intensity_transforms_do_what_they_promise(rng: np.random.Generator) -> None:
    img = rng.normal(0, 1, (2, *PATCH)).astype(np.float32)
    out, _ = apply_augmentation(img, None, AugmentationParams(brightness=1.2), PATCH)
    np.testing.assert_allclose(out, img * 1.2, rtol=1e-6)
    out, _ = apply_augmentation(img, None, AugmentationParams(contrast=0.5), PATCH)
    for c in range(2):  # scaled around the mean: mean kept, std halved, range not exceeded
        assert out[c].mean() == pytest.approx(img[c].mean(), abs=1e-5)
        assert out[c].std() == pytest.approx(img[c].std() * 0.5, rel=1e-4)
    out, _ = apply_augmentation(img, None, AugmentationParams(gamma=1.5), PATCH)
    for c in range(2):  # gamma keeps the range
        assert out[c].min() == pytest.approx(img[c].min(), abs=1e-5)
        assert out[c].max() == pytest.approx(img[c].max(), abs=1e-5)
    zero = np.zeros((1, *PATCH), np.float32)
    out, _ = apply_augmentation(zero, None, AugmentationParams(noise=(0.3, 1)), PATCH)
    assert out.std() == pytest.approx(0.3, rel=0.05) and abs(out.mean()) < 0.02
    out, _ = apply_augmentation(img, None, AugmentationParams(blur_sigma=1.0), PATCH)
    assert out.std() < 0.6 * img.std()
    out, _ = apply_augmentation(img, None, AugmentationParams(low_resolution_zoom=0.5), PATCH)
    assert out.shape == img.shape and out.std() < img.std()


def test_low_resolution_matches_the_resampling_convention(rng: np.random.Generator) -> None:
    from medseg.transforms.spatial import resample_to_shape

    img = rng.normal(size=(1, *PATCH)).astype(np.float32)
    out, _ = apply_augmentation(img, None, AugmentationParams(low_resolution_zoom=0.6), PATCH)
    low = [max(1, round(s * 0.6)) for s in PATCH]
    ref = resample_to_shape(resample_to_shape(img[0], low, order=0), PATCH, order=1)
    np.testing.assert_allclose(out[0], ref, atol=1e-4)


def _off_centre_blob(shape: tuple[int, ...]) -> np.ndarray:
    """(1, X, Y, Z): a smooth Gaussian blob away from the centre plus a ramp along axis 0, so
    that any rotation, scaling or flip about the centre changes it (a centred ball would not
    reveal a no-op)."""
    g = np.indices(shape).astype(float)
    c = (np.asarray(shape) - 1) / 2
    d2 = (g[0] - c[0] - 4) ** 2 + (g[1] - c[1] + 3) ** 2 + (g[2] - c[2] - 2) ** 2
    return (np.exp(-d2 / (2 * 3.0**2)) + 0.01 * g[0])[None].astype(np.float32)


@pytest.mark.parametrize(
    "params",
    [
        AugmentationParams(rotation_rad=(0.3, -0.2, 0.4), scale=1.2),
        AugmentationParams(rotation_rad=(0.0, 0.0, -0.5)),
        AugmentationParams(scale=0.8),
    ],
    ids=["rot3d_scale", "inplane_rot", "scale_only"],
)
def test_rotation_and_scaling_match_monai_affine_and_scipy(params: AugmentationParams) -> None:
    """Rotation + scaling on a known volume: equal to MONAI's ``Affine`` with the same
    parameters, and to an independent resampler (``scipy.ndimage.affine_transform``) with the
    matrix MONAI documents (rotation @ scale, output voxel -> input voxel about the centres);
    and clearly not the unaugmented centre crop."""
    import torch
    from monai.transforms import Affine
    from monai.transforms.utils import create_rotate, create_scale
    from scipy import ndimage

    region = region_size(PATCH, params)
    img = _off_centre_blob(region)
    lab = (img[0] > 0.5).astype(np.uint8)
    out, olab = apply_augmentation(img, lab, params, PATCH)
    rot = params.rotation_rad or (0.0, 0.0, 0.0)
    sc = (params.scale or 1.0,) * 3
    monai = Affine(
        rotate_params=rot,
        scale_params=sc,
        spatial_size=PATCH,
        mode="bilinear",
        padding_mode="zeros",
        image_only=True,
    )(torch.from_numpy(img))
    np.testing.assert_allclose(out, np.asarray(monai), atol=1e-6)

    matrix = (create_rotate(3, rot) @ create_scale(3, sc))[:3, :3]
    offset = (np.asarray(region) - 1) / 2 - matrix @ ((np.asarray(PATCH) - 1) / 2)
    kw = {"matrix": matrix, "offset": offset, "output_shape": PATCH, "mode": "constant"}
    expected = ndimage.affine_transform(img[0].astype(np.float64), order=1, **kw)
    np.testing.assert_allclose(out[0], expected, atol=1e-5)
    expected_lab = ndimage.affine_transform(lab, order=0, **kw)
    # nearest neighbour: only voxels sampled exactly half-way (ties) may round differently
    assert olab is not None and (olab == expected_lab).mean() > 0.99

    lo = [(r - s) // 2 for r, s in zip(region, PATCH, strict=True)]
    crop = img[0, lo[0] : lo[0] + PATCH[0], lo[1] : lo[1] + PATCH[1], lo[2] : lo[2] + PATCH[2]]
    assert np.abs(out[0] - crop).max() > 0.1  # not a no-op
