"""Loss, optimizer and learning-rate schedule, built from :class:`TrainConfig` parts."""

from __future__ import annotations

from typing import Any

import torch

from medseg.training.config import LossConfig, OptimizerConfig


class DeepSupervisionLoss(torch.nn.Module):
    """Dice + cross-entropy over one output ``(B, K, X, Y, Z)`` or a deep-supervision stack
    ``(B, 1 + H, K, X, Y, Z)`` (heads weighted ``1, 1/2, 1/4, ...``, normalised to sum 1).

    The target is the label ``(B, 1, X, Y, Z)`` (integer values ``0..K-1``).
    """

    def __init__(self, cfg: LossConfig) -> None:
        super().__init__()
        from monai.losses import DiceCELoss

        self.inner = DiceCELoss(
            to_onehot_y=True,
            softmax=True,
            include_background=False,
            batch=cfg.batch_dice,
            lambda_dice=cfg.dice_weight,
            lambda_ce=cfg.ce_weight,
            smooth_nr=1e-5,
            smooth_dr=1e-5,
        )

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = target.long() if target.dtype != torch.long else target
        if output.ndim == target.ndim:  # single head
            result: torch.Tensor = self.inner(output.float(), target)
            return result
        heads = output.shape[1]
        weights = torch.tensor([0.5**i for i in range(heads)], dtype=torch.float32)
        weights = weights / weights.sum()
        total = output.new_zeros((), dtype=torch.float32)
        for i in range(heads):
            total = total + weights[i] * self.inner(output[:, i].float(), target)
        return total


def build_optimizer(params: Any, cfg: OptimizerConfig) -> torch.optim.Optimizer:
    """SGD (Nesterov momentum) or AdamW with the configured lr and weight decay."""
    if cfg.name == "sgd":
        return torch.optim.SGD(
            params,
            lr=cfg.lr,
            momentum=cfg.momentum,
            nesterov=cfg.nesterov and cfg.momentum > 0,
            weight_decay=cfg.weight_decay,
        )
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: OptimizerConfig, epochs: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-epoch schedule: poly ``(1 - e/epochs)**power``, cosine to 0, or constant.
    Its ``state_dict`` holds only numbers (safe to store in a weights-only checkpoint)."""
    sched = cfg.resolved_schedule()
    if sched == "poly":
        return torch.optim.lr_scheduler.PolynomialLR(
            optimizer, total_iters=epochs, power=cfg.poly_power
        )
    if sched == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs, eta_min=0.0)
    return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)


__all__ = ["DeepSupervisionLoss", "build_optimizer", "build_scheduler"]
