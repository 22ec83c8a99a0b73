"""Intensity normalisation, one function per scheme of
:class:`~medseg.plan.schema.ChannelNormalization`.

All functions take a 3-D float array and return a new ``float32`` array of the same shape.
They are plain numpy (MONAI's ``NormalizeIntensity`` / ``ScaleIntensityRange`` do the same
arithmetic but need a torch round trip and cannot take dataset-level statistics *and* a clip
range in one step; these are short enough to own).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from medseg.plan.schema import ChannelNormalization

#: Denominator floor, so that a constant image does not divide by zero.
EPS = 1e-8


def ct_normalize(
    array: np.ndarray, clip_low: float, clip_high: float, mean: float, std: float
) -> np.ndarray:
    """Clip to ``[clip_low, clip_high]`` (HU) then ``(x - mean) / std`` (dataset statistics)."""
    a = np.clip(array.astype(np.float32, copy=False), clip_low, clip_high)
    return ((a - np.float32(mean)) / np.float32(max(std, EPS))).astype(np.float32)


def zscore(array: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Per-image z-score: ``(x - mean) / std`` with mean/std over ``mask`` (all voxels when
    ``None``). With a mask, voxels outside it are set to 0, so the output has mean 0 and std 1
    inside the mask. An empty mask gives all zeros; a constant region gives 0 inside it."""
    a = array.astype(np.float32, copy=False)
    if mask is None:
        vals = a
    else:
        if mask.shape != a.shape:
            raise ValueError(f"mask shape {mask.shape} does not match image {a.shape}")
        vals = a[mask]
        if vals.size == 0:
            return np.zeros_like(a, dtype=np.float32)
    m = float(vals.mean(dtype=np.float64))
    s = float(vals.std(dtype=np.float64))
    out = ((a - np.float32(m)) / np.float32(max(s, EPS))).astype(np.float32)
    if mask is not None:
        out[~mask] = 0.0
    return out


def window(array: np.ndarray, low: float, high: float) -> np.ndarray:
    """Clip to ``[low, high]`` and scale linearly to ``[0, 1]``."""
    a = np.clip(array.astype(np.float32, copy=False), low, high)
    return ((a - np.float32(low)) / np.float32(high - low)).astype(np.float32)


def percentile_scale(
    array: np.ndarray, p_low: float, p_high: float, mask: np.ndarray | None = None
) -> np.ndarray:
    """Clip to this image's ``p_low``/``p_high`` percentiles (over ``mask`` if given) and
    scale to ``[0, 1]`` (a constant image maps to 0)."""
    vals = array[mask] if mask is not None else array
    if vals.size == 0:
        return np.zeros(array.shape, dtype=np.float32)
    lo, hi = np.percentile(vals, [p_low, p_high])
    if hi <= lo:
        return np.zeros(array.shape, dtype=np.float32)
    return window(array, float(lo), float(hi))


def normalize_channel(
    array: np.ndarray, norm: ChannelNormalization, nonzero_mask: np.ndarray | None = None
) -> np.ndarray:
    """Apply ``norm`` to one channel ``(X, Y, Z)``.

    ``nonzero_mask`` (boolean, same shape) is the region where any channel is non-zero; it is
    used by ``zscore`` when ``norm.use_nonzero_mask`` and by ``percentile`` to pick the voxels
    the percentiles are computed over (then too only when ``use_nonzero_mask``).
    """
    mask = nonzero_mask if norm.use_nonzero_mask else None
    if norm.use_nonzero_mask and nonzero_mask is None:
        raise ValueError(f"channel {norm.channel}: use_nonzero_mask needs the non-zero mask")
    if norm.scheme == "ct":
        assert norm.clip_low is not None and norm.clip_high is not None
        assert norm.mean is not None and norm.std is not None
        return ct_normalize(array, norm.clip_low, norm.clip_high, norm.mean, norm.std)
    if norm.scheme == "zscore":
        return zscore(array, mask)
    if norm.scheme == "window":
        assert norm.clip_low is not None and norm.clip_high is not None
        return window(array, norm.clip_low, norm.clip_high)
    assert norm.percentile_low is not None and norm.percentile_high is not None
    return percentile_scale(array, norm.percentile_low, norm.percentile_high, mask)


__all__ = ["ct_normalize", "normalize_channel", "percentile_scale", "window", "zscore"]
