"""The network of an nnU-Net v2 configuration, built from ``plans.json`` with the
``dynamic-network-architectures`` package (the package nnU-Net itself builds its networks
with; medseg's optional extra ``nnunet``).

nnU-Net resolves ``network_class_name`` and the ``_kw_requires_import`` arguments (``conv_op``,
``norm_op``, ``dropout_op``, ``nonlin``) with ``pydoc.locate``, which imports whatever a plans
file names. medseg resolves them only inside an allow-list: the network class from
``dynamic_network_architectures.architectures`` and the layers from ``torch.nn``; anything
else is refused with the file and the name.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medseg.errors import ConfigError, InputError

if TYPE_CHECKING:  # pragma: no cover
    import torch

NETWORK_PREFIX = "dynamic_network_architectures.architectures."
LAYER_PREFIX = "torch.nn."

#: Old-format plans (``UNet_class_name``) name only these two classes, as nnU-Net converts.
OLD_NAMES = {
    "PlainConvUNet": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
    "ResidualEncoderUNet": (
        "dynamic_network_architectures.architectures.residual_unet.ResidualEncoderUNet"
    ),
}


def _locate(dotted: str, prefix: str, where: Path) -> Any:
    if not dotted.startswith(prefix):
        raise InputError(where, f"expected a class under {prefix}*, found {dotted!r}")
    module, _, name = dotted.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except ModuleNotFoundError as exc:
        if exc.name == "dynamic_network_architectures":
            raise ConfigError(
                "model: nnU-Net networks need the dynamic-network-architectures package "
                "(pip install 'medseg[nnunet]')"
            ) from None
        raise InputError(where, f"cannot import {dotted!r} ({exc})") from None
    except AttributeError:
        raise InputError(where, f"cannot import {dotted!r}: no {name} in {module}") from None


def _find_network_class(dotted: str, where: Path) -> Any:
    """The network class ``dotted``; when it moved inside ``dynamic_network_architectures``
    (e.g. ``architectures.residual_unet.ResidualEncoderUNet`` of older plans, now in
    ``architectures.unet``), the class of that name in the package's ``architectures``
    modules, as nnU-Net's ``get_network_from_plans`` recovers it."""
    import pkgutil

    try:
        return _locate(dotted, NETWORK_PREFIX, where)
    except InputError:
        if not dotted.startswith(NETWORK_PREFIX):
            raise
    name = dotted.rpartition(".")[2]
    package = importlib.import_module(NETWORK_PREFIX.rstrip("."))
    names = [info.name for info in pkgutil.iter_modules(package.__path__, NETWORK_PREFIX)]
    # the U-Net modules first: the others (transformers) import timm, and timm imports
    # torchvision, which fails to load beside a torch build it was not made for
    names.sort(key=lambda n: (not n.endswith(("unet", "unet_decoder")), n))
    for module_name in names:
        try:  # a module that needs a missing or broken optional package cannot hold the class
            module = importlib.import_module(module_name)
        except (ImportError, RuntimeError):
            continue
        cls = getattr(module, name, None)
        if isinstance(cls, type):
            return cls
    raise InputError(where, f"no network class {name!r} in {NETWORK_PREFIX.rstrip('.')}")


def architecture(config: dict[str, Any], where: Path) -> dict[str, Any]:
    """``{"network_class_name", "arch_kwargs", "_kw_requires_import"}`` of a resolved
    configuration, converted from nnU-Net's old plans format (``UNet_class_name``) as nnU-Net's
    ``ConfigurationManager`` does."""
    if "architecture" in config:
        arch = config["architecture"]
        if not isinstance(arch, dict) or "network_class_name" not in arch:
            raise InputError(where, "expected architecture.network_class_name in the plans")
        return dict(arch)
    old = config.get("UNet_class_name")
    if old not in OLD_NAMES:
        raise InputError(where, f"expected architecture or UNet_class_name, found {old!r}")
    n = len(config["n_conv_per_stage_encoder"])
    dim = len(config["patch_size"])
    blocks = "n_conv_per_stage" if old == "PlainConvUNet" else "n_blocks_per_stage"
    return {
        "network_class_name": OLD_NAMES[old],
        "arch_kwargs": {
            "n_stages": n,
            "features_per_stage": [
                min(config["UNet_base_num_features"] * 2**i, config["unet_max_num_features"])
                for i in range(n)
            ],
            "conv_op": f"torch.nn.modules.conv.Conv{dim}d",
            "kernel_sizes": config["conv_kernel_sizes"],
            "strides": config["pool_op_kernel_sizes"],
            blocks: config["n_conv_per_stage_encoder"],
            "n_conv_per_stage_decoder": config["n_conv_per_stage_decoder"],
            "conv_bias": True,
            "norm_op": f"torch.nn.modules.instancenorm.InstanceNorm{dim}d",
            "norm_op_kwargs": {"eps": 1e-05, "affine": True},
            "dropout_op": None,
            "dropout_op_kwargs": None,
            "nonlin": "torch.nn.LeakyReLU",
            "nonlin_kwargs": {"inplace": True},
        },
        "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
    }


def build_network(
    arch: dict[str, Any], in_channels: int, out_channels: int, where: Path
) -> torch.nn.Module:
    """The network of ``arch`` (see :func:`architecture`) without deep supervision, as
    nnU-Net's ``get_network_from_plans`` builds it for inference (weights are loaded after)."""
    import torch

    kwargs = dict(arch.get("arch_kwargs", {}))
    for key in arch.get("_kw_requires_import", []):
        if kwargs.get(key) is not None:
            kwargs[key] = _locate(str(kwargs[key]), LAYER_PREFIX, where)
    cls = _find_network_class(str(arch["network_class_name"]), where)
    kwargs["deep_supervision"] = False
    try:
        net = cls(input_channels=in_channels, num_classes=out_channels, **kwargs)
    except TypeError as exc:
        raise InputError(where, f"cannot build {arch['network_class_name']}: {exc}") from None
    if not isinstance(net, torch.nn.Module):
        raise InputError(where, f"{arch['network_class_name']} is not a torch module")
    return net


__all__ = ["LAYER_PREFIX", "NETWORK_PREFIX", "architecture", "build_network"]
