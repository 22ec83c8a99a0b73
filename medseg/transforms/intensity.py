"""Intensity normalisation, one function per scheme of
:class:`~medseg.plan.schema.ChannelNormalization`.

All functions take a 3-D array and return a ``float32`` array of the same shape: a new one,
or ``out`` when given (which may be the input itself, for in-place normalisation of a large
volume without a second copy).
They are plain numpy (MONAI's ``NormalizeIntensity`` / ``ScaleIntensityRange`` do the same
arithmetic but need a torch round trip and cannot take dataset-level statistics *and* a clip
range in one step; these are short enough to own).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from medseg.plan.schema import ChannelNormalization

#: Denominator floor, so that a constant image does not divide by zero.
EPS = 1e-8


def _target(array: NDArray[Any], out: NDArray[Any] | None) -> NDArray[Any]:
    """``out`` (float32, the array's shape) holding ``array``'s values, or a new copy."""
    if out is None:
        return np.array(array, dtype=np.float32)
    if out.dtype != np.float32 or out.shape != array.shape:
        raise ValueError(f"out must be float32 of shape {array.shape}, got {out.dtype} {out.shape}")
    if out is not array:
        out[...] = array
    return out


def ct_normalize(
    array: NDArray[Any],
    clip_low: float,
    clip_high: float,
    mean: float,
    std: float,
    *,
    out: NDArray[Any] | None = None,
) -> NDArray[Any]:
    """Clip to ``[clip_low, clip_high]`` (HU) then ``(x - mean) / std`` (dataset statistics)."""
    a = _target(array, out)
    np.clip(a, np.float32(clip_low), np.float32(clip_high), out=a)
    a -= np.float32(mean)
    a /= np.float32(max(std, EPS))
    return a


def zscore(
    array: NDArray[Any], mask: NDArray[Any] | None = None, *, out: NDArray[Any] | None = None
) -> NDArray[Any]:
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
            res = _target(a, out)
            res[...] = 0.0
            return res
    m = float(vals.mean(dtype=np.float64))
    s = float(vals.std(dtype=np.float64))
    del vals
    res = _target(a, out)
    res -= np.float32(m)
    res /= np.float32(max(s, EPS))
    if mask is not None:
        res[~mask] = 0.0
    return res


def window(
    array: NDArray[Any], low: float, high: float, *, out: NDArray[Any] | None = None
) -> NDArray[Any]:
    """Clip to ``[low, high]`` and scale linearly to ``[0, 1]``."""
    a = _target(array, out)
    np.clip(a, np.float32(low), np.float32(high), out=a)
    a -= np.float32(low)
    a /= np.float32(high - low)
    return a


def percentile_scale(
    array: NDArray[Any],
    p_low: float,
    p_high: float,
    mask: NDArray[Any] | None = None,
    *,
    out: NDArray[Any] | None = None,
) -> NDArray[Any]:
    """Clip to this image's ``p_low``/``p_high`` percentiles (over ``mask`` if given) and
    scale to ``[0, 1]`` (a constant image maps to 0)."""
    vals = array[mask] if mask is not None else array
    lo, hi = np.percentile(vals, [p_low, p_high]) if vals.size else (0.0, 0.0)
    del vals
    if hi <= lo:
        res = _target(array, out)
        res[...] = 0.0
        return res
    return window(array, float(lo), float(hi), out=out)


def normalize_channel(
    array: NDArray[Any],
    norm: ChannelNormalization,
    nonzero_mask: NDArray[Any] | None = None,
    *,
    out: NDArray[Any] | None = None,
) -> NDArray[Any]:
    """Apply ``norm`` to one channel ``(X, Y, Z)``.

    ``nonzero_mask`` (boolean, same shape) is the region where any channel is non-zero; it is
    used by ``zscore`` when ``norm.use_nonzero_mask`` and by ``percentile`` to pick the voxels
    the percentiles are computed over (then too only when ``use_nonzero_mask``). ``out``
    (float32, may be ``array`` itself) receives the result instead of a new array.
    """
    mask = nonzero_mask if norm.use_nonzero_mask else None
    if norm.use_nonzero_mask and nonzero_mask is None:
        raise ValueError(f"channel {norm.channel}: use_nonzero_mask needs the non-zero mask")
    if norm.scheme == "ct":
        assert norm.clip_low is not None and norm.clip_high is not None
        assert norm.mean is not None and norm.std is not None
        return ct_normalize(array, norm.clip_low, norm.clip_high, norm.mean, norm.std, out=out)
    if norm.scheme == "zscore":
        return zscore(array, mask, out=out)
    if norm.scheme == "window":
        assert norm.clip_low is not None and norm.clip_high is not None
        return window(array, norm.clip_low, norm.clip_high, out=out)
    assert norm.percentile_low is not None and norm.percentile_high is not None
    return percentile_scale(array, norm.percentile_low, norm.percentile_high, mask, out=out)


__all__ = ["ct_normalize", "normalize_channel", "percentile_scale", "window", "zscore"]
