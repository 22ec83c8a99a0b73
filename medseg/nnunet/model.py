"""An nnU-Net v2 trained model folder as a medseg segmentation model
(:func:`load_nnunet_model`): the same interface as :class:`medseg.inference.Predictor`
(``label_names``, ``channel_names``, ``predict_case``, ``predict``, ``identity``), with
nnU-Net's own prediction reproduced from the folder's files (see
:mod:`medseg.nnunet.preprocess`, :mod:`medseg.nnunet.sliding`, :mod:`medseg.nnunet.labels`).

Axis order at the edge: medseg's volumes are ``(I, J, K)``; nnU-Net reads files with
SimpleITK, whose arrays are ``(K, J, I)`` with the spacing reversed, so the arrays are
transposed on the way in and back on the way out, and the prediction lies on the grid of the
first channel (same shape and affine).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from medseg.errors import ConfigError, InputError
from medseg.io.files import sha256_file
from medseg.nnunet.checkpoint import NnunetTraining, load_nnunet_checkpoint
from medseg.nnunet.folder import (
    NnunetFolder,
    open_nnunet_folder,
    read_postprocessing_json,
    resolve_configuration,
)
from medseg.nnunet.labels import apply_nnunet_postprocessing, label_scheme
from medseg.nnunet.network import architecture, build_network
from medseg.nnunet.preprocess import SCHEMES, Resampling, preprocess, restore
from medseg.nnunet.sliding import sliding_window_logits
from medseg.postprocess import Postprocessing, apply_postprocessing

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from medseg.volume import LabelMap, Volume

#: Image readers whose arrays are the file's voxels with the axes reversed (SimpleITK's).
READERS = ("SimpleITKIO", "NibabelIO")


class NnunetModel:
    """The folds of an nnU-Net v2 model folder, ready to segment volumes on their grid.

    Args:
        folder: the opened folder (:func:`medseg.nnunet.folder.open_nnunet_folder`).
        device: ``cpu`` or ``cuda[:N]``; ``amp_dtype``: autocast dtype on a GPU (or ``None``).
        tta: nnU-Net's test-time mirroring over the checkpoint's
            ``inference_allowed_mirroring_axes``.
        overlap: window overlap (nnU-Net's ``step_size`` is ``1 - overlap``; 0.5 as nnU-Net).
        batch_size: windows per forward pass.
        postprocessing: medseg post-processing applied after the folder's
            ``postprocessing.json``; when given (even empty), the folder's file is not applied.
        networks: the folds' networks, already built (one per ``folder.folds``; e.g. ONNX
            graphs run by ONNX Runtime, :mod:`medseg.inference.nnunet_onnx`), with
            ``training``; default: built from the folder's checkpoints (with torch).
        training: how the given ``networks`` were trained (configuration, trainer, mirroring
            axes); only with ``networks``.
    """

    def __init__(
        self,
        folder: NnunetFolder,
        *,
        networks: Sequence[torch.nn.Module] | None = None,
        training: NnunetTraining | None = None,
        device: str = "cpu",
        amp_dtype: torch.dtype | None = None,
        tta: bool = False,
        overlap: float = 0.5,
        batch_size: int = 1,
        postprocessing: Postprocessing | None = None,
    ) -> None:
        if not 0.0 <= overlap < 1.0:
            raise ConfigError(f"overlap: expected a fraction in [0, 1), found {overlap}")
        self.folder = folder
        plans_path = folder.root / "plans.json"
        cks = []
        if networks is None:
            cks = [load_nnunet_checkpoint(p) for p in folder.checkpoints]
            names = {c.configuration for c in cks}
            if len(names) != 1:
                raise InputError(
                    folder.root, f"the folds were trained on different configurations {names}"
                )
            training = cks[0].training
        elif training is None or len(networks) != len(folder.folds):
            raise ValueError("networks: expected one per fold of the folder, with training")
        self.training = training
        self.configuration_name = training.configuration
        cfg = resolve_configuration(folder.plans, self.configuration_name, plans_path)
        if cfg.get("previous_stage"):
            raise InputError(
                folder.root,
                f"{self.configuration_name} is a cascade stage (it needs the prediction of "
                f"{cfg['previous_stage']}); medseg does not run nnU-Net cascades",
            )
        if len(cfg.get("patch_size", [])) != 3:
            raise InputError(plans_path, f"{self.configuration_name}: only 3-D configurations run")
        reader = folder.plans.get("image_reader_writer", "SimpleITKIO")
        if reader not in READERS:
            raise InputError(
                plans_path, f"image_reader_writer: expected one of {READERS}, found {reader!r}"
            )
        self.config = cfg
        self.labels = label_scheme(folder.dataset, folder.root / "dataset.json")
        ch = folder.dataset.get("channel_names", folder.dataset.get("modality"))
        if not isinstance(ch, dict) or not ch:
            raise InputError(folder.root / "dataset.json", "expected channel_names")
        self._channels = [str(ch[k]) for k in sorted(ch, key=int)]
        schemes = list(cfg.get("normalization_schemes", []))
        if len(schemes) != len(self._channels) or any(s not in SCHEMES for s in schemes):
            raise InputError(
                plans_path,
                f"normalization_schemes: expected one of {SCHEMES} per channel, found {schemes}",
            )
        self.schemes = schemes
        self.use_mask = [bool(u) for u in cfg["use_mask_for_norm"]]
        self.intensity_props = folder.plans.get(
            "foreground_intensity_properties_per_channel",
            folder.plans.get("foreground_intensity_properties_by_modality", {}),
        )
        self.transpose_forward = [int(a) for a in folder.plans["transpose_forward"]]
        self.transpose_backward = [int(a) for a in folder.plans["transpose_backward"]]
        self.data_resampling = Resampling.from_plans(cfg, "resampling_fn_data", plans_path)
        self.logit_resampling = Resampling.from_plans(
            cfg, "resampling_fn_probabilities", plans_path
        )
        self.models = [net.to(device).eval() for net in networks or []]
        for c in cks:
            arch = architecture(cfg, plans_path)
            net = build_network(arch, len(self._channels), self.labels.n_outputs, plans_path)
            try:
                net.load_state_dict(c.weights)
            except RuntimeError as exc:
                raise InputError(c.path, f"weights do not fit the plans' network: {exc}") from None
            self.models.append(net.to(device).eval())
        self.trainer_name = training.trainer_name
        self.mirror_axes = training.mirror_axes if tta else None
        self.tta = tta
        self.device = device
        self.amp_dtype = amp_dtype
        self.step_size = 1.0 - overlap
        self.batch_size = batch_size
        self.nnunet_postprocessing: list[tuple[str, Any]] = []
        if postprocessing is None and folder.postprocessing_file is not None:
            self.nnunet_postprocessing = read_postprocessing_json(folder.postprocessing_file)
        self.postprocessing = postprocessing

    @property
    def label_names(self) -> dict[int, str]:
        return dict(self.labels.names)

    @property
    def channel_names(self) -> list[str]:
        return list(self._channels)

    @property
    def identity(self) -> dict[str, Any]:
        """JSON-able description: kind, path, folds, checkpoint, configuration, trainer and
        the SHA-256 of each checkpoint file (relative to the folder)."""
        return {
            "kind": "nnunet",
            "path": str(self.folder.root),
            "folds": list(self.folder.folds),
            "checkpoint": self.folder.checkpoint,
            "configuration": self.configuration_name,
            "trainer": self.trainer_name,
            "runtime": "torch",
            "weights_sha256": {
                str(p.relative_to(self.folder.root)): sha256_file(p)
                for p in self.folder.checkpoints
            },
        }

    def logits(self, data: npt.NDArray[np.float32]) -> torch.Tensor:
        """Mean logits ``(K, X, Y, Z)`` of the folds over a preprocessed image ``(C, X, Y, Z)``
        (nnU-Net's axis order)."""
        import torch

        x = torch.from_numpy(np.ascontiguousarray(data))
        total: torch.Tensor | None = None
        for net in self.models:
            out = sliding_window_logits(
                net,
                x,
                self.config["patch_size"],
                mirror_axes=self.mirror_axes,
                step_size=self.step_size,
                batch_size=self.batch_size,
                device=self.device,
                amp_dtype=self.amp_dtype,
            )
            total = out if total is None else total + out
        assert total is not None
        return total / len(self.models) if len(self.models) > 1 else total

    def predict_case(
        self, images: Sequence[Volume], *, with_probabilities: bool = False
    ) -> tuple[LabelMap, npt.NDArray[np.float16] | None]:
        """Segment one case given its channels (order of :attr:`channel_names`); returns a
        :class:`LabelMap` on the grid of ``images[0]`` with the model's label names, and with
        ``with_probabilities`` the probabilities ``(K, I, J, K)`` float16 on that grid (softmax
        per label, or sigmoid per region; before post-processing)."""
        from medseg.volume import LabelMap

        if len(images) != len(self._channels):
            raise InputError(
                images[0].source if images else None,
                f"expected {len(self._channels)} channel(s) {self._channels}, found {len(images)}",
            )
        ref = images[0]
        for v in images[1:]:
            ref.check_same_grid(v)
        data = np.stack([np.asarray(v.array, dtype=np.float32).transpose(2, 1, 0) for v in images])
        spacing = list(ref.spacing)[::-1]
        try:
            pre, info = preprocess(
                data,
                spacing,
                transpose_forward=self.transpose_forward,
                target_spacing=self.config["spacing"],
                schemes=self.schemes,
                use_mask=self.use_mask,
                intensity_props=self.intensity_props,
                resampling=self.data_resampling,
            )
        except InputError as exc:
            raise InputError(ref.source, exc.problem) from None
        logits = self.logits(pre)
        labels, probs = restore(
            logits,
            info,
            self.config["spacing"],
            self.logit_resampling,
            regions_class_order=self.labels.regions_class_order,
            transpose_backward=self.transpose_backward,
            with_probabilities=with_probabilities,
        )
        out = np.ascontiguousarray(labels.transpose(2, 1, 0))
        if self.nnunet_postprocessing:
            out = apply_nnunet_postprocessing(out, self.nnunet_postprocessing)
        if self.postprocessing is not None:
            out = apply_postprocessing(out, self.postprocessing, ref.voxel_volume_ml)
        back = None if probs is None else np.ascontiguousarray(probs.transpose(0, 3, 2, 1))
        return LabelMap(out, ref.affine, None, ref.meta, self.label_names), back

    def predict(self, images: Sequence[Volume]) -> LabelMap:
        """Segment one case (see :meth:`predict_case`)."""
        return self.predict_case(images)[0]


def load_nnunet_model(
    path: str | Path,
    *,
    folds: Sequence[int | str] | None = None,
    checkpoint: str = "final",
    **options: Any,
) -> NnunetModel:
    """Load an nnU-Net v2 trained model folder (``TRAINER__PLANS__CONFIGURATION``).

    Args:
        path: the folder (``plans.json``, ``dataset.json``, ``fold_K/checkpoint_*.pth``).
        folds: folds to ensemble (default: every ``fold_K`` with the checkpoint).
        checkpoint: ``final`` (``last`` is a synonym) or ``best``.
        options: :class:`NnunetModel`'s keywords (``device``, ``amp_dtype``, ``tta``,
            ``overlap``, ``batch_size``, ``postprocessing``).
    """
    return NnunetModel(open_nnunet_folder(path, folds=folds, checkpoint=checkpoint), **options)


__all__ = ["NnunetModel", "load_nnunet_model"]
