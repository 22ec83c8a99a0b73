"""Trained networks on whole cases: checkpoints of a model folder (:func:`model_checkpoints`),
an ensemble that segments volumes on their original grid (:class:`Predictor`, :func:`predict`)
and the inverse of the preprocessing for predictions (:func:`labels_on_original_grid`).

Preprocessing and its inverse come from :mod:`medseg.transforms.preprocessing`; several
checkpoints (e.g. the folds of a cross-validation) are ensembled by averaging probabilities;
test-time mirroring flips over the axes each network was trained to be invariant to.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from medseg.errors import ConfigError, InputError
from medseg.inference.sliding import sliding_window_probabilities
from medseg.model_folder import ModelFolder
from medseg.postprocess import Postprocessing, apply_postprocessing

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from medseg.checkpoint import Checkpoint
    from medseg.transforms.preprocessing import PreprocessInfo
    from medseg.volume import LabelMap, Volume


def labels_on_original_grid(
    probs: torch.Tensor,
    info: PreprocessInfo,
    *,
    resample_probabilities: bool = True,
    with_probabilities: bool = False,
) -> tuple[npt.NDArray[np.integer[Any]], npt.NDArray[np.float16] | None]:
    """Labels ``(I, J, K)`` on a case's original grid from class probabilities ``(K, X, Y, Z)``
    on its preprocessed grid (the inverse of :func:`preprocess_case` for predictions), and,
    with ``with_probabilities``, the probabilities there (float16; 1 for background outside
    the crop box).

    ``resample_probabilities`` (nnU-Net's order) maps the probabilities back (linear, with
    torch on the tensor's device, in slabs of bounded memory:
    :func:`medseg.transforms.resample_torch.restore_labels`) and takes the argmax there;
    ``False`` takes the argmax first and maps the labels (nearest), cheaper but blockier when
    the training spacing is much coarser than the image's. Uncropping and reorientation are
    index operations."""
    from medseg.transforms.preprocessing import restore_to_original
    from medseg.transforms.resample_torch import restore_labels
    from medseg.transforms.spatial import uncrop

    if not resample_probabilities:
        lab = probs.argmax(dim=0).cpu().numpy()
        lab = lab.astype(np.uint8 if probs.shape[0] <= 256 else np.uint16)
        labels = np.asarray(restore_to_original(lab, info, is_label=True))
        if not with_probabilities:
            return labels, None
    res = restore_labels(probs, info.cropped_shape, return_probabilities=with_probabilities)
    if resample_probabilities:
        full = uncrop(res.labels, info.crop_box, info.canonical_shape, fill=0)
        labels = np.asarray(info.reorientation.invert(full))
    half = None
    if res.probabilities is not None:
        fill = np.zeros(res.probabilities.shape[0], dtype=np.float16)
        fill[0] = 1.0
        back = uncrop(res.probabilities, info.crop_box, info.canonical_shape, fill=fill)
        half = np.asarray(info.reorientation.invert(back))
    return labels, half


def model_checkpoints(
    model_dir: str | Path, *, folds: Sequence[int | str] | None = None, checkpoint: str = "last"
) -> list[Path]:
    """The checkpoint files of a model folder written by :func:`medseg.training.train`
    (:meth:`medseg.model_folder.ModelFolder.checkpoints`).

    Args:
        model_dir: the folder holding ``fold_K/`` (or a single fold folder).
        folds: which folds (``[0, 2]``, ``["all"]``); default: every cross-validation fold
            (``fold_0``, ``fold_1``, ...) when there are any, else ``fold_all``.
        checkpoint: ``"last"`` (the final weights; the default, as nnU-Net) or ``"best"``
            (the epoch with the best validation Dice; chosen on the validation cases, so its
            validation score is optimistic; absent for ``fold_all``).

    Raises :class:`InputError` naming the folder and the missing file, :class:`ConfigError`
    for an unknown ``checkpoint``.
    """
    return ModelFolder(Path(model_dir)).checkpoints(
        None if folds is None else list(folds), checkpoint
    )


class Predictor:
    """One or more trained networks (an ensemble, e.g. the folds of a cross-validation) ready
    to segment volumes on their original grid.

    All checkpoints must share the preprocessing and the label names of their plans (each
    network keeps its own patch size). ``tta`` mirrors each network's input over the axes its
    plan's augmentation flipped (nnU-Net's test-time mirroring: 8 passes when all three axes
    were flipped), or over ``mirror_axes`` when given. ``resample_probabilities``: see
    :func:`labels_on_original_grid`. ``postprocessing`` (e.g. the model folder's choice made by
    cross-validation, or a request of :func:`medseg.postprocess.requested_postprocessing`) is
    applied to the labels on the original grid.

    ``device`` is a torch device string (``"cpu"``, ``"cuda:0"``; see
    :func:`medseg.runtime.resolve_device`) and ``amp_dtype`` the autocast dtype
    (:func:`medseg.runtime.resolve_amp`).
    ``runtime`` (``torch``, ``onnxruntime``, ``openvino`` or ``auto``) runs the networks
    (:mod:`medseg.inference.runtimes`): torch networks are converted once, here.
    """

    def __init__(
        self,
        checkpoints: Sequence[Checkpoint],
        *,
        device: str = "cpu",
        overlap: float = 0.5,
        batch_size: int = 2,
        amp_dtype: torch.dtype | None = None,
        mirror_axes: Sequence[int] | None = None,
        tta: bool = False,
        resample_probabilities: bool = True,
        postprocessing: Postprocessing | None = None,
        runtime: str = "torch",
    ) -> None:
        if not checkpoints:
            raise ConfigError("Predictor: expected at least one checkpoint, found none")
        if not 0.0 <= overlap < 1.0:
            raise ConfigError(
                f"overlap: expected a fraction in [0, 1), found {overlap}", param="overlap"
            )
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
        from medseg.inference.runtimes import build_networks

        self.runtime, self.models = build_networks(checkpoints, device, runtime)
        self.device = device
        self.overlap = overlap
        self.batch_size = batch_size
        self.amp_dtype = amp_dtype
        if mirror_axes is not None:
            self.mirror_axes = [tuple(mirror_axes)] * len(self.models)
        elif tta:
            self.mirror_axes = [p.augmentation.mirror_axes() for p in self.plans]
        else:
            self.mirror_axes = [()] * len(self.models)
        self.resample_probabilities = resample_probabilities
        self.postprocessing = postprocessing

    @property
    def label_names(self) -> dict[int, str]:
        return dict(self.plan.label_names)

    @property
    def channel_names(self) -> list[str]:
        return list(self.plan.channel_names)

    @property
    def identity(self) -> dict[str, Any]:
        """What this predictor is, for run manifests: its checkpoint files and the sha256 of
        each (computed once), and the inference settings that change its outputs."""
        if getattr(self, "_identity", None) is None:
            import os

            from medseg.io.files import sha256_file

            files = [Path(os.path.abspath(p)) for p in self.paths]
            root = Path(os.path.commonpath([str(f.parent) for f in files]))
            shas = {f.relative_to(root).as_posix(): sha256_file(f) for f in files}
            self._identity = {
                "kind": "medseg",
                "path": str(root),
                "folds": None,
                "checkpoint": None,
                "weights_sha256": shas,
                "runtime": self.runtime,
                "overlap": self.overlap,
                "mirror_axes": [list(m) for m in self.mirror_axes],
            }
        return dict(self._identity)

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
        from medseg.inference.onnx_folder import is_onnx_folder, onnx_graphs

        files: list[Path] = []
        chosen: dict[str, Postprocessing] = {}
        graphs: list[Any] = []
        for p in map(Path, paths):
            if p.is_dir() and is_onnx_folder(p):  # exported by medseg.export.export_onnx
                graphs += onnx_graphs(p, folds=folds)
            elif p.is_dir():
                files += ModelFolder(p).checkpoints(
                    None if folds is None else list(folds), checkpoint
                )
            if p.is_dir():
                pp = ModelFolder(p).load_postprocessing()
                if pp is not None:
                    chosen[str(p)] = pp
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
        return cls([*graphs, *(load_checkpoint(f, with_training=False) for f in files)], **kwargs)

    def probabilities(
        self, image: torch.Tensor, guide: npt.NDArray[Any] | None = None
    ) -> torch.Tensor:
        """Mean softmax probabilities ``(K, X, Y, Z)`` over the ensemble for a preprocessed
        image ``(C, X, Y, Z)`` (on the predictor's device).

        A cascade's second stage (``plan.roi``) predicts only around the foreground of
        ``guide`` (a label map on the same preprocessed grid: the first stage's prediction),
        background elsewhere (:func:`medseg.inference.roi.roi_probabilities`)."""
        if self.plan.roi is None:
            if guide is not None:
                raise ConfigError("guide: only a cascade's second stage (plan.roi) takes one")
            return self._window_probabilities(image)
        if guide is None:
            raise ConfigError(
                f"{self.paths[0]}: a cascade's second stage predicts inside the first stage's "
                "box; load it through its cascade folder (medseg.load_model)"
            )
        from medseg.inference.roi import roi_probabilities

        patch = [max(int(p.patch_size[i]) for p in self.plans) for i in range(3)]
        return roi_probabilities(
            self._window_probabilities,
            image,
            guide,
            self.plan.roi,
            self.plan.preprocessing.target_spacing,
            patch,
            self.plan.num_classes,
        )

    def _window_probabilities(self, image: torch.Tensor) -> torch.Tensor:
        total: torch.Tensor | None = None
        for m, plan, mirrors, path in zip(
            self.models, self.plans, self.mirror_axes, self.paths, strict=True
        ):
            p = sliding_window_probabilities(
                m,
                image,
                plan.patch_size,
                overlap=self.overlap,
                batch_size=self.batch_size,
                device=self.device,
                amp_dtype=self.amp_dtype,
                mirror_axes=mirrors,
                keep_on_device=True,
                source=path,
            )
            total = p if total is None else total + p.to(total.device)
        assert total is not None
        return total / len(self.models)

    def predict(self, images: Sequence[Volume]) -> LabelMap:
        """Segment one case given its channels (original grid, order of the plan's channel
        names); returns a :class:`LabelMap` on the grid of ``images[0]`` with the plan's label
        names."""
        return self.predict_case(images)[0]

    def predict_case(
        self,
        images: Sequence[Volume],
        *,
        with_probabilities: bool = False,
        guide: LabelMap | None = None,
    ) -> tuple[LabelMap, npt.NDArray[np.float16] | None]:
        """:meth:`predict`, and with ``with_probabilities`` the class probabilities
        ``(K, I, J, K)`` float16 on the original grid (before post-processing). ``guide``: the
        first stage's label map on the grid of ``images[0]``, for a cascade's second stage
        (see :meth:`probabilities`)."""
        import torch

        from medseg.transforms.preprocessing import preprocess_case
        from medseg.volume import LabelMap

        pre = preprocess_case(list(images), self.plan.preprocessing, label=guide)
        probs = self.probabilities(
            torch.from_numpy(np.ascontiguousarray(pre.image)),
            None if guide is None else np.asarray(pre.label),
        )
        restored, back = labels_on_original_grid(
            probs,
            pre.info,
            resample_probabilities=self.resample_probabilities,
            with_probabilities=with_probabilities,
        )
        if self.postprocessing is not None:
            voxel_ml = images[0].voxel_volume_ml
            restored = apply_postprocessing(restored, self.postprocessing, voxel_ml)
        ref = images[0]
        lm = LabelMap(np.asarray(restored), ref.affine, None, ref.meta, self.label_names)
        return lm, back


def predict(
    checkpoints: Sequence[str | Path] | str | Path, images: Sequence[Volume], **kwargs: Any
) -> LabelMap:
    """Segment one case with a checkpoint, a model folder, or several (ensembled). Keyword
    arguments go to :class:`Predictor` (``device``, ``overlap``, ``mirror_axes``, ...)."""
    paths = [checkpoints] if isinstance(checkpoints, (str, Path)) else list(checkpoints)
    return Predictor.from_paths(paths, **kwargs).predict(images)


__all__ = [
    "Predictor",
    "labels_on_original_grid",
    "model_checkpoints",
    "predict",
]
