"""The preprocessing pipeline shared exactly by training and inference, and its inverse.

``preprocess_case`` runs, in this order:

1. check that all channels (and the label) share one grid;
2. reorient to closest-canonical RAS (axis permutation/flips only; see
   :mod:`medseg.transforms.spatial`);
3. crop to the bounding box of voxels non-zero in any channel (``crop_to_nonzero``);
4. normalise each channel (:mod:`medseg.transforms.intensity`; the non-zero mask, voxels
   non-zero in any channel with holes filled, is computed on the cropped, reoriented array);
5. resample to ``target_spacing`` (images linear or cubic, labels nearest or one-hot
   linear), half-voxel aligned.

Both take only the plan's :class:`~medseg.plan.schema.Preprocessing` record.

``restore_to_original`` undoes 5 → 2 using the :class:`PreprocessInfo` record, returning an
array of exactly the original shape, on the original voxel grid (same affine).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from medseg.errors import GeometryMismatchError, InputError, InvalidVolumeError
from medseg.plan.schema import Preprocessing
from medseg.transforms.intensity import normalize_channel
from medseg.transforms.spatial import (
    Box,
    Reorientation,
    crop,
    nonzero_box,
    resample_labels_onehot,
    resample_to_shape,
    target_shape,
    uncrop,
)
from medseg.volume import LabelMap, Volume


@dataclass(frozen=True)
class PreprocessInfo:
    """Everything needed to map a prediction on the preprocessed grid back to the original.

    Attributes:
        original_shape: stored array shape ``(I, J, K)`` of the input volume.
        original_affine: its 4×4 RAS+ affine (rows).
        original_spacing: its spacing (mm, stored axis order).
        reorientation: stored → canonical axis map (``out_axis``) and flips.
        canonical_shape: shape after reorientation.
        crop_box: ``((lo, hi), ...)`` in canonical voxel indices (hi exclusive).
        cropped_shape: shape inside the crop box.
        canonical_spacing: spacing (mm) of the canonical axes.
        target_spacing: the plan's spacing (mm).
        resampled_shape: shape of the preprocessed arrays.
        source: the first channel's file (for messages).
    """

    original_shape: tuple[int, int, int]
    original_affine: tuple[tuple[float, ...], ...]
    original_spacing: tuple[float, float, float]
    reorientation: Reorientation
    canonical_shape: tuple[int, int, int]
    crop_box: Box
    cropped_shape: tuple[int, int, int]
    canonical_spacing: tuple[float, float, float]
    target_spacing: tuple[float, float, float]
    resampled_shape: tuple[int, int, int]
    source: str | None = None

    def preprocessed_affine(self) -> NDArray[Any]:
        """RAS+ affine (4×4) of the preprocessed grid (for saving intermediate arrays)."""
        canon = self.reorientation.affine(np.asarray(self.original_affine), self.original_shape)
        shift = np.eye(4)
        shift[:3, 3] = [lo for lo, _ in self.crop_box]
        s = np.asarray(self.cropped_shape, float) / np.asarray(self.resampled_shape, float)
        scale = np.eye(4)
        scale[:3, :3] = np.diag(s)
        scale[:3, 3] = 0.5 * s - 0.5
        return np.asarray(canon @ shift @ scale)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (round-trips through :meth:`from_dict`)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PreprocessInfo:
        def t3(x: Any) -> tuple[Any, Any, Any]:
            return (x[0], x[1], x[2])

        r = d["reorientation"]
        return cls(
            original_shape=t3([int(v) for v in d["original_shape"]]),
            original_affine=tuple(tuple(float(v) for v in row) for row in d["original_affine"]),
            original_spacing=t3([float(v) for v in d["original_spacing"]]),
            reorientation=Reorientation(
                t3([int(v) for v in r["out_axis"]]), t3([bool(v) for v in r["flip"]])
            ),
            canonical_shape=t3([int(v) for v in d["canonical_shape"]]),
            crop_box=t3([(int(lo), int(hi)) for lo, hi in d["crop_box"]]),
            cropped_shape=t3([int(v) for v in d["cropped_shape"]]),
            canonical_spacing=t3([float(v) for v in d["canonical_spacing"]]),
            target_spacing=t3([float(v) for v in d["target_spacing"]]),
            resampled_shape=t3([int(v) for v in d["resampled_shape"]]),
            source=d.get("source"),
        )


@dataclass(frozen=True)
class PreprocessedCase:
    """Output of :func:`preprocess_case`.

    Attributes:
        image: ``float32`` ``(C, X, Y, Z)``, canonical RAS axes, target spacing.
        label: integer ``(X, Y, Z)`` on the same grid, or ``None``.
        info: the record :func:`restore_to_original` needs.
    """

    image: NDArray[Any]
    label: NDArray[Any] | None
    info: PreprocessInfo


def _label_dtype(max_value: int) -> type[np.integer[Any]]:
    return np.uint8 if max_value < 256 else np.int16


def preprocess_case(
    images: Sequence[Volume], prep: Preprocessing, label: LabelMap | None = None
) -> PreprocessedCase:
    """Preprocess one case's channels (and label) exactly as training and inference expect.

    Args:
        images: one 3-D volume per channel, in ``prep.channel_names`` order, on one grid.
        prep: orientation policy, crop, normalisation, spacing and interpolation.
        label: optional label map on the same grid.

    Raises:
        GeometryMismatchError: channels or label not on one grid.
        InputError: wrong number of channels.
    """
    if len(images) != len(prep.channel_names):
        raise InputError(
            images[0].source if images else None,
            f"{len(images)} channel(s) given, the model expects {len(prep.channel_names)} "
            f"({', '.join(prep.channel_names)})",
        )
    ref = images[0]
    for v in images[1:]:
        ref.check_same_grid(v)
    if label is not None:
        ref.check_same_grid(label)
    reo = Reorientation.from_affine(ref.affine)
    # One float32 working copy, normalised in place below: the peak stays near one copy of
    # the image in float32 (plus the caller's volume), however large the scan.
    views = [reo.view(np.asarray(v.array)) for v in images]
    stack = np.empty((len(images), *views[0].shape), dtype=np.float32)
    for c, view in enumerate(views):
        stack[c] = view
    del views
    canon_shape = (int(stack.shape[1]), int(stack.shape[2]), int(stack.shape[3]))
    canon_spacing = reo.spacing(ref.spacing)
    box: Box = (
        nonzero_box(stack)
        if prep.crop_to_nonzero
        else ((0, canon_shape[0]), (0, canon_shape[1]), (0, canon_shape[2]))
    )
    stack = crop(stack, box)
    cropped_shape = (int(stack.shape[1]), int(stack.shape[2]), int(stack.shape[3]))
    nonzero = None
    if any(n.use_nonzero_mask for n in prep.normalization):
        # nnU-Net's mask: non-zero in any channel, holes filled (zero voxels inside the body
        # are tissue, not background).
        nonzero = ndimage.binary_fill_holes(np.any(stack != 0, axis=0))
    for c, n in enumerate(prep.normalization):
        normalize_channel(stack[c], n, nonzero, out=stack[c])
    del nonzero
    new_shape = target_shape(cropped_shape, canon_spacing, prep.target_spacing)
    order = 1 if prep.image_interpolation == "linear" else 3
    image = resample_to_shape(stack, new_shape, order=order).astype(np.float32, copy=False)
    del stack
    lab_out = None
    if label is not None:
        lab = crop(reo.apply(np.asarray(label.array)), box)
        mx = int(lab.max()) if lab.size else 0
        lab = lab.astype(_label_dtype(mx), copy=False)
        if prep.label_interpolation == "nearest":
            lab_out = resample_to_shape(lab, new_shape, order=0)
        else:
            values = sorted({0} | {int(v) for v in np.unique(lab)})
            lab_out = resample_labels_onehot(lab, new_shape, values)
    info = PreprocessInfo(
        original_shape=ref.shape,
        original_affine=tuple(tuple(float(x) for x in row) for row in ref.affine),
        original_spacing=ref.spacing,
        reorientation=reo,
        canonical_shape=canon_shape,
        crop_box=box,
        cropped_shape=cropped_shape,
        canonical_spacing=canon_spacing,
        target_spacing=tuple(float(s) for s in prep.target_spacing),  # type: ignore[arg-type]
        resampled_shape=new_shape,
        source=str(ref.source) if ref.source is not None else None,
    )
    return PreprocessedCase(image, lab_out, info)


def restore_to_original(
    array: NDArray[Any], info: PreprocessInfo, *, is_label: bool
) -> NDArray[Any]:
    """Map an array on the preprocessed grid back onto the original voxel grid.

    Args:
        array: ``(X, Y, Z)`` integer labels (``is_label=True``; resampled nearest) or
            ``(C, X, Y, Z)`` float class probabilities/logits (``is_label=False``; resampled
            linearly, channel 0 = background). Spatial shape must be ``info.resampled_shape``.
        info: the record from :func:`preprocess_case`.

    Returns:
        an array of shape ``info.original_shape`` (labels) or ``(C, *info.original_shape)``
        (probabilities), in the stored axis order of the original file, so that
        ``LabelMap(result, info.original_affine)`` lies exactly on the input grid. Outside the
        crop box labels are 0 and probabilities are 1 for channel 0 and 0 elsewhere.
    """
    spatial = tuple(array.shape[-3:])
    if spatial != tuple(info.resampled_shape):
        raise GeometryMismatchError(
            f"{info.source}: array spatial shape {spatial} does not match the preprocessed "
            f"shape {info.resampled_shape}"
        )
    if is_label:
        if array.ndim != 3:
            raise InvalidVolumeError(
                info.source, f"labels: expected shape (X, Y, Z), found {array.shape}"
            )
        back = resample_to_shape(array, info.cropped_shape, order=0)
        full = uncrop(back, info.crop_box, info.canonical_shape, fill=0)
    else:
        if array.ndim != 4:
            raise InvalidVolumeError(
                info.source, f"probabilities: expected shape (C, X, Y, Z), found {array.shape}"
            )
        back = resample_to_shape(np.asarray(array, dtype=np.float32), info.cropped_shape, order=1)
        fill = np.zeros(array.shape[0], dtype=np.float32)
        fill[0] = 1.0
        full = uncrop(back, info.crop_box, info.canonical_shape, fill=fill)
    return info.reorientation.invert(full)


__all__ = ["PreprocessInfo", "PreprocessedCase", "preprocess_case", "restore_to_original"]
