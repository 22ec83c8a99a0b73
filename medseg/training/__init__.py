"""Training: ``train(config, out_dir, fold=...) -> TrainResult``, the Python API behind
``medseg train``.

Typical use from a notebook::

    from medseg.training import train, load_train_config
    cfg = load_train_config("configs/la_cpu_small.yaml")   # or a plan.yaml
    result = train(cfg, "runs/la", fold=0)
    result.folds[0].final_metrics        # {"left_atrium": {"dice": 0.9, "hd95_mm": 3.1}}
    result.folds[0].best_checkpoint      # runs/la/fold_0/checkpoint_best.pt

Output layout (the model folder that :class:`medseg.inference.Predictor` ensembles)::

    OUT/config.json  OUT/plan.yaml  OUT/splits.json
    OUT/fold_K/checkpoint_best.pt  checkpoint_last.pt  metrics.csv  progress.png  log.txt
               tensorboard/  validation_final.json

Multi-GPU / multi-node: launch the same command with ``torchrun --nproc_per_node N -m medseg
train ...``; see :mod:`medseg.training.distributed`.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from medseg.training.config import TrainConfig, load_train_config, validate_config

log = logging.getLogger("medseg.training")

if TYPE_CHECKING:  # pragma: no cover - typing only, keeps torch out of module import
    from medseg.training.loop import FoldResult


@dataclass
class TrainResult:
    """What :func:`train` returns: the model folder, one result per fold, and the mean of the
    folds' final per-label metrics (``{label: {"dice": ..., "hd95_mm": ...}}``)."""

    out_dir: Path
    folds: list[FoldResult] = field(default_factory=list)
    mean_metrics: dict[str, dict[str, float]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "out_dir": str(self.out_dir),
            "mean_metrics": self.mean_metrics,
            "folds": [
                {
                    "fold": f.fold,
                    "best_checkpoint": str(f.best_checkpoint),
                    "last_checkpoint": str(f.last_checkpoint),
                    "best_epoch": f.best_epoch,
                    "best_mean_dice": f.best_mean_dice,
                    "final_metrics": f.final_metrics,
                    "epochs": f.epochs,
                    "wall_s": f.wall_s,
                }
                for f in self.folds
            ],
        }


def _mean_metrics(folds: Sequence[FoldResult]) -> dict[str, dict[str, float]]:
    acc: dict[str, dict[str, list[float]]] = {}
    for f in folds:
        for name, m in f.final_metrics.items():
            for k, v in m.items():
                acc.setdefault(name, {}).setdefault(k, []).append(v)
    out: dict[str, dict[str, float]] = {}
    for name, ms in acc.items():
        out[name] = {}
        for k, vals in ms.items():
            good = [v for v in vals if not math.isnan(v)]
            out[name][k] = sum(good) / len(good) if good else float("nan")
    return out


def train(
    config: TrainConfig | str | Path,
    out_dir: str | Path,
    *,
    fold: int | Literal["all"] = 0,
    resume: bool = False,
) -> TrainResult:
    """Train one fold (or every fold, ``fold="all"``) and return a :class:`TrainResult`.

    Args:
        config: a validated :class:`TrainConfig`, or the path of a config YAML or a plan file.
        out_dir: the model folder; fold ``K`` writes into ``out_dir/fold_K/``.
        fold: fold index (``0 .. n_folds-1``) or ``"all"`` (trained in turn).
        resume: continue each fold from its ``checkpoint_last.pt`` (a finished fold is only
            re-validated; a fold not started yet starts from scratch).

    Raises:
        ConfigError: bad config, plan, or fold index. InputError: missing files.
        OutputExistsError: the fold folder holds a run and ``resume`` is false.
    """
    from medseg.errors import ConfigError
    from medseg.training.distributed import cleanup_distributed, init_distributed
    from medseg.training.loop import LAST, fit, resolve_device
    from medseg.training.setup import prepare_fold, prepare_run

    cfg = config if isinstance(config, TrainConfig) else load_train_config(config)
    out = Path(out_dir)
    from medseg.training.distributed import env_dist_info

    device = resolve_device(cfg, env_dist_info())
    info = init_distributed(device.type)
    try:
        run = prepare_run(cfg, out, write=info.is_main)
        n = len(run.splits)
        folds = list(range(n)) if fold == "all" else [int(fold)]
        for k in folds:
            if not 0 <= k < n:
                raise ConfigError(f"--fold: expected 0..{n - 1} or 'all', found {k}")
        result = TrainResult(out_dir=out)
        for k in folds:
            fold_dir = out / f"fold_{k}"
            fold_resume = resume and (fold_dir / LAST).exists()
            spec, source, val_cases, meta = prepare_fold(run, k, info)
            log.info(
                "fold %d: %d training / %d validation cases -> %s",
                k,
                len(run.splits[k]["train"]),
                len(val_cases),
                fold_dir,
            )
            res = fit(
                cfg, spec, source, val_cases, meta, fold_dir, resume=fold_resume, fold=k, info=info
            )
            result.folds.append(res)
        result.mean_metrics = _mean_metrics(result.folds)
        if info.is_main:
            from medseg.io.atomic import atomic_write_text

            name = "result.json" if fold == "all" else f"result_fold_{fold}.json"
            atomic_write_text(
                out / name, json.dumps(result.as_dict(), indent=2) + "\n", overwrite=True
            )
        return result
    finally:
        cleanup_distributed()


def __getattr__(name: str) -> Any:  # lazy re-exports that import torch
    if name == "FoldResult":
        from medseg.training.loop import FoldResult

        return FoldResult
    raise AttributeError(name)


__all__ = [
    "FoldResult",
    "TrainConfig",
    "TrainResult",
    "load_train_config",
    "train",
    "validate_config",
]
