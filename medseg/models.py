"""Network construction: MONAI's ``DynUNet`` (nnU-Net-style, the default), ``UNet`` and
``SegResNet``, built from the plan's :class:`~medseg.plan.schema.NetworkSpec` record.

Tensor conventions (the same in training and inference): input ``(B, C, X, Y, Z)`` float32 in
the array axis order of :class:`~medseg.volume.Volume` (voxel index order ``i, j, k``), output
logits ``(B, K, X, Y, Z)`` with ``K`` = number of labels including background. With deep
supervision a ``DynUNet`` in training mode returns ``(B, 1 + H, K, X, Y, Z)`` (full-resolution
head first, the ``H`` lower-resolution heads upsampled to full size, as MONAI does); in
evaluation mode it always returns ``(B, K, X, Y, Z)``.

torch and MONAI are imported lazily, inside :func:`build_network`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from medseg.errors import ConfigError
from medseg.plan.schema import ARCHITECTURES, NetworkSpec

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from medseg.plan.schema import Plan


def build_model(plan: Plan) -> torch.nn.Module:
    """The network a plan describes: ``plan.network`` with the plan's input channels and its
    number of classes (labels including background)."""
    return build_network(plan.network, len(plan.channel_names), plan.num_classes)


def build_network(spec: NetworkSpec, in_channels: int, out_channels: int) -> torch.nn.Module:
    """Instantiate the MONAI network described by ``spec`` (on CPU, float32) for
    ``in_channels`` input channels and ``out_channels`` classes (background included)."""
    if in_channels < 1 or out_channels < 2:
        raise ConfigError(
            f"network: expected >= 1 input channel and >= 2 classes, found {in_channels} and "
            f"{out_channels}"
        )
    if spec.architecture == "dynunet":
        from monai.networks.nets import DynUNet

        return DynUNet(
            spatial_dims=3,
            in_channels=in_channels,
            out_channels=out_channels,
            kernel_size=spec.kernel_sizes,
            strides=spec.strides,
            upsample_kernel_size=spec.strides[1:],
            filters=spec.filters,
            norm_name=(spec.norm, {"affine": True}),
            act_name=("leakyrelu", {"inplace": True, "negative_slope": 0.01}),
            dropout=spec.dropout if spec.dropout > 0 else None,
            deep_supervision=spec.deep_supervision,
            deep_supr_num=spec.deep_supr_num if spec.deep_supervision else 1,
            res_block=False,
        )
    if spec.architecture == "unet":
        from monai.networks.nets import UNet

        # MONAI accepts one stride per axis at run time (its annotation says int)
        unet_strides: list[Any] = [tuple(int(v) for v in s) for s in spec.strides[1:]]
        return UNet(
            spatial_dims=3,
            in_channels=in_channels,
            out_channels=out_channels,
            channels=spec.filters,
            strides=unet_strides,
            num_res_units=2,
            norm=spec.norm,
            dropout=spec.dropout,
        )
    if spec.architecture == "segresnet":
        from monai.networks.nets import SegResNet

        depth = len(spec.filters)
        return SegResNet(
            spatial_dims=3,
            init_filters=spec.filters[0],
            in_channels=in_channels,
            out_channels=out_channels,
            blocks_down=tuple([1, 2, 2, 4, 4, 4][:depth]),
            blocks_up=tuple([1] * (depth - 1)),
            dropout_prob=spec.dropout if spec.dropout > 0 else None,
            norm=spec.norm,
        )
    raise ConfigError(  # pragma: no cover - Literal guards this
        f"network.architecture: expected one of {ARCHITECTURES}, found {spec.architecture!r}"
    )


def count_parameters(model: torch.nn.Module) -> int:
    """Number of trainable parameters."""
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad))


__all__ = ["build_model", "build_network", "count_parameters"]
