"""Network construction: MONAI's ``DynUNet`` (nnU-Net-style, the default), ``UNet`` and
``SegResNet``, built from a plain :class:`NetworkSpec` record.

Tensor conventions (the same in training and inference): input ``(B, C, X, Y, Z)`` float32 in
the array axis order of :class:`~medseg.volume.Volume` (voxel index order ``i, j, k``), output
logits ``(B, K, X, Y, Z)`` with ``K`` = number of labels including background. With deep
supervision a ``DynUNet`` in training mode returns ``(B, 1 + H, K, X, Y, Z)`` (full-resolution
head first, the ``H`` lower-resolution heads upsampled to full size, as MONAI does); in
evaluation mode it always returns ``(B, K, X, Y, Z)``.

torch and MONAI are imported lazily, inside :func:`build_network`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from medseg.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    import torch

Architecture = Literal["dynunet", "unet", "segresnet"]
ARCHITECTURES: tuple[str, ...] = ("dynunet", "unet", "segresnet")


class NetworkSpec(BaseModel):
    """Everything needed to rebuild a network (stored in every checkpoint).

    ``kernel_sizes`` and ``strides`` have one entry per resolution stage (the first stride is
    usually ``[1, 1, 1]``), each a 3-vector in array axis order; ``filters`` one channel count
    per stage. ``UNet`` uses ``filters`` and ``strides[1:]``; ``SegResNet`` uses
    ``filters[0]`` as its initial width and ``len(filters)`` as its depth.
    """

    model_config = ConfigDict(extra="forbid")

    architecture: Architecture = "dynunet"
    in_channels: int = Field(ge=1)
    out_channels: int = Field(ge=2, description="labels including background")
    kernel_sizes: list[list[int]]
    strides: list[list[int]]
    filters: list[int]
    deep_supervision: bool = True
    deep_supr_num: int = Field(default=2, ge=1)
    norm: Literal["instance", "batch"] = "instance"
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _check_stages(self) -> NetworkSpec:
        n = len(self.strides)
        if n < 2:
            raise ValueError(f"need at least 2 resolution stages, found {n} strides")
        if len(self.kernel_sizes) != n or len(self.filters) != n:
            raise ValueError(
                f"kernel_sizes ({len(self.kernel_sizes)}), strides ({n}) and filters "
                f"({len(self.filters)}) must have one entry per stage"
            )
        for name, vecs in (("kernel_sizes", self.kernel_sizes), ("strides", self.strides)):
            for v in vecs:
                if len(v) != 3 or any(int(x) < 1 for x in v):
                    raise ValueError(f"{name}: each entry must be 3 positive ints, found {v}")
        if self.deep_supervision and self.deep_supr_num > n - 2:
            # MONAI requires deep_supr_num < number of upsampling stages
            self.deep_supr_num = max(1, n - 2)
            if n < 3:
                self.deep_supervision = False
        return self

    def divisor(self) -> tuple[int, int, int]:
        """Product of strides per axis: patch sizes must be multiples of it."""
        d = [1, 1, 1]
        for s in self.strides:
            for a in range(3):
                d[a] *= int(s[a])
        return (d[0], d[1], d[2])

    def deep_supervision_heads(self) -> int:
        """Number of extra (lower-resolution) output heads in training mode."""
        return self.deep_supr_num if self.architecture == "dynunet" and self.deep_supervision else 0


def network_spec_from_plan(
    plan: Any, *, architecture: Architecture = "dynunet", deep_supervision: bool = True
) -> NetworkSpec:
    """A :class:`NetworkSpec` from a :class:`medseg.plan.Plan` (``plan.network`` holds
    ``kernel_sizes``, ``strides``, ``filters``; channels and labels from the plan)."""
    net = plan.network
    n_in = len(plan.channel_names)
    n_out = max(int(k) for k in plan.label_names) + 1
    try:
        return NetworkSpec(
            architecture=architecture,
            in_channels=n_in,
            out_channels=n_out,
            kernel_sizes=[list(map(int, k)) for k in net.kernel_sizes],
            strides=[list(map(int, s)) for s in net.strides],
            filters=[int(f) for f in net.filters],
            deep_supervision=deep_supervision,
        )
    except ValueError as exc:
        raise ConfigError(f"plan network: {exc}") from exc


def build_network(spec: NetworkSpec) -> torch.nn.Module:
    """Instantiate the MONAI network described by ``spec`` (on CPU, float32)."""
    if spec.architecture == "dynunet":
        from monai.networks.nets import DynUNet

        return DynUNet(
            spatial_dims=3,
            in_channels=spec.in_channels,
            out_channels=spec.out_channels,
            kernel_size=spec.kernel_sizes,
            strides=spec.strides,
            upsample_kernel_size=spec.strides[1:],
            filters=spec.filters,
            norm_name=(spec.norm, {"affine": True}),
            act_name=("leakyrelu", {"inplace": True, "negative_slope": 0.01}),
            dropout=spec.dropout if spec.dropout > 0 else None,
            deep_supervision=spec.deep_supervision,
            deep_supr_num=spec.deep_supr_num,
            res_block=False,
        )
    if spec.architecture == "unet":
        from monai.networks.nets import UNet

        # MONAI accepts one stride per axis at run time (its annotation says int)
        unet_strides: list[Any] = [tuple(int(v) for v in s) for s in spec.strides[1:]]
        return UNet(
            spatial_dims=3,
            in_channels=spec.in_channels,
            out_channels=spec.out_channels,
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
            in_channels=spec.in_channels,
            out_channels=spec.out_channels,
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


__all__ = [
    "ARCHITECTURES",
    "NetworkSpec",
    "build_network",
    "count_parameters",
    "network_spec_from_plan",
]
