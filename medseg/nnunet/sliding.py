"""nnU-Net v2's sliding-window prediction of logits (``nnUNetPredictor``'s
``predict_sliding_window_return_logits``, ``_internal_maybe_mirror_and_predict`` and
``sliding_window_prediction.py``), reproduced.

Unlike medseg's own :mod:`medseg.inference.sliding` (which blends softmax probabilities),
nnU-Net blends and averages **logits**: over the Gaussian-weighted windows, over the mirrored
passes of test-time augmentation, and over the folds of an ensemble; the argmax is taken on
the logits after they are resampled to the original spacing.

Arrays are ``(C, X, Y, Z)`` in nnU-Net's axis order (see :mod:`medseg.nnunet.preprocess`).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:  # pragma: no cover
    import torch


def _all_channels(spatial: tuple[slice, ...]) -> tuple[slice, ...]:
    """Index of every channel and the ``spatial`` slices."""
    return (slice(None), *spatial)


def gaussian_map(
    patch_size: Sequence[int], sigma_scale: float = 1.0 / 8
) -> npt.NDArray[np.float32]:
    """nnU-Net's ``compute_gaussian``: a unit impulse at ``patch // 2`` blurred with sigma
    ``patch * sigma_scale`` voxels per axis (zero outside), scaled to a peak of 10, zeros
    replaced by the smallest positive value. (nnU-Net stores it as float16; float32 here.)"""
    from scipy.ndimage import gaussian_filter

    size = tuple(int(p) for p in patch_size)
    tmp = np.zeros(size)
    tmp[tuple(s // 2 for s in size)] = 1
    g = gaussian_filter(tmp, [s * sigma_scale for s in size], 0, mode="constant", cval=0)
    g /= np.max(g) / 10
    g32: npt.NDArray[np.float32] = g.astype(np.float32)
    g32[g32 == 0] = g32[g32 > 0].min()
    return g32


def window_starts(
    image_size: Sequence[int], patch_size: Sequence[int], step_size: float = 0.5
) -> list[list[int]]:
    """nnU-Net's ``compute_steps_for_sliding_window``: per axis, the fewest evenly spread
    window starts with a step of at most ``patch * step_size``, first 0, last at the end."""
    steps: list[list[int]] = []
    for im, p in zip(image_size, patch_size, strict=True):
        n = int(np.ceil((im - p) / (p * step_size))) + 1
        actual = (im - p) / (n - 1) if n > 1 else 99999999999
        steps.append([int(np.round(actual * i)) for i in range(n)])
    return steps


def mirror_passes(axes: Sequence[int] | None) -> list[tuple[int, ...]]:
    """The flips averaged by nnU-Net's test-time mirroring, in its order: none, then every
    combination of 1, 2, ... of ``axes`` (``itertools.combinations``)."""
    if not axes:
        return [()]
    ax = list(axes)
    return [(), *[c for r in range(1, len(ax) + 1) for c in itertools.combinations(ax, r)]]


def sliding_window_logits(
    network: torch.nn.Module,
    data: torch.Tensor,
    patch_size: Sequence[int],
    *,
    mirror_axes: Sequence[int] | None = None,
    step_size: float = 0.5,
    batch_size: int = 1,
    device: str = "cpu",
    amp_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Gaussian-blended logits ``(K, X, Y, Z)`` (float32, CPU) of ``network`` over the
    preprocessed image ``data`` ``(C, X, Y, Z)``.

    An image smaller than the patch is zero-padded (half below, half above, as nnU-Net's
    ``pad_nd_image``) and cropped back; ``mirror_axes`` (axes of ``data``'s spatial dims)
    averages the logits of the mirrored passes (:func:`mirror_passes`); ``batch_size``
    windows go through the network at once.
    """
    import torch

    from medseg.transforms.spatial import pad_to_patch

    patch = [int(p) for p in patch_size]
    size = [int(s) for s in data.shape[1:]]
    x, lo = pad_to_patch(data.float(), patch)
    padded = [int(s) for s in x.shape[1:]]
    starts = list(itertools.product(*window_starts(padded, patch, step_size)))
    gauss = torch.from_numpy(gaussian_map(patch))
    dev = torch.device(device)
    network = network.to(dev).eval()
    passes = mirror_passes(mirror_axes)
    acc: torch.Tensor | None = None
    weight = torch.zeros(padded, dtype=torch.float32)
    with torch.inference_mode():
        for b0 in range(0, len(starts), batch_size):
            chunk = starts[b0 : b0 + batch_size]
            sls = [tuple(slice(s, s + p) for s, p in zip(st, patch, strict=True)) for st in chunk]
            xb = torch.stack([x[_all_channels(sl)] for sl in sls]).to(dev)
            pred: torch.Tensor | None = None
            for flip in passes:
                dims = [a + 2 for a in flip]
                xin = torch.flip(xb, dims) if dims else xb
                with torch.autocast(
                    dev.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None
                ):
                    out = network(xin)
                out = out.float()
                out = torch.flip(out, dims) if dims else out
                pred = out if pred is None else pred + out
            assert pred is not None
            pred = (pred / len(passes)).cpu()
            if acc is None:
                acc = torch.zeros((pred.shape[1], *padded), dtype=torch.float32)
            for i, sl in enumerate(sls):
                acc[_all_channels(sl)] += pred[i] * gauss
                weight[sl] += gauss
        assert acc is not None
        acc /= weight
    crop = tuple(slice(a, a + s) for a, s in zip(lo, size, strict=True))
    return acc[_all_channels(crop)]


__all__ = ["gaussian_map", "mirror_passes", "sliding_window_logits", "window_starts"]
