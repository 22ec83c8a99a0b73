"""Class probabilities back to the original grid with torch, in bounded memory.

The inverse of the preprocessing resampling step for a prediction: ``(K, x, y, z)`` class
probabilities (or logits) on the preprocessed grid go to the spatial shape of the crop box,
``PreprocessInfo.cropped_shape`` (uncropping and reorientation, pure index operations, follow
in :func:`medseg.transforms.preprocessing.restore_to_original`).

Semantics are exactly those of :func:`medseg.transforms.spatial.resample_to_shape` with
``order=1`` (scipy ``zoom(grid_mode=True, mode="nearest")``): output voxel ``o`` samples input
coordinate ``(o + 0.5) * in / out - 0.5``, linear per axis, edge values extended. That is
torch's ``interpolate(mode="trilinear", align_corners=False)`` with the output size given
(coordinates below 0 clamp to 0, above ``in - 1`` to ``in - 1``); the tests check the
equivalence against scipy for odd shapes, up- and down-sampling.

* :func:`resample_probabilities` — the whole ``(K, X, Y, Z)`` float32 result (one call of
  ``interpolate``); memory ``K × X × Y × Z × 4`` bytes on the device.
* :func:`restore_labels` — streaming: the output is produced in slabs along axis 0; each slab
  is interpolated along axis 0 from the few input planes it needs (gather + lerp), then
  bilinearly in the two other axes, and reduced to the argmax label at once. Peak memory on
  the device is about ``K × n × Y × Z × 4`` bytes for a slab of ``n`` output planes (``n``
  chosen from ``max_chunk_bytes``, default 16 MiB on CPU, 256 MiB on CUDA; plus about three
  times ``K × n × y × z`` at the input's resolution), whatever the volume size; on the host
  the labels ``X × Y × Z`` (uint8, or uint16 above 255 classes) and, when asked, the float16
  probabilities ``K × X × Y × Z × 2`` bytes (for ``--save-probabilities``).

Inputs may be numpy arrays or torch tensors (float32, float16 or bfloat16; CPU or CUDA);
computation is in float32. torch is imported lazily.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    import torch

#: Default budget for one slab of output probabilities (bytes): small on CPU, where slabs
#: that stay in cache are fastest, larger on a GPU, where fewer kernel launches are.
DEFAULT_CHUNK_BYTES = {"cpu": 16 * 1024**2, "cuda": 256 * 1024**2}


@dataclass(frozen=True)
class RestoredPrediction:
    """Output of :func:`restore_labels`.

    Attributes:
        labels: ``(X, Y, Z)`` argmax class index (uint8, or uint16 for more than 256 classes).
        probabilities: ``(K, X, Y, Z)`` float16 probabilities on the output grid, or ``None``.
        planes_per_chunk: output planes (along axis 0) computed per slab.
        chunk_bytes: float32 bytes of one slab of output probabilities (the device bound).
    """

    labels: NDArray[Any]
    probabilities: NDArray[Any] | None
    planes_per_chunk: int
    chunk_bytes: int


def _as_tensor(probs: Any, device: Any) -> tuple[torch.Tensor, torch.device]:
    import torch

    t = probs if isinstance(probs, torch.Tensor) else torch.from_numpy(np.asarray(probs))
    if t.ndim != 4:
        raise ValueError(f"probabilities must be (K, X, Y, Z), found shape {tuple(t.shape)}")
    if not t.is_floating_point():
        raise ValueError(f"probabilities must be floating point, found {t.dtype}")
    dev = torch.device(device) if device is not None else t.device
    return t, dev


def _check_shape(out_shape: Sequence[int]) -> tuple[int, int, int]:
    s = tuple(int(v) for v in out_shape)
    if len(s) != 3 or min(s) < 1:
        raise ValueError(f"output shape must be three positive sizes, got {tuple(out_shape)}")
    return (s[0], s[1], s[2])


def resample_probabilities(
    probs: Any, out_shape: Sequence[int], *, device: Any = None
) -> torch.Tensor:
    """Resample ``(K, x, y, z)`` to ``(K, *out_shape)`` float32 on ``device`` (default: the
    input's), with the semantics of ``resample_to_shape(order=1)``."""
    import torch
    import torch.nn.functional as tnf

    t, dev = _as_tensor(probs, device)
    shape = _check_shape(out_shape)
    with torch.inference_mode():
        x = t.to(dev, torch.float32)
        if tuple(x.shape[1:]) == shape:
            return x.clone()
        return tnf.interpolate(x[None], size=shape, mode="trilinear", align_corners=False)[0]


def _axis_weights(n_in: int, n_out: int, lo: int, hi: int) -> tuple[NDArray[Any], ...]:
    """Input planes ``i0``, ``i1`` and weight of ``i1`` for outputs ``lo..hi-1`` along one
    axis (half-voxel aligned, clamped at both edges, as torch's linear modes)."""
    o = np.arange(lo, hi, dtype=np.float64)
    src = np.maximum((o + 0.5) * (n_in / n_out) - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    w = np.where(i1 > i0, src - i0, 0.0)
    return i0, i1, w


def restore_labels(
    probs: Any,
    out_shape: Sequence[int],
    *,
    device: Any = None,
    max_chunk_bytes: int | None = None,
    return_probabilities: bool = False,
) -> RestoredPrediction:
    """Argmax labels (and optionally float16 probabilities) of ``probs`` resampled to
    ``out_shape``, computed slab by slab (see the module docstring for the memory bound).

    Args:
        probs: ``(K, x, y, z)`` probabilities or logits on the preprocessed grid (numpy or
            torch; float32/float16/bfloat16). Channel ``c`` becomes label index ``c``.
        out_shape: ``(X, Y, Z)``, e.g. ``PreprocessInfo.cropped_shape``.
        device: where to compute (default: the input tensor's device; ``"cpu"`` for numpy).
        max_chunk_bytes: float32 budget of one output slab on the device (default
            :data:`DEFAULT_CHUNK_BYTES` for the device type).
        return_probabilities: also return the resampled values as float16 ``(K, X, Y, Z)``.

    Returns:
        :class:`RestoredPrediction` with numpy arrays on the host.
    """
    import torch
    import torch.nn.functional as tnf

    t, dev = _as_tensor(probs, device)
    X, Y, Z = _check_shape(out_shape)
    k, x_in = int(t.shape[0]), int(t.shape[1])
    binary = k == 2 and not return_probabilities
    if binary:
        # Two classes: linear resampling is linear, so argmax(resampled p0, p1) is
        # "resampled (p1 - p0) > 0" (ties to class 0, as argmax): one channel, half the work.
        t = t[1:2].to(torch.float32) - t[0:1].to(torch.float32)
        k = 1
    plane_bytes = k * Y * Z * 4
    budget = DEFAULT_CHUNK_BYTES.get(dev.type, 256 * 1024**2)
    if max_chunk_bytes is not None:
        budget = int(max_chunk_bytes)
    n = max(1, min(X, budget // plane_bytes))
    small = k <= 256
    labels = np.empty((X, Y, Z), dtype=np.uint8 if small else np.uint16)
    out_probs = np.empty((k, X, Y, Z), dtype=np.float16) if return_probabilities else None
    same_yz = tuple(t.shape[2:]) == (Y, Z)
    with torch.inference_mode():
        for a in range(0, X, n):
            b = min(X, a + n)
            i0, i1, w = _axis_weights(x_in, X, a, b)
            lo, hi = int(i0.min()), int(i1.max()) + 1
            # the input planes this slab needs, classes last: (m, y, z, K)
            planes = t[:, lo:hi].to(dev, torch.float32).permute(1, 2, 3, 0).contiguous()
            j0 = torch.from_numpy(i0 - lo).to(dev)
            j1 = torch.from_numpy(i1 - lo).to(dev)
            wt = torch.from_numpy(w.astype(np.float32)).to(dev).view(-1, 1, 1, 1)
            slab = torch.lerp(planes[j0], planes[j1], wt)  # (n, y, z, K) along axis 0
            del planes
            slab = slab.permute(0, 3, 1, 2)  # (n, K, y, z), channels-last in memory
            if not same_yz:  # torch keeps the channels-last layout: fast, argmax contiguous
                slab = tnf.interpolate(slab, size=(Y, Z), mode="bilinear", align_corners=False)
            # max(dim).indices: the first maximal class, as argmax, but faster on this layout
            best = (slab[:, 0] > 0) if binary else slab.max(dim=1).indices
            labels[a:b] = best.to(torch.uint8 if small else torch.int32).cpu().numpy()
            if out_probs is not None:
                torch.from_numpy(out_probs[:, a:b]).copy_(slab.permute(1, 0, 2, 3))
            del slab
    return RestoredPrediction(labels, out_probs, n, n * plane_bytes)


__all__ = ["DEFAULT_CHUNK_BYTES", "RestoredPrediction", "resample_probabilities", "restore_labels"]
