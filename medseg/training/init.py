"""Starting a training run from trained weights instead of random ones (``init_weights`` in
the config; nnU-Net's ``-pretrained_weights``): fine-tuning on a new dataset, or the second
stage of a cascade starting from its first stage (``cascade.init_from_coarse``).

``init_weights`` names a checkpoint (every fold starts from it) or a model folder (fold ``K``
starts from that folder's fold ``K``, ``all`` from ``fold_all``: with the same splits no
held-out case of a fold was seen by the weights it starts from). Only the weights are taken:
the optimizer, schedule and epoch count start afresh, and the network this run's plan describes
must have exactly the same parameters (names and shapes); anything else is refused naming the
file, before training starts. A resumed fold continues from its own checkpoint and ignores
``init_weights``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from medseg.errors import InputError
from medseg.model_folder import Fold, ModelFolder

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Mapping

    import torch

    from medseg.plan.schema import Plan


def init_checkpoint(source: Path, fold: Fold) -> Path:
    """The checkpoint fold ``fold`` starts from: ``source`` itself when it is a file, else the
    same fold's final checkpoint in the model folder ``source``."""
    if source.is_dir():
        return ModelFolder(source).checkpoint(fold)
    return source


def parameter_shapes(plan: Plan) -> dict[str, tuple[int, ...]]:
    """Name and shape of every parameter and buffer of the network ``plan`` describes."""
    from medseg.models import build_model

    return {k: tuple(v.shape) for k, v in build_model(plan).state_dict().items()}


def shape_mismatch(
    expected: Mapping[str, tuple[int, ...]], found: Mapping[str, tuple[int, ...]]
) -> str | None:
    """The first difference between two networks' parameters, in words (``None``: same)."""
    for key in sorted(set(expected) | set(found)):
        if key not in found:
            return f"no parameter {key!r}"
        if key not in expected:
            return f"an extra parameter {key!r}"
        if expected[key] != found[key]:
            return f"{key!r} of shape {list(found[key])} instead of {list(expected[key])}"
    return None


def read_init_weights(
    path: Path, expected: Mapping[str, tuple[int, ...]]
) -> dict[str, torch.Tensor]:
    """The weights in ``path`` (loaded safely, see :func:`medseg.checkpoint.load_checkpoint`),
    checked to have the parameters ``expected`` (name and shape; :func:`parameter_shapes`).

    Raises :class:`InputError` naming the file when it is missing, not a medseg checkpoint, or
    holds another network."""
    from medseg.checkpoint import load_checkpoint

    ckpt = load_checkpoint(path, with_training=False)
    found = {k: tuple(v.shape) for k, v in ckpt.state_dict.items()}
    problem = shape_mismatch(expected, found)
    if problem is not None:
        raise InputError(
            path,
            "init_weights: expected the weights of the network this recipe trains (same plan "
            f"network, channels and labels), found another network: {problem}",
        )
    return dict(ckpt.state_dict)


def check_init_weights(source: Path, plan: Plan, folds: list[Fold]) -> None:
    """Every fold's starting checkpoint exists and fits ``plan``'s network (before training)."""
    expected = parameter_shapes(plan)
    for k in folds:
        read_init_weights(init_checkpoint(source, k), expected)


__all__ = [
    "check_init_weights",
    "init_checkpoint",
    "parameter_shapes",
    "read_init_weights",
    "shape_mismatch",
]
