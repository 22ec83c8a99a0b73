"""Sliding-window inference with Gaussian blending (nnU-Net style), reused by validation during
training and by prediction.

* :func:`compute_gaussian`, :func:`compute_steps` — small pure functions (NumPy).
* :func:`mirror_combinations` — the flips of test-time augmentation (all ``2^n`` subsets of the
  mirror axes; nnU-Net's 8 passes in 3-D).
* :func:`sliding_window_probabilities` — a network and a preprocessed image tensor
  ``(C, X, Y, Z)`` → softmax probabilities ``(K, X, Y, Z)`` (float32).

Axis order is always the :class:`~medseg.volume.Volume` array order (voxel index ``i, j, k``).
"""

from __future__ import annotations

import functools
import itertools
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from medseg.errors import ConfigError, InputError

if TYPE_CHECKING:  # pragma: no cover
    import torch

log = logging.getLogger("medseg.inference")

#: Share of the GPU's free memory the stitched probabilities may take before the stitching
#: moves to the CPU.
GPU_STITCH_FRACTION = 0.5
_said_cpu_stitch = False


def compute_gaussian(
    patch_size: Sequence[int], sigma_scale: float = 1.0 / 8
) -> npt.NDArray[np.float32]:
    """Gaussian importance map of shape ``patch_size``, peak 1 at the centre, sigma
    ``sigma_scale * patch_size`` voxels per axis, with no zeros (min clipped to the smallest
    positive value) so every voxel of a window has a positive weight. A new array each call
    (computed once per patch size and scale: a batch of cases shares it)."""
    return _gaussian(tuple(int(p) for p in patch_size), float(sigma_scale)).copy()


@functools.lru_cache(maxsize=8)
def _gaussian(size: tuple[int, ...], sigma_scale: float) -> npt.NDArray[np.float32]:
    from scipy.ndimage import gaussian_filter

    tmp = np.zeros(size, dtype=np.float64)
    tmp[tuple(s // 2 for s in size)] = 1.0
    g = gaussian_filter(tmp, sigma=[s * sigma_scale for s in size], mode="constant", cval=0.0)
    g = g / g.max()
    pos = g[g > 0]
    g[g == 0] = pos.min()
    result: npt.NDArray[np.float32] = g.astype(np.float32)
    return result


def compute_steps(
    image_size: Sequence[int], patch_size: Sequence[int], overlap: float = 0.5
) -> list[list[int]]:
    """Window start indices per axis so that windows of ``patch_size`` cover ``image_size``
    with at least ``overlap`` (fraction, 0 ≤ overlap < 1) overlap, evenly spread, first at 0 and
    last ending at the image border. Requires ``image_size >= patch_size`` on every axis."""
    if not 0.0 <= overlap < 1.0:
        raise ConfigError(f"overlap: expected a fraction in [0, 1), found {overlap}")
    steps: list[list[int]] = []
    for im, p in zip(image_size, patch_size, strict=True):
        if im < p:
            raise ValueError(
                f"image size {tuple(image_size)} smaller than patch {tuple(patch_size)}"
            )
        target_step = p * (1.0 - overlap)
        n = int(np.ceil((im - p) / target_step)) + 1 if im > p else 1
        if n == 1:
            steps.append([0])
            continue
        actual = (im - p) / (n - 1)
        steps.append([int(np.round(actual * i)) for i in range(n)])
    return steps


def mirror_combinations(mirror_axes: Sequence[int]) -> list[tuple[int, ...]]:
    """``()`` and every non-empty subset of ``mirror_axes``: the flips test-time mirroring
    averages over (8 passes for the three axes of a 3-D image)."""
    axes = sorted({int(a) for a in mirror_axes})
    if any(a not in (0, 1, 2) for a in axes):
        raise ConfigError(f"mirror axes: expected values in 0..2, found {list(mirror_axes)}")
    return [c for r in range(len(axes) + 1) for c in itertools.combinations(axes, r)]


def main_logits(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``model(x)``'s full-resolution logits ``(B, K, ...)``: the first output of a list or
    deep-supervision stack."""
    out = model(x)
    if isinstance(out, (list, tuple)):
        out = out[0]
    if out.ndim == x.ndim + 1:  # deep-supervision stack (B, heads, K, ...)
        out = out[:, 0]
    result: torch.Tensor = out
    return result


def _stitch_device(dev: torch.device, n_classes: int, shape: Sequence[int]) -> torch.device:
    """Where the probabilities are accumulated: on the GPU when ``(K + 1)`` float32 volumes
    take at most :data:`GPU_STITCH_FRACTION` of its free memory, else on the CPU (said once)."""
    import torch

    global _said_cpu_stitch
    if dev.type != "cuda":
        return dev
    need = (n_classes + 1) * int(np.prod(shape)) * 4
    free, _ = torch.cuda.mem_get_info(dev)
    if need <= GPU_STITCH_FRACTION * free:
        return dev
    if not _said_cpu_stitch:
        log.warning(
            "the probabilities of a %s volume (%.1f GB) do not fit in %.1f GB of free GPU "
            "memory: stitching on the CPU (the windows still run on the GPU)",
            "x".join(str(s) for s in shape),
            need / 1e9,
            free / 1e9,
        )
        _said_cpu_stitch = True
    return torch.device("cpu")


def sliding_window_probabilities(
    model: torch.nn.Module,
    image: torch.Tensor,
    patch_size: Sequence[int],
    *,
    overlap: float = 0.5,
    batch_size: int = 2,
    device: str | torch.device = "cpu",
    amp_dtype: torch.dtype | None = None,
    mirror_axes: Sequence[int] = (),
    sigma_scale: float = 1.0 / 8,
    keep_on_device: bool = False,
    source: str | Path | None = None,
) -> torch.Tensor:
    """Softmax probabilities ``(K, X, Y, Z)`` (float32) for a preprocessed image
    ``(C, X, Y, Z)``.

    Windows of ``patch_size`` voxels overlap by ``overlap`` and are blended with a Gaussian
    importance map (:func:`compute_gaussian`); ``batch_size`` windows go through the network at
    once. An image smaller than the patch on some axis is zero-padded symmetrically (zero = the
    normalised mean intensity) and cropped back. ``mirror_axes`` (subset of 0, 1, 2) adds
    test-time mirroring over every combination of those flips (:func:`mirror_combinations`),
    averaged in probability. On a GPU the probabilities are stitched there unless they would
    not fit (then on the CPU, said once). The result is on the CPU unless ``keep_on_device``.
    The model is put in ``eval`` mode; no gradients are kept.

    Non-finite network outputs (NaN or infinite logits, e.g. from damaged weights) raise
    :class:`~medseg.errors.InputError` naming ``source`` (the checkpoint), never an empty or
    arbitrary segmentation.
    """
    import torch

    from medseg.transforms.spatial import pad_to_patch

    if image.ndim != 4:
        raise ValueError(f"expected an image tensor (C, X, Y, Z), found shape {tuple(image.shape)}")
    patch = [int(p) for p in patch_size]
    size = [int(s) for s in image.shape[1:]]
    image, pad_lo = pad_to_patch(image, patch)
    padded = [int(s) for s in image.shape[1:]]
    steps = compute_steps(padded, patch, overlap)
    dev = torch.device(device)
    gauss_np = compute_gaussian(patch, sigma_scale)
    model.eval()
    acc: torch.Tensor | None = None
    weight: torch.Tensor | None = None
    gauss: torch.Tensor | None = None
    starts = list(itertools.product(*steps))
    img = image.to(dev, dtype=torch.float32)
    mirrors = mirror_combinations(mirror_axes)
    with torch.inference_mode():
        for b0 in range(0, len(starts), batch_size):
            chunk = starts[b0 : b0 + batch_size]
            x = torch.stack(
                [
                    img[:, s[0] : s[0] + patch[0], s[1] : s[1] + patch[1], s[2] : s[2] + patch[2]]
                    for s in chunk
                ]
            )
            prob: torch.Tensor | None = None
            for axes in mirrors:
                dims = [a + 2 for a in axes]
                xin = torch.flip(x, dims) if dims else x
                with torch.autocast(
                    dev.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None
                ):
                    logits = main_logits(model, xin)
                if not bool(torch.isfinite(logits).all()):
                    raise InputError(
                        source,
                        f"the network produced non-finite outputs ({_nonfinite(logits)} of "
                        f"{logits.numel()} logits NaN or infinite in the window at {chunk[0]}): "
                        "the weights are damaged, or training diverged",
                    )
                p = torch.softmax(logits.float(), dim=1)
                if dims:
                    p = torch.flip(p, dims)
                prob = p if prob is None else prob + p
            assert prob is not None
            prob = prob / len(mirrors)
            if len(starts) == 1:  # one window: its probabilities are the result (no blending)
                acc = prob[0].to(_stitch_device(dev, int(prob.shape[1]), padded))
                weight = None
                break
            if acc is None:
                sd = _stitch_device(dev, int(prob.shape[1]), padded)
                acc = torch.zeros((prob.shape[1], *padded), dtype=torch.float32, device=sd)
                weight = torch.zeros(padded, dtype=torch.float32, device=sd)
                gauss = torch.from_numpy(gauss_np).to(sd)
            assert weight is not None and gauss is not None
            prob = prob.to(acc.device)
            for i, s in enumerate(chunk):
                sl = (
                    slice(s[0], s[0] + patch[0]),
                    slice(s[1], s[1] + patch[1]),
                    slice(s[2], s[2] + patch[2]),
                )
                every_class = (slice(None), *sl)
                acc[every_class] += prob[i] * gauss
                weight[sl] += gauss
        assert acc is not None
        if weight is not None:
            acc /= weight
    crop = tuple(slice(lo, lo + s) for lo, s in zip(pad_lo, size, strict=True))
    unpadded = (slice(None), *crop)
    out = acc[unpadded]
    return out if keep_on_device else out.to("cpu")


def _nonfinite(t: torch.Tensor) -> int:
    import torch

    return int((~torch.isfinite(t)).sum())


def predict_array(
    model: torch.nn.Module, image: torch.Tensor, patch_size: Sequence[int], **kwargs: Any
) -> npt.NDArray[np.uint8]:
    """Label array ``(X, Y, Z)`` (argmax of :func:`sliding_window_probabilities`, same
    keyword arguments) for a preprocessed image ``(C, X, Y, Z)``."""
    probs = sliding_window_probabilities(model, image, patch_size, **kwargs)
    lab = probs.argmax(dim=0).cpu().numpy()
    return lab.astype(np.uint8 if probs.shape[0] <= 256 else np.int32)


__all__ = [
    "GPU_STITCH_FRACTION",
    "compute_gaussian",
    "compute_steps",
    "mirror_combinations",
    "predict_array",
    "sliding_window_probabilities",
]
