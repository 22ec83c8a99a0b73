"""Normalisation schemes deliver the statistics they promise."""

from __future__ import annotations

import numpy as np
import pytest

from medseg.plan import ChannelNormalization
from medseg.transforms.intensity import (
    ct_normalize,
    normalize_channel,
    percentile_scale,
    window,
    zscore,
)


def _ball_mask(shape: tuple[int, int, int], r: float) -> np.ndarray:
    g = np.indices(shape).astype(float)
    c = (np.asarray(shape, float) - 1) / 2
    return ((g - c[:, None, None, None]) ** 2).sum(0) <= r * r


def test_zscore_mean0_std1_inside_mask_zero_outside(rng: np.random.Generator) -> None:
    mask = _ball_mask((24, 24, 24), 9)
    img = np.where(mask, rng.normal(300, 40, mask.shape), 0.0).astype(np.float32)
    out = zscore(img, mask)
    assert out.dtype == np.float32
    assert abs(float(out[mask].mean())) < 1e-5
    assert abs(float(out[mask].std()) - 1) < 1e-5
    assert np.all(out[~mask] == 0)


def test_zscore_whole_image_and_degenerate_cases(rng: np.random.Generator) -> None:
    img = rng.normal(-5, 3, (16, 16, 16))
    out = zscore(img)
    assert abs(out.mean()) < 1e-5 and abs(out.std() - 1) < 1e-4
    assert np.all(zscore(np.full((4, 4, 4), 7.0)) == 0)  # constant: no division by zero
    assert np.all(zscore(img, np.zeros(img.shape, bool)) == 0)  # empty mask
    with pytest.raises(ValueError, match="mask shape"):
        zscore(img, np.ones((2, 2, 2), bool))


def test_ct_normalize_clips_then_uses_dataset_statistics() -> None:
    hu = np.array([-2000.0, -100.0, 0.0, 50.0, 3000.0]).reshape(5, 1, 1)
    out = ct_normalize(hu, -100, 200, mean=50, std=25)
    np.testing.assert_allclose(out.ravel(), [-6.0, -6.0, -2.0, 0.0, 6.0])


def test_window_and_percentile_scale_to_unit_range(rng: np.random.Generator) -> None:
    w = window(np.array([-1000.0, -160.0, 40.0, 240.0, 900.0]).reshape(5, 1, 1), -160, 240)
    np.testing.assert_allclose(w.ravel(), [0, 0, 0.5, 1, 1])
    img = rng.uniform(0, 1000, (20, 20, 20))
    p = percentile_scale(img, 1, 99)
    lo, hi = np.percentile(img, [1, 99])
    assert p.min() == 0 and abs(float(p.max()) - 1) < 1e-6
    np.testing.assert_allclose(p[img <= lo], 0)
    inside = (img > lo) & (img < hi)
    np.testing.assert_allclose(p[inside], (img[inside] - lo) / (hi - lo), atol=1e-5)


def test_normalize_channel_dispatch_and_validation(rng: np.random.Generator) -> None:
    mask = _ball_mask((16, 16, 16), 6)
    img = np.where(mask, rng.normal(10, 2, mask.shape), 0).astype(np.float32)
    z = normalize_channel(
        img, ChannelNormalization(channel="T1", scheme="zscore", use_nonzero_mask=True), mask
    )
    assert abs(z[mask].mean()) < 1e-5 and np.all(z[~mask] == 0)
    with pytest.raises(ValueError, match="needs the non-zero mask"):
        normalize_channel(
            img, ChannelNormalization(channel="T1", scheme="zscore", use_nonzero_mask=True), None
        )
    ct = ChannelNormalization(channel="CT", scheme="ct", clip_low=0, clip_high=12, mean=6, std=2)
    np.testing.assert_allclose(normalize_channel(img, ct), (np.clip(img, 0, 12) - 6) / 2, rtol=1e-6)
    with pytest.raises(ValueError, match="needs clip_low"):
        ChannelNormalization(channel="CT", scheme="window")
