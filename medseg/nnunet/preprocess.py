"""nnU-Net v2's preprocessing for prediction and its inverse, reproduced from
``nnunetv2/preprocessing`` (``DefaultPreprocessor.run_case_npy``, ``crop_to_nonzero``, the
normalisation schemes, ``resample_data_or_seg_to_shape``) and
``nnunetv2/inference/export_prediction.py``.

Axis order: nnU-Net reads a file with SimpleITK, so its arrays are ``(C, K, J, I)`` — the
reverse of medseg's ``(I, J, K)`` — and its spacing is reversed likewise. The functions here
work on nnU-Net's order; :mod:`medseg.nnunet.model` converts at the edge. Spacings in mm.

Order of operations (as nnU-Net): transpose (``transpose_forward``) → crop to the non-zero
region (holes filled) → normalise per channel → resample to the configuration's spacing
(cubic in-plane; along the low-resolution axis nearest when the spacing is anisotropic,
nnU-Net's "separate z"). Back: logits resampled (linear; separate z alike) → argmax → uncrop
(background outside the box) → ``transpose_backward``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from scipy.ndimage import binary_fill_holes

from medseg.errors import InputError
from medseg.transforms.spatial import resample_to_shape

if TYPE_CHECKING:  # pragma: no cover
    import torch

#: nnU-Net's ``ANISO_THRESHOLD``: spacing ratio above which resampling is done separately
#: along the low-resolution axis.
ANISO_THRESHOLD = 3.0
RESAMPLING_FUNCTION = "resample_data_or_seg_to_shape"
SCHEMES = (
    "CTNormalization",
    "ZScoreNormalization",
    "NoNormalization",
    "RescaleTo01Normalization",
    "RGBTo01Normalization",
)


@dataclass(frozen=True)
class Resampling:
    """``resampling_fn_*_kwargs`` of nnU-Net's plans: spline ``order`` in-plane, ``order_z``
    along the low-resolution axis, ``force_separate_z`` (``None``: decide by anisotropy)."""

    order: int
    order_z: int
    force_separate_z: bool | None

    @classmethod
    def from_plans(cls, config: dict[str, Any], key: str, where: Path) -> Resampling:
        fn = config.get(key)
        if fn != RESAMPLING_FUNCTION:
            raise InputError(where, f"{key}: expected {RESAMPLING_FUNCTION}, found {fn!r}")
        kw = config.get(f"{key}_kwargs", {})
        return cls(int(kw.get("order", 3)), int(kw.get("order_z", 0)), kw.get("force_separate_z"))


@dataclass(frozen=True)
class CropInfo:
    """What the inverse needs: ``shape_before_cropping`` (transposed array), ``bbox``
    (``[[lo, hi), ...]`` per axis), ``shape_after_cropping`` and the transposed spacing."""

    shape_before_cropping: tuple[int, ...]
    bbox: tuple[tuple[int, int], ...]
    shape_after_cropping: tuple[int, ...]
    spacing: tuple[float, ...]


def _all_channels(spatial: tuple[slice, ...]) -> tuple[slice, ...]:
    """Index of every channel and the ``spatial`` slices."""
    return (slice(None), *spatial)


def separate_z(
    force: bool | None, current: Sequence[float], new: Sequence[float]
) -> tuple[bool, int | None]:
    """nnU-Net's ``determine_do_sep_z_and_axis``: whether to resample the low-resolution
    axis separately, and which axis (``None`` when two or three axes tie)."""

    def lowres(sp: Sequence[float]) -> npt.NDArray[np.intp]:
        arr = np.array(sp, dtype=float)
        return np.where(max(sp) / arr == 1)[0]

    axis: npt.NDArray[np.intp] | None
    if force is not None:
        do, axis = bool(force), (lowres(current) if force else None)
    elif max(current) / min(current) > ANISO_THRESHOLD:
        do, axis = True, lowres(current)
    elif max(new) / min(new) > ANISO_THRESHOLD:
        do, axis = True, lowres(new)
    else:
        do, axis = False, None
    if axis is None or len(axis) != 1:
        return False, None
    return do, int(axis[0])


def compute_new_shape(
    shape: Sequence[int], spacing: Sequence[float], new_spacing: Sequence[float]
) -> tuple[int, ...]:
    """nnU-Net's ``compute_new_shape``: ``round(spacing / new_spacing * shape)`` per axis."""
    return tuple(round(s / n * k) for s, n, k in zip(spacing, new_spacing, shape, strict=True))


def nearest_indices(n_in: int, n_out: int) -> npt.NDArray[np.intp]:
    """Indices of nnU-Net's order-0 resampling along one axis (``map_coordinates`` at
    ``(o + 0.5) * n_in / n_out - 0.5``, rounded half up, clamped)."""
    c = (float(n_in) / n_out) * (np.arange(n_out) + 0.5) - 0.5
    idx: npt.NDArray[np.intp] = np.clip(np.floor(c + 0.5), 0, n_in - 1).astype(np.intp)
    return idx


def resample_data(
    data: npt.NDArray[np.float32],
    new_shape: Sequence[int],
    current_spacing: Sequence[float],
    new_spacing: Sequence[float],
    rs: Resampling,
) -> npt.NDArray[np.float32]:
    """Images ``(C, X, Y, Z)`` to ``new_shape`` as nnU-Net's
    ``resample_data_or_seg_to_shape`` (skimage ``resize``: spline ``order``, edge mode, output
    clipped to the input's range — per slice when the low-resolution axis goes separately,
    ``order_z`` along it)."""
    new = tuple(int(s) for s in new_shape)
    if tuple(data.shape[1:]) == new:
        return data
    do_sep, axis = separate_z(rs.force_separate_z, current_spacing, new_spacing)
    out = np.empty((data.shape[0], *new), dtype=np.float32)
    for c in range(data.shape[0]):
        ch = data[c]
        if do_sep and axis is not None:
            plane = list(new)
            plane[axis] = ch.shape[axis]
            res = resample_to_shape(ch, plane, rs.order).astype(np.float32, copy=False)
            if rs.order > 0:
                other = tuple(a for a in range(3) if a != axis)
                lo = ch.min(axis=other, keepdims=True)
                hi = ch.max(axis=other, keepdims=True)
                res = np.clip(res, lo, hi)
            if ch.shape[axis] != new[axis]:
                if rs.order_z != 0:
                    raise InputError(None, f"order_z {rs.order_z} is not supported (only 0)")
                res = np.take(res, nearest_indices(ch.shape[axis], new[axis]), axis=axis)
            out[c] = res
        else:
            res = resample_to_shape(ch, new, rs.order)
            out[c] = np.clip(res, ch.min(), ch.max()) if rs.order > 0 else res
    return out


def resample_logits(
    logits: torch.Tensor,
    new_shape: Sequence[int],
    current_spacing: Sequence[float],
    new_spacing: Sequence[float],
    rs: Resampling,
) -> torch.Tensor:
    """Logits ``(K, X, Y, Z)`` to ``new_shape`` (float32), nnU-Net's export resampling
    (``order`` 1: linear = torch's ``trilinear``/``bilinear`` with ``align_corners=False``;
    separate z: nearest along the low-resolution axis, linear in-plane)."""
    import torch.nn.functional as tnf

    if rs.order != 1:
        raise InputError(None, f"probability resampling order {rs.order} is not supported (1)")
    new = tuple(int(s) for s in new_shape)
    x = logits.float()
    if tuple(x.shape[1:]) == new:
        return x
    do_sep, axis = separate_z(rs.force_separate_z, current_spacing, new_spacing)
    if not (do_sep and axis is not None):
        out = tnf.interpolate(x[None], size=new, mode="trilinear", align_corners=False)
        return out[0]
    if rs.order_z != 0:
        raise InputError(None, f"order_z {rs.order_z} is not supported (only 0)")
    import torch

    if x.shape[axis + 1] != new[axis]:
        idx = torch.from_numpy(nearest_indices(int(x.shape[axis + 1]), new[axis]))
        x = x.index_select(axis + 1, idx.to(x.device))
    x = x.movedim(axis + 1, 0)  # (n, K, a, b)
    plane = tuple(s for a, s in enumerate(new) if a != axis)
    y = tnf.interpolate(x, size=plane, mode="bilinear", align_corners=False)
    return y.movedim(0, axis + 1).contiguous()


def crop_to_nonzero(
    data: npt.NDArray[np.float32],
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_], tuple[tuple[int, int], ...]]:
    """nnU-Net's ``crop_to_nonzero``: the box of the voxels non-zero in any channel (holes
    filled); returns the cropped data, the filled mask inside the box and the box."""
    mask = np.any(data != 0, axis=0)
    mask = binary_fill_holes(mask)
    if not mask.any():
        raise InputError(None, "every voxel of the image is 0; nothing to segment")
    box = []
    for a in range(mask.ndim):
        other = tuple(b for b in range(mask.ndim) if b != a)
        idx = np.where(mask.any(axis=other))[0]
        box.append((int(idx[0]), int(idx[-1]) + 1))
    sl = tuple(slice(lo, hi) for lo, hi in box)
    return data[_all_channels(sl)], mask[sl], tuple(box)


def normalize(
    image: npt.NDArray[np.float32],
    scheme: str,
    use_mask: bool,
    props: dict[str, Any],
    mask: npt.NDArray[np.bool_],
) -> npt.NDArray[np.float32]:
    """One channel ``(X, Y, Z)`` float32 normalised in place as nnU-Net's scheme ``scheme``
    (``default_normalization_schemes.py``); ``mask``: the non-zero region (for
    ``ZScoreNormalization`` with ``use_mask``); ``props``: the plan's foreground intensity
    properties of the channel (``CTNormalization``)."""
    eps = 1e-8
    if scheme == "CTNormalization":
        np.clip(image, props["percentile_00_5"], props["percentile_99_5"], out=image)
        image -= props["mean"]
        image /= max(props["std"], eps)
    elif scheme == "ZScoreNormalization":
        if use_mask:
            mean, std = image[mask].mean(), image[mask].std()
            image[mask] = (image[mask] - mean) / max(std, eps)
        else:
            mean, std = image.mean(), image.std()
            image -= mean
            image /= max(std, eps)
    elif scheme == "RescaleTo01Normalization":
        image -= image.min()
        image /= np.clip(image.max(), a_min=eps, a_max=None)
    elif scheme == "RGBTo01Normalization":
        if image.min() < 0 or image.max() > 255:
            raise InputError(None, "RGBTo01Normalization: expected values in 0..255")
        image /= 255.0
    elif scheme != "NoNormalization":
        raise InputError(None, f"normalization: expected one of {SCHEMES}, found {scheme!r}")
    return image


def preprocess(
    data: npt.NDArray[np.float32],
    spacing: Sequence[float],
    *,
    transpose_forward: Sequence[int],
    target_spacing: Sequence[float],
    schemes: Sequence[str],
    use_mask: Sequence[bool],
    intensity_props: dict[str, Any],
    resampling: Resampling,
) -> tuple[npt.NDArray[np.float32], CropInfo]:
    """nnU-Net's ``DefaultPreprocessor.run_case_npy`` without a segmentation: ``data``
    ``(C, X, Y, Z)`` float32 in nnU-Net's axis order with ``spacing`` (mm, same order) →
    the network's input on the configuration's grid, and what :func:`restore` needs."""
    data = np.ascontiguousarray(data.transpose([0, *[i + 1 for i in transpose_forward]]))
    sp = tuple(float(spacing[i]) for i in transpose_forward)
    before = tuple(int(s) for s in data.shape[1:])
    data, mask, bbox = crop_to_nonzero(data)
    data = np.array(data, dtype=np.float32)
    after = tuple(int(s) for s in data.shape[1:])
    target = list(target_spacing)
    if len(target) < 3:
        target = [sp[0], *target]
    new_shape = compute_new_shape(after, sp, target)
    for c in range(data.shape[0]):
        data[c] = normalize(data[c], schemes[c], use_mask[c], intensity_props[str(c)], mask)
    data = resample_data(data, new_shape, sp, target, resampling)
    return data, CropInfo(before, bbox, after, sp)


def restore(
    logits: torch.Tensor,
    info: CropInfo,
    target_spacing: Sequence[float],
    resampling: Resampling,
    *,
    regions_class_order: Sequence[int] | None,
    transpose_backward: Sequence[int],
    with_probabilities: bool,
) -> tuple[npt.NDArray[np.integer[Any]], npt.NDArray[np.float16] | None]:
    """nnU-Net's ``convert_predicted_logits_to_segmentation_with_correct_shape``: logits
    ``(K, x, y, z)`` on the network's grid → labels on the grid of the input array (nnU-Net's
    axis order), and with ``with_probabilities`` the probabilities there (float16; softmax, or
    sigmoid per region; background 1 outside the crop box for softmax models)."""
    import torch

    current = list(target_spacing)
    if len(current) < 3:
        current = [info.spacing[0], *current]
    sl = tuple(slice(lo, hi) for lo, hi in info.bbox)
    do_sep, _ = separate_z(resampling.force_separate_z, current, info.spacing)
    if regions_class_order is None and not with_probabilities and not do_sep:
        # the common case in bounded memory: linear resampling and argmax slab by slab
        from medseg.transforms.resample_torch import restore_labels

        lab = restore_labels(logits, info.shape_after_cropping).labels
        full = np.zeros(info.shape_before_cropping, dtype=lab.dtype)
        full[sl] = lab
        return full.transpose(transpose_backward), None
    res = resample_logits(logits, info.shape_after_cropping, current, info.spacing, resampling)
    if regions_class_order is not None:
        probs = torch.sigmoid(res)
        seg = torch.zeros(res.shape[1:], dtype=torch.int16)
        for i, c in enumerate(regions_class_order):
            seg[probs[i] > 0.5] = int(c)
    else:
        probs = torch.softmax(res, dim=0) if with_probabilities else res
        seg = res.argmax(dim=0)
    n = int(max(regions_class_order) if regions_class_order else res.shape[0] - 1)
    full = np.zeros(info.shape_before_cropping, dtype=np.uint8 if n < 255 else np.uint16)
    full[sl] = seg.numpy()
    labels = full.transpose(transpose_backward)
    half = None
    if with_probabilities:
        pf = np.zeros((probs.shape[0], *info.shape_before_cropping), dtype=np.float16)
        if regions_class_order is None:
            pf[0] = 1.0
        pf[_all_channels(sl)] = probs.numpy().astype(np.float16)
        half = pf.transpose([0, *[i + 1 for i in transpose_backward]])
    return labels, half


__all__ = [
    "ANISO_THRESHOLD",
    "CropInfo",
    "Resampling",
    "compute_new_shape",
    "crop_to_nonzero",
    "nearest_indices",
    "normalize",
    "preprocess",
    "resample_data",
    "resample_logits",
    "restore",
    "separate_z",
]
