"""Training: ``train(config, out_dir, fold=...) -> TrainResult``, the Python API behind
``medseg train``.

Typical use from a notebook::

    from medseg.training import train, load_train_config
    cfg = load_train_config("configs/la_cpu.yaml")   # or a plan.yaml
    result = train(cfg, "runs/la", fold="cv")         # 0, [0, 2], "cv" or "all"
    result.folds[0].final_metrics        # {"left_atrium": {"dice": 0.9, "hd95_mm": 3.1}}
    result.folds[0].last_checkpoint      # runs/la/fold_0/checkpoint_last.pt

Output layout (the model folder that :class:`medseg.inference.Predictor` ensembles; its one
owner is :class:`medseg.model_folder.ModelFolder`)::

    OUT/config.json  OUT/plan.yaml (the resolved plan)  OUT/splits.json  OUT/result_*.json
    OUT/fold_K/checkpoint_last.pt  checkpoint_best.pt  metrics.csv  progress.png  log.txt
               tensorboard/  validation/ (final predictions + metrics)  validation_final.json
    OUT/fold_all/checkpoint_last.pt  ...   (``fold="all"``: every case, no validation)

A config with a ``cascade:`` section trains a two-stage cascade into ``OUT/stage_1`` and
``OUT/stage_2`` (:mod:`medseg.training.cascade`).

Multi-GPU / multi-node: launch the same command with ``torchrun --nproc_per_node N -m medseg
train ...``; see :mod:`medseg.training.distributed`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medseg.model_folder import Fold
from medseg.training.config import (
    TrainConfig,
    load_train_config,
    override_config,
    validate_config,
)
from medseg.training.folds import FoldSelection, parse_folds

log = logging.getLogger("medseg.training")

if TYPE_CHECKING:  # pragma: no cover - typing only, keeps torch out of module import
    from medseg.training.loop import FoldResult


@dataclass
class TrainResult:
    """What :func:`train` returns: the model folder, one result per fold, the mean of the
    folds' final per-label metrics (``{label: {"dice": ..., "hd95_mm": ...}}``) and, when every
    fold is finished, the cross-validation summary."""

    out_dir: Path
    folds: list[FoldResult] = field(default_factory=list)
    mean_metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    #: once every fold of the splits is finished: the out-of-fold summary and the chosen
    #: post-processing (:func:`medseg.training.crossval.summarize_cross_validation`)
    cross_validation: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "out_dir": str(self.out_dir),
            "mean_metrics": self.mean_metrics,
            "cross_validation": self.cross_validation,
            "folds": [
                {
                    "fold": f.fold,
                    "best_checkpoint": f.best_checkpoint and str(f.best_checkpoint),
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
    """Per label and metric, the mean over folds of their final means (NaN folds excluded)."""
    from medseg.metrics.aggregate import defined_mean

    acc: dict[str, dict[str, list[float]]] = {}
    for f in folds:
        for name, m in f.final_metrics.items():
            for k, v in m.items():
                acc.setdefault(name, {}).setdefault(k, []).append(v)
    return {name: {k: defined_mean(v) for k, v in ms.items()} for name, ms in acc.items()}


def _init(cfg: TrainConfig, fold: Fold) -> Path | None:
    """The checkpoint fold ``fold`` starts from (``cfg.init_weights``), if any."""
    if cfg.init_weights is None:
        return None
    from medseg.training.init import init_checkpoint

    return init_checkpoint(cfg.init_weights, fold)


def train(
    config: TrainConfig | str | Path,
    out_dir: str | Path,
    *,
    fold: Fold | Sequence[int] | str | FoldSelection = 0,
    resume: bool = False,
) -> TrainResult:
    """Train one or more folds and return a :class:`TrainResult`.

    Args:
        config: a validated :class:`TrainConfig`, or the path of a config YAML or a plan file.
        out_dir: the model folder; fold ``K`` writes into ``out_dir/fold_K/``.
        fold: a fold index, several (``[0, 1]`` or ``"0,1"``), ``"cv"`` (every fold of the
            splits, each case held out once) or ``"all"`` (one model trained on every case,
            nothing held out, written to ``out_dir/fold_all/``; as nnU-Net's ``all``).
        resume: continue the folds that have a ``checkpoint_last.pt`` (a finished fold is only
            validated again; a fold not started yet starts from scratch). At least one fold
            must have a checkpoint.

    Every check (folds, splits, an existing run in the folder, a different recipe in it)
    happens before anything is written, so a refused run changes nothing.

    A model folder in which no fold ever saved a checkpoint (a run that failed early) is
    reused: its ``config.json``, ``plan.yaml`` and ``splits.json`` are replaced.

    Raises:
        ConfigError: bad config, plan, overrides, or fold; ``resume`` with nothing to
            resume. InputError: missing files. OutputExistsError: a fold holds a run and
            ``resume`` is false.
    """
    from medseg.runtime import dist_info, resolve_device
    from medseg.training.distributed import cleanup_distributed, init_distributed
    from medseg.training.loop import fit
    from medseg.training.setup import (
        check_model_folder,
        fold_cases,
        fold_inputs,
        prepare_run,
        write_run_files,
    )

    cfg = config if isinstance(config, TrainConfig) else load_train_config(config)
    selection = parse_folds(fold)
    if cfg.cascade is not None:  # two stages, each a train() of its own
        from medseg.training.cascade import train_cascade

        return train_cascade(cfg, Path(out_dir), selection, resume=resume)
    device = resolve_device(cfg.device, local_rank=dist_info().local_rank)
    info = init_distributed(device.type)
    try:
        run = prepare_run(cfg, Path(out_dir), need_splits=selection.needs_splits)
        folder = run.folder
        folds = selection.resolve(len(run.splits))
        to_resume = check_model_folder(run, folds, resume)
        fresh = [k for k in folds if k not in to_resume]
        if cfg.init_weights is not None:
            from medseg.training.init import check_init_weights

            check_init_weights(cfg.init_weights, run.plan, fresh)
        log.info("plan %s; splits: %s", cfg.plan, run.splits_source)
        write_run_files(run, info)
        result = TrainResult(out_dir=folder.root)
        for k in folds:
            cases = fold_cases(run, k)
            fold_dir = folder.fold(k).dir
            log.info(
                "fold %s: %d training / %d validation cases -> %s",
                k,
                len(cases.train),
                len(cases.val),
                fold_dir,
            )
            loader, validation = fold_inputs(run, cases, info)
            res = fit(
                cfg,
                run.plan,
                loader,
                fold_dir,
                validation=validation,
                resume=k in to_resume,
                fold=k,
                info=info,
                init=_init(cfg, k),
            )
            result.folds.append(res)
        result.mean_metrics = _mean_metrics(result.folds)
        finished = [folder.fold(k).validation_final.is_file() for k in range(len(run.splits))]
        if info.is_main and run.splits and all(finished):
            from medseg.training.crossval import summarize_cross_validation

            result.cross_validation = summarize_cross_validation(
                folder.root, run.dataset, run.splits, dict(run.plan.label_names)
            )
        if info.is_main:
            from medseg.io.atomic import atomic_write_text

            atomic_write_text(
                folder.result(selection.name),
                json.dumps(result.as_dict(), indent=2) + "\n",
                overwrite=True,
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
    "FoldSelection",
    "TrainConfig",
    "TrainResult",
    "load_train_config",
    "override_config",
    "parse_folds",
    "train",
    "validate_config",
]
