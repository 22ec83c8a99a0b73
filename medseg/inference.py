"""Sliding-window inference with Gaussian blending (nnU-Net style), reused by validation during
training and by batch prediction.

Layers, from pure to convenient:

* :func:`compute_gaussian`, :func:`compute_steps` — small pure functions (NumPy).
* :func:`sliding_window_probabilities` — a network and a preprocessed image tensor
  ``(C, X, Y, Z)`` → softmax probabilities ``(K, X, Y, Z)`` (float32, CPU).
* :func:`predict_array` — the same, argmax → label array ``(X, Y, Z)``.
* :class:`Predictor` / :func:`predict` — checkpoint(s) + original :class:`~medseg.volume.Volume`
  channel(s) → :class:`~medseg.volume.LabelMap` on the original grid (preprocessing and its
  inverse from :mod:`medseg.transforms.preprocessing`; several checkpoints are ensembled by
  averaging probabilities).

Axis order is always the :class:`~medseg.volume.Volume` array order (voxel index ``i, j, k``).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from medseg.errors import InputError
from medseg.postprocess import (
    POSTPROCESSING_FILE,
    Postprocessing,
    apply_postprocessing,
    keep_largest_component,
    load_postprocessing,
)

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from medseg.checkpoint import Checkpoint
    from medseg.transforms.preprocessing import PreprocessInfo
    from medseg.volume import LabelMap, Volume


def compute_gaussian(
    patch_size: Sequence[int], sigma_scale: float = 1.0 / 8
) -> npt.NDArray[np.float32]:
    """Gaussian importance map of shape ``patch_size``, peak 1 at the centre, sigma
    ``sigma_scale * patch_size`` voxels per axis, with no zeros (min clipped to the smallest
    positive value) so every voxel of a window has a positive weight."""
    from scipy.ndimage import gaussian_filter

    size = tuple(int(p) for p in patch_size)
    tmp = np.zeros(size, dtype=np.float64)
    tmp[tuple(s // 2 for s in size)] = 1.0
    g = gaussian_filter(tmp, sigma=[s * sigma_scale for s in size], mode="constant", cval=0.0)
    g = g / g.max()
    pos = g[g > 0]
    g[g == 0] = pos.min()
    return g.astype(np.float32)


def compute_steps(
    image_size: Sequence[int], patch_size: Sequence[int], overlap: float = 0.5
) -> list[list[int]]:
    """Window start indices per axis so that windows of ``patch_size`` cover ``image_size``
    with at least ``overlap`` (fraction, 0 ≤ overlap < 1) overlap, evenly spread, first at 0 and
    last ending at the image border. Requires ``image_size >= patch_size`` on every axis."""
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), found {overlap}")
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


def _forward(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = model(x)
    if isinstance(out, (list, tuple)):
        out = out[0]
    if out.ndim == x.ndim + 1:  # deep-supervision stack (B, heads, K, ...)
        out = out[:, 0]
    return out


def sliding_window_probabilities(
    model: torch.nn.Module,
    image: torch.Tensor,
    patch_size: Sequence[int],
    *,
    overlap: float = 0.5,
    batch_size: int = 1,
    device: str | torch.device = "cpu",
    amp_dtype: torch.dtype | None = None,
    mirror_axes: Sequence[int] = (),
    sigma_scale: float = 1.0 / 8,
) -> torch.Tensor:
    """Softmax probabilities ``(K, X, Y, Z)`` (float32, CPU) for a preprocessed image
    ``(C, X, Y, Z)``.

    Windows of ``patch_size`` voxels overlap by ``overlap`` and are blended with a Gaussian
    importance map (:func:`compute_gaussian`). An image smaller than the patch on some axis is
    zero-padded symmetrically (zero = the normalised mean intensity) and cropped back.
    ``mirror_axes`` (subset of 0, 1, 2) adds test-time mirroring, averaged in probability.
    The model is put in ``eval`` mode; no gradients are kept.
    """
    import torch
    from torch.nn import functional

    if image.ndim != 4:
        raise ValueError(f"expected an image tensor (C, X, Y, Z), found shape {tuple(image.shape)}")
    patch = [int(p) for p in patch_size]
    size = [int(s) for s in image.shape[1:]]
    pad_lo = [max(p - s, 0) // 2 for s, p in zip(size, patch, strict=True)]
    pad_hi = [max(p - s, 0) - lo for s, p, lo in zip(size, patch, pad_lo, strict=True)]
    if any(pad_lo) or any(pad_hi):
        pads: list[int] = []
        for a in (2, 1, 0):
            pads += [pad_lo[a], pad_hi[a]]
        image = functional.pad(image, pads, mode="constant", value=0.0)
    padded = [int(s) for s in image.shape[1:]]
    steps = compute_steps(padded, patch, overlap)
    dev = torch.device(device)
    gauss = torch.from_numpy(compute_gaussian(patch, sigma_scale)).to(dev)
    model.eval()
    acc: torch.Tensor | None = None
    weight = torch.zeros(padded, dtype=torch.float32, device=dev)
    starts = list(itertools.product(*steps))
    img = image.to(dev, dtype=torch.float32)
    mirrors = [()] + [
        c for r in range(1, len(mirror_axes) + 1) for c in itertools.combinations(mirror_axes, r)
    ]
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
                    logits = _forward(model, xin)
                p = torch.softmax(logits.float(), dim=1)
                if dims:
                    p = torch.flip(p, dims)
                prob = p if prob is None else prob + p
            assert prob is not None
            prob = prob / len(mirrors)
            if acc is None:
                acc = torch.zeros((prob.shape[1], *padded), dtype=torch.float32, device=dev)
            for i, s in enumerate(chunk):
                sl = (
                    slice(s[0], s[0] + patch[0]),
                    slice(s[1], s[1] + patch[1]),
                    slice(s[2], s[2] + patch[2]),
                )
                acc[(slice(None), *sl)] += prob[i] * gauss
                weight[sl] += gauss
        assert acc is not None
        acc /= weight
    crop = tuple(slice(lo, lo + s) for lo, s in zip(pad_lo, size, strict=True))
    return acc[(slice(None), *crop)].to("cpu")


def predict_array(
    model: torch.nn.Module, image: torch.Tensor, patch_size: Sequence[int], **kwargs: Any
) -> npt.NDArray[np.uint8]:
    """Label array ``(X, Y, Z)`` (argmax of :func:`sliding_window_probabilities`, same
    keyword arguments) for a preprocessed image ``(C, X, Y, Z)``."""
    probs = sliding_window_probabilities(model, image, patch_size, **kwargs)
    lab = probs.argmax(dim=0).numpy()
    return lab.astype(np.uint8 if probs.shape[0] <= 256 else np.int32)


def labels_on_original_grid(
    probs: torch.Tensor, info: PreprocessInfo, *, resample_probabilities: bool = True
) -> npt.NDArray[np.integer[Any]]:
    """Labels ``(I, J, K)`` on a case's original grid from class probabilities ``(K, X, Y, Z)``
    on its preprocessed grid (the inverse of :func:`preprocess_case` for predictions).

    ``resample_probabilities`` (nnU-Net's order) maps the probabilities back (linear) and
    takes the argmax there; ``False`` takes the argmax first and maps the labels (nearest),
    cheaper but blockier when the training spacing is much coarser than the image's."""
    from medseg.transforms.preprocessing import restore_to_original

    dtype = np.uint8 if probs.shape[0] <= 256 else np.int32
    if resample_probabilities:
        back = restore_to_original(probs.numpy(), info, is_label=False)
        return np.argmax(back, axis=0).astype(dtype)
    lab = probs.argmax(dim=0).numpy().astype(dtype)
    return np.asarray(restore_to_original(lab, info, is_label=True))


CHECKPOINTS = {"last": "checkpoint_last.pt", "best": "checkpoint_best.pt"}


def model_checkpoints(
    model_dir: str | Path, *, folds: Sequence[int | str] | None = None, checkpoint: str = "last"
) -> list[Path]:
    """The checkpoint files of a model folder written by :func:`medseg.training.train`.

    Args:
        model_dir: the folder holding ``fold_K/`` (or a single fold folder).
        folds: which folds (``[0, 2]``, ``["all"]``); default: every cross-validation fold
            (``fold_0``, ``fold_1``, ...) when there are any, else ``fold_all``.
        checkpoint: ``"last"`` (the final weights; the default, as nnU-Net) or ``"best"``
            (the epoch with the best validation Dice; chosen on the validation cases, so its
            validation score is optimistic; absent for ``fold_all``).

    Raises :class:`InputError` naming the folder and the missing file.
    """
    root = Path(model_dir)
    if checkpoint not in CHECKPOINTS:
        raise InputError(root, f"--checkpoint: expected 'last' or 'best', found {checkpoint!r}")
    name = CHECKPOINTS[checkpoint]
    if (root / name).is_file() and folds is None:
        return [root / name]
    if folds is None:
        cv = sorted(
            (d for d in root.glob("fold_*") if d.is_dir() and d.name[5:].isdigit()),
            key=lambda d: int(d.name[5:]),
        )
        dirs = cv or ([root / "fold_all"] if (root / "fold_all").is_dir() else [])
        if not dirs:
            raise InputError(root, f"expected fold_*/{name} in the model folder, found none")
    else:
        dirs = [root / f"fold_{f}" for f in folds]
    missing = [d / name for d in dirs if not (d / name).is_file()]
    if missing:
        raise InputError(missing[0], f"{checkpoint} checkpoint not found in the model folder")
    return [d / name for d in dirs]


class Predictor:
    """One or more trained networks (an ensemble, e.g. the folds of a cross-validation) ready
    to segment volumes on their original grid.

    All checkpoints must share the preprocessing and the label names of their plans (each
    network keeps its own patch size). ``resample_probabilities``: see
    :func:`labels_on_original_grid`. ``largest_component`` keeps only the largest connected
    component of each label (:func:`medseg.postprocess.keep_largest_component`; off by
    default, as it is wrong
    for structures with several parts). ``postprocessing`` (e.g. the model folder's choice made
    by cross-validation) is applied to the labels on the original grid.
    """

    def __init__(
        self,
        checkpoints: Sequence[Checkpoint],
        *,
        device: str = "cpu",
        overlap: float = 0.5,
        batch_size: int = 1,
        amp_dtype: torch.dtype | None = None,
        mirror_axes: Sequence[int] = (),
        resample_probabilities: bool = True,
        largest_component: bool = False,
        postprocessing: Postprocessing | None = None,
    ) -> None:
        if not checkpoints:
            raise ValueError("Predictor needs at least one checkpoint")
        first = checkpoints[0].meta.plan
        for c in checkpoints[1:]:
            plan = c.meta.plan
            for what, a, b in (
                ("preprocessing", plan.preprocessing, first.preprocessing),
                ("label names", plan.label_names, first.label_names),
            ):
                if a != b:
                    raise InputError(
                        c.path,
                        f"{what} differ from {checkpoints[0].path}'s; cannot ensemble "
                        "networks trained on differently preprocessed data or other labels",
                    )
        self.plan = first
        self.plans = [c.meta.plan for c in checkpoints]
        self.paths = [c.path for c in checkpoints]
        self.models = [c.build_model(device) for c in checkpoints]
        self.device = device
        self.overlap = overlap
        self.batch_size = batch_size
        self.amp_dtype = amp_dtype
        self.mirror_axes = tuple(mirror_axes)
        self.resample_probabilities = resample_probabilities
        self.largest_component = largest_component
        self.postprocessing = postprocessing

    @property
    def label_names(self) -> dict[int, str]:
        return dict(self.plan.label_names)

    @classmethod
    def from_paths(
        cls,
        paths: Sequence[str | Path],
        *,
        folds: Sequence[int | str] | None = None,
        checkpoint: str = "last",
        **kwargs: Any,
    ) -> Predictor:
        """Load checkpoints: files, or model folders (every fold of each, see
        :func:`model_checkpoints`). A model folder's post-processing choice
        (``postprocessing.json``, written after cross-validation) is applied unless
        ``postprocessing`` is given (``Postprocessing()`` for none). Keyword arguments go to
        :class:`Predictor`."""
        from medseg.checkpoint import load_checkpoint

        files: list[Path] = []
        chosen: dict[str, Postprocessing] = {}
        for p in map(Path, paths):
            if p.is_dir():
                files += model_checkpoints(p, folds=folds, checkpoint=checkpoint)
                if (p / POSTPROCESSING_FILE).is_file():
                    chosen[str(p)] = load_postprocessing(p / POSTPROCESSING_FILE)
            else:
                files.append(p)
        if "postprocessing" not in kwargs and chosen:
            distinct = {
                pp.model_dump_json(exclude={"trials", "decided_by"}) for pp in chosen.values()
            }
            if len(distinct) > 1:
                raise InputError(
                    next(iter(chosen)),
                    "the model folders chose different post-processing; pass postprocessing=",
                )
            kwargs["postprocessing"] = next(iter(chosen.values()))
        return cls([load_checkpoint(f, with_training=False) for f in files], **kwargs)

    def probabilities(self, image: torch.Tensor) -> torch.Tensor:
        """Mean softmax probabilities ``(K, X, Y, Z)`` over the ensemble for a preprocessed
        image ``(C, X, Y, Z)``."""
        total: torch.Tensor | None = None
        for m, plan in zip(self.models, self.plans, strict=True):
            p = sliding_window_probabilities(
                m,
                image,
                plan.patch_size,
                overlap=self.overlap,
                batch_size=self.batch_size,
                device=self.device,
                amp_dtype=self.amp_dtype,
                mirror_axes=self.mirror_axes,
            )
            total = p if total is None else total + p
        assert total is not None
        return total / len(self.models)

    def predict(self, images: Sequence[Volume]) -> LabelMap:
        """Segment one case given its channels (original grid, order of the plan's channel
        names); returns a :class:`LabelMap` on the grid of ``images[0]`` with the plan's label
        names."""
        import torch

        from medseg.transforms.preprocessing import preprocess_case
        from medseg.volume import LabelMap

        pre = preprocess_case(list(images), self.plan.preprocessing)
        probs = self.probabilities(torch.from_numpy(np.ascontiguousarray(pre.image)))
        restored = labels_on_original_grid(
            probs, pre.info, resample_probabilities=self.resample_probabilities
        )
        if self.postprocessing is not None:
            restored = apply_postprocessing(
                restored, self.postprocessing, images[0].voxel_volume_ml
            )
        if self.largest_component:
            restored = keep_largest_component(restored)
        ref = images[0]
        return LabelMap(np.asarray(restored), ref.affine, None, ref.meta, self.label_names)


def predict(
    checkpoints: Sequence[str | Path] | str | Path, images: Sequence[Volume], **kwargs: Any
) -> LabelMap:
    """Segment one case with a checkpoint, a model folder, or several (ensembled). Keyword
    arguments go to :class:`Predictor` (``device``, ``overlap``, ``mirror_axes``, ...)."""
    paths = [checkpoints] if isinstance(checkpoints, (str, Path)) else list(checkpoints)
    return Predictor.from_paths(paths, **kwargs).predict(images)


__all__ = [
    "Predictor",
    "compute_gaussian",
    "compute_steps",
    "labels_on_original_grid",
    "model_checkpoints",
    "predict",
    "predict_array",
    "sliding_window_probabilities",
]
