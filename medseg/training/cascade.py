"""Training a two-stage cascade (:mod:`medseg.inference.cascade`): a config with a
``cascade:`` section (:class:`~medseg.training.config.CascadeConfig`) trains its first stage
into ``OUT/stage_1`` and itself, as the second stage, into ``OUT/stage_2``, with the same
folds, splits and cache; then, when every cross-validation fold of both stages has finished,
the cascade's own cross-validation: each held-out case is predicted by the cascade of its
fold (stage 1's box, stage 2 inside it) on its original grid, scored, and the cascade's
post-processing chosen (``OUT/crossval/``, ``OUT/postprocessing.json``).

Time to accuracy: the cascade's per-fold history is stage 1's followed by stage 2's, whose
clock starts where stage 1's ended (the stages train one after the other); stage 2's
validation Dice is measured inside the reference's box (see
:mod:`medseg.training.validation`), the cascade's CV Dice inside stage 1's.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from medseg.errors import ConfigError
from medseg.io.atomic import atomic_write_text
from medseg.model_folder import ModelFolder
from medseg.plan.schema import RoiPlan
from medseg.training.config import RUNTIME_KEYS, TrainConfig, load_train_config
from medseg.training.folds import FoldSelection

if TYPE_CHECKING:  # pragma: no cover
    from typing import Any

    from medseg.training import TrainResult

log = logging.getLogger("medseg.training")


def stage_configs(cfg: TrainConfig, folder: ModelFolder) -> tuple[TrainConfig, TrainConfig]:
    """The configs of the two stages of the cascade ``cfg`` (see
    :class:`~medseg.training.config.CascadeConfig`): stage 1 is the coarse recipe with this
    config's plan and data (and its runtime settings: device, threads, ...); stage 2 is this
    config without ``cascade`` and with ``plan_overrides.roi`` from its margin and jitter.
    Both use ``OUT/cache`` unless ``data.cache_dir`` names another."""
    if cfg.cascade is None:
        raise ConfigError("cascade: expected a cascade section, found none", param="cascade")
    source = cfg.cascade.coarse
    coarse = load_train_config(source)
    if coarse.cascade is not None:
        raise ConfigError(f"{source}: cascade.coarse must be a one-stage recipe, found a cascade")
    if coarse.plan_overrides.roi is not None or cfg.plan_overrides.roi is not None:
        raise ConfigError(
            "plan_overrides.roi: set by the cascade section (margin_mm, jitter_mm); "
            "remove it from the stage recipes"
        )
    data = cfg.data
    if data.cache_dir is None:
        data = data.model_copy(update={"cache_dir": folder.cache})
    runtime = {k: getattr(cfg, k) for k in RUNTIME_KEYS}
    stage1 = TrainConfig.model_validate(
        {**coarse.model_dump(), **runtime, "plan": cfg.plan, "data": data.model_dump()}
    )
    roi = RoiPlan(margin_mm=cfg.cascade.margin_mm, jitter_mm=cfg.cascade.jitter_mm)
    overrides = {**cfg.plan_overrides.model_dump(), "roi": roi.model_dump()}
    init = cfg.init_weights
    if cfg.cascade.init_from_coarse:
        if init is not None:
            raise ConfigError(
                "init_weights: a cascade with cascade.init_from_coarse starts stage 2 from "
                "stage 1; remove init_weights",
                param="init_weights",
            )
        init = folder.stage(1).root
    stage2 = TrainConfig.model_validate(
        {
            **cfg.model_dump(),
            "cascade": None,
            "data": data.model_dump(),
            "plan_overrides": overrides,
            "init_weights": init,
        }
    )
    return stage1, stage2


def _resume(folder: ModelFolder, resume: bool) -> bool:
    """A stage resumes when asked to and it has a checkpoint (else it starts)."""
    return resume and folder.has_checkpoint()


def check_stages(
    stages: list[tuple[TrainConfig, ModelFolder]], selection: FoldSelection, resume: bool
) -> None:
    """Every check of :func:`medseg.training.train` for both stages before either trains, so a
    refused cascade writes nothing (e.g. stage 2's folder holds another recipe)."""
    from medseg.training.setup import check_model_folder, prepare_run

    runs = []
    for c, f in stages:
        run = prepare_run(c, f.root, need_splits=selection.needs_splits)
        check_model_folder(run, selection.resolve(len(run.splits)), _resume(f, resume))
        runs.append(run)
    if stages[1][0].init_weights == stages[0][1].root:  # cascade.init_from_coarse
        from medseg.training.init import parameter_shapes, shape_mismatch

        problem = shape_mismatch(parameter_shapes(runs[1].plan), parameter_shapes(runs[0].plan))
        if problem is not None:
            raise ConfigError(
                "cascade.init_from_coarse: expected stage 2's network to be stage 1's (same "
                f"network settings and a patch size with the same pooling), found {problem} "
                "in stage 1",
                param="cascade.init_from_coarse",
            )


def train_cascade(
    cfg: TrainConfig, out_dir: Path, selection: FoldSelection, *, resume: bool
) -> TrainResult:
    """Train both stages of ``cfg`` (see the module docstring); the result's folds are stage
    2's, its ``cross_validation`` the cascade's."""
    from medseg.training import TrainResult, train

    folder = ModelFolder(Path(out_dir))
    stage1, stage2 = stage_configs(cfg, folder)
    stages = [(stage1, folder.stage(1)), (stage2, folder.stage(2))]
    check_stages(stages, selection, resume)
    folder.root.mkdir(parents=True, exist_ok=True)
    from medseg.inference.cascade import write_cascade

    write_cascade(folder.root)
    atomic_write_text(folder.config, json.dumps(cfg.resolved(), indent=2) + "\n", overwrite=True)
    results = []
    for n, (c, f) in enumerate(stages, start=1):
        log.info("cascade stage %d -> %s", n, f.root)
        results.append(train(c, f.root, fold=selection, resume=_resume(f, resume)))
    result = TrainResult(out_dir=folder.root, folds=results[1].folds)
    result.mean_metrics = results[1].mean_metrics
    if results[0].cross_validation is not None and results[1].cross_validation is not None:
        result.cross_validation = cascade_cross_validation(folder, stage2)
    atomic_write_text(
        folder.result(selection.name), json.dumps(result.as_dict(), indent=2) + "\n", overwrite=True
    )
    return result


def cascade_cross_validation(folder: ModelFolder, cfg: TrainConfig) -> dict[str, Any]:
    """Predict every held-out case with its fold's cascade, write it to
    ``OUT/fold_K/validation/`` and summarise (:func:`summarize_cross_validation`, the stages'
    histories one after the other)."""
    from medseg.datasets import load_dataset, read_case, read_splits
    from medseg.inference.cascade import load_cascade
    from medseg.inference.load import device_for_rank
    from medseg.io import write_volume
    from medseg.plan.files import load_plan
    from medseg.postprocess import Postprocessing
    from medseg.training.crossval import summarize_cross_validation

    stage2 = folder.stage(2)
    plan = load_plan(stage2.plan)
    dataset = load_dataset(cfg.data.dataset if cfg.data.dataset is not None else plan.dataset)
    splits = read_splits(stage2.splits, dataset)
    atomic_write_text(folder.splits, stage2.splits.read_text(encoding="utf-8"), overwrite=True)
    device, amp = device_for_rank(cfg.device)
    for k, split in enumerate(splits):
        model = load_cascade(
            folder.root, folds=[k], postprocessing=Postprocessing(), device=device, amp_dtype=amp
        )
        for cid in split["val"]:
            images, _ = read_case(dataset.case(cid), plan.label_names)
            seg = model.predict(images)
            write_volume(seg, folder.fold(k).validation_prediction(cid), overwrite=True)
        log.info("cascade cross-validation: fold %d predicted (%d cases)", k, len(split["val"]))
    return summarize_cross_validation(
        folder.root,
        dataset,
        splits,
        dict(plan.label_names),
        stages=[folder.stage(1), stage2],
    )


__all__ = ["cascade_cross_validation", "check_stages", "stage_configs", "train_cascade"]
