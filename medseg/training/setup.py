"""From a :class:`TrainConfig` to what :func:`medseg.training.loop.fit` needs: the resolved
plan (the config's ``plan_overrides`` applied), the dataset, the splits, and per fold the
training loader and the validation cases.

Nothing is written before every check has passed (:func:`check_model_folder`), so a refused
run leaves the model folder as it was.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from medseg.config import format_validation_error
from medseg.datasets import Case, Dataset, load_dataset, make_splits, read_splits, write_splits
from medseg.errors import ConfigError, InputError, OutputExistsError
from medseg.io.atomic import atomic_write_text
from medseg.io.outputs import check_not_inputs
from medseg.model_folder import Fold, ModelFolder
from medseg.plan.files import load_plan, plan_to_yaml, save_plan
from medseg.plan.schema import AugmentationPlan, NetworkSpec, Plan
from medseg.planning.fingerprint import check_plan_fits_dataset
from medseg.runtime import DistInfo
from medseg.training.config import RUNTIME_KEYS, NetworkOverrides, PlanOverrides, TrainConfig
from medseg.training.distributed import barrier

if TYPE_CHECKING:  # pragma: no cover
    from medseg.loader import TrainLoader
    from medseg.training.validation import ValidationCase

log = logging.getLogger("medseg.training")

#: Config fields that only change how fast or how verbosely a run goes, not its result; they
#: may differ between the runs that fill one model folder.
RUNTIME_FIELDS = frozenset(
    {
        *RUNTIME_KEYS,
        "data.num_workers",
        "data.cache_dir",
        "plan",  # where the plan file lies; its content is compared through plan.yaml
    }
)


# ---------------------------------------------------------------------------------------------
# the plan with the config's overrides
# ---------------------------------------------------------------------------------------------
def _network_overrides(net: NetworkSpec, ov: NetworkOverrides) -> dict[str, Any]:
    upd: dict[str, Any] = {
        k: v
        for k, v in ov.model_dump(exclude={"filters", "base_filters", "max_filters"}).items()
        if v is not None
    }
    filters = list(ov.filters) if ov.filters is not None else list(net.filters)
    if ov.base_filters is not None:
        filters = [ov.base_filters * 2**i for i in range(len(net.strides))]
    if ov.max_filters is not None:
        filters = [min(f, ov.max_filters) for f in filters]
    if filters != list(net.filters):
        upd["filters"] = filters
    if upd.get("architecture", net.architecture) != "dynunet" and "deep_supervision" not in upd:
        upd["deep_supervision"] = False  # only DynUNet has deep-supervision heads
    return upd


def apply_overrides(plan: Plan, ov: PlanOverrides, source: str = "<config>") -> Plan:
    """``plan`` with the recipe's overrides applied (see :class:`PlanOverrides`) and validated
    again; an impossible result (a patch not divisible by the strides, too many deep
    supervision heads, ...) is a :class:`ConfigError` naming ``source``."""
    from medseg.planning.rules import network_topology

    changed = ov.model_dump(exclude_defaults=True)
    if not changed:
        return plan
    prep, net, patch = plan.preprocessing, plan.network, plan.patch_size
    try:
        if ov.target_spacing is not None:
            prep = prep.model_copy(update={"target_spacing": tuple(ov.target_spacing)})
        if ov.patch_size is not None:
            patch = (int(ov.patch_size[0]), int(ov.patch_size[1]), int(ov.patch_size[2]))
        if ov.patch_size is not None or ov.target_spacing is not None:
            topo = network_topology(patch, prep.target_spacing)
            net = topo.model_copy(
                update={"architecture": net.architecture, "norm": net.norm, "dropout": net.dropout}
            )
            if net.architecture != "dynunet":
                net = net.model_copy(update={"deep_supervision": False})
        net = net.model_copy(update=_network_overrides(net, ov.network))
        update: dict[str, Any] = {
            "preprocessing": prep,
            "network": net,
            "patch_size": patch,
            "notes": [*plan.notes, f"training config overrides: {json.dumps(changed)}"],
        }
        if ov.batch_size is not None:
            update["batch_size"] = ov.batch_size
        if ov.foreground_ratio is not None:
            update["foreground_ratio"] = ov.foreground_ratio
        if ov.roi is not None:
            update["roi"] = ov.roi
        if ov.augmentation:
            update["augmentation"] = AugmentationPlan.model_validate(
                {**plan.augmentation.model_dump(), **ov.augmentation}
            )
        return Plan.model_validate(plan.model_copy(update=update))
    except ValidationError as exc:
        raise ConfigError(
            format_validation_error(f"{source}: plan_overrides", exc, "plan after overrides")
        ) from None


def resolve_plan(cfg: TrainConfig) -> Plan:
    """Load ``cfg.plan`` and apply ``cfg.plan_overrides``."""
    if cfg.plan is None:
        raise ConfigError("plan: a training config must name the plan file (plan: path)")
    return apply_overrides(load_plan(cfg.plan), cfg.plan_overrides, str(cfg.plan))


# ---------------------------------------------------------------------------------------------
# the run: dataset, splits, model-folder checks
# ---------------------------------------------------------------------------------------------
@dataclass
class Run:
    """Everything shared by the folds of one ``train`` call."""

    cfg: TrainConfig
    plan: Plan
    dataset: Dataset
    splits: list[dict[str, list[str]]]
    splits_source: str
    folder: ModelFolder

    @property
    def out_dir(self) -> Path:
        return self.folder.root

    @property
    def cache_dir(self) -> Path:
        return self.cfg.data.cache_dir or self.folder.cache


def choose_splits(
    cfg: TrainConfig, ds: Dataset, folder: ModelFolder
) -> tuple[list[dict[str, list[str]]], str]:
    """The splits to train with and where they come from (see :class:`DataConfig`). A model
    folder's own ``splits.json`` must agree, unless no fold ever saved a checkpoint there (a
    run that failed early: its files are replaced)."""
    plan_splits = cfg.plan.parent / "splits.json" if cfg.plan is not None else None
    explicit = cfg.data.n_folds is not None or cfg.data.split_seed is not None
    if cfg.data.splits is not None:
        splits, source = read_splits(cfg.data.splits, ds), str(cfg.data.splits)
    elif not explicit and plan_splits is not None and plan_splits.is_file():
        splits, source = read_splits(plan_splits, ds), f"{plan_splits} (written beside the plan)"
    else:
        n, seed = cfg.data.n_folds or 5, cfg.data.split_seed or 0
        splits = make_splits(ds, n, seed)
        how = "data.n_folds/data.split_seed" if explicit else "default"
        source = f"made here: {n} folds, seed {seed} ({how})"
    existing = folder.splits
    if existing.is_file() and folder.has_checkpoint():
        kept = read_splits(existing, ds)
        if kept != splits:
            raise ConfigError(
                f"{existing}: the model folder was started with other splits than {source}; "
                "train into another model folder, or point data.splits at this file"
            )
        source = f"{existing} (the model folder's, same as {source})"
    return splits, source


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_flat(v, key + "."))
        else:
            out[key] = v
    return out


def config_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``["epochs: 4 -> 9", ...]`` for the result-changing fields that differ."""
    a, b = _flat(old), _flat(new)
    keys = sorted((set(a) | set(b)) - RUNTIME_FIELDS)
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in keys if a.get(k) != b.get(k)]


def check_model_folder(run: Run, folds: Sequence[Fold], resume: bool) -> list[Fold]:
    """Refuse, before anything is written, a run that would mix two recipes in one model
    folder or silently restart: returns the folds to resume (the others start fresh).

    A folder in which no fold ever saved a checkpoint (a run that failed before its first
    epoch ended: out of memory, a full disk) holds no training run: its ``config.json``,
    ``plan.yaml`` and ``splits.json`` are not compared, and :func:`write_run_files` replaces
    them.

    Raises:
        OutputExistsError: a fold holds a run and ``resume`` is false.
        ConfigError: ``out_dir`` is a file; ``resume`` and none of the folds has a checkpoint
            to resume from; the folder's ``config.json`` / ``plan.yaml`` are of another recipe.
    """
    folder = run.folder
    out = folder.root
    check_not_inputs(  # e.g. the plan (and the splits beside it) given from the model folder
        [p for p in (run.cfg.plan, run.cfg.data.splits) if p is not None],
        files=[folder.config, folder.plan, folder.splits],
    )
    if out.exists() and not out.is_dir():
        raise ConfigError(
            f"out_dir: expected a folder (the model folder), found the file {out}",
            param="out_dir",
        )
    started = [f for f in folds if folder.fold(f).last.is_file()]
    if not resume and started:
        raise OutputExistsError(
            folder.fold(started[0]).last,
            hint="the fold holds a training run; pass resume=True to continue it, or train "
            "into another model folder",
        )
    if resume and not started:
        names = ", ".join(folder.fold(f).dir.name for f in folds)
        raise ConfigError(
            f"resume: no {folder.fold(folds[0]).last.name} to resume from in {names} of {out}",
            param="resume",
        )
    if not folder.has_checkpoint():
        return []
    cfg_file = folder.config
    if cfg_file.is_file():
        try:
            old = json.loads(cfg_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError(cfg_file, f"cannot read the model folder's config: {exc}") from None
        diff = config_differences(old, run.cfg.resolved())
        if diff:
            raise ConfigError(
                f"{cfg_file}: the model folder was trained with another config ("
                + "; ".join(diff[:5])
                + (f"; {len(diff) - 5} more" if len(diff) > 5 else "")
                + "); use the same config, or train into another model folder"
            )
    plan_file = folder.plan
    if plan_file.is_file():
        old_plan = load_plan(plan_file)
        if plan_to_yaml(old_plan) != plan_to_yaml(run.plan):
            raise ConfigError(
                f"{plan_file}: the model folder was trained with another plan; use the same "
                "plan and plan_overrides, or train into another model folder"
            )
    return [f for f in folds if f in started] if resume else []


def prepare_run(cfg: TrainConfig, out_dir: Path, *, need_splits: bool) -> Run:
    """Resolve plan, dataset (labelled cases only) and splits."""
    folder = ModelFolder(Path(out_dir))
    plan = resolve_plan(cfg)
    ds = load_dataset(cfg.data.dataset if cfg.data.dataset is not None else plan.dataset)
    ds = ds.subset([c.case_id for c in ds.cases if c.label is not None])
    check_plan_fits_dataset(plan, ds, cfg.plan if cfg.plan is not None else "plan")
    splits: list[dict[str, list[str]]] = []
    source = "not needed (trained on every case)"
    if need_splits:
        splits, source = choose_splits(cfg, ds, folder)
    return Run(cfg, plan, ds, splits, source, folder)


def write_run_files(run: Run, info: DistInfo) -> None:
    """``config.json``, ``plan.yaml`` (the resolved plan) and ``splits.json`` in the model
    folder (rank 0; the others wait). A folder without any checkpoint gets this run's files
    (replacing those a failed run left); otherwise the files it has are kept (they were
    checked to agree by :func:`check_model_folder`)."""
    if info.is_main:
        folder = run.folder
        folder.root.mkdir(parents=True, exist_ok=True)
        fresh = not folder.has_checkpoint()
        if fresh or not folder.config.exists():
            text = json.dumps(run.cfg.resolved(), indent=2) + "\n"
            atomic_write_text(folder.config, text, overwrite=True)
        if fresh or not folder.plan.exists():
            save_plan(run.plan, folder.plan, overwrite=True)
        if run.splits and (fresh or not folder.splits.exists()):
            write_splits(run.splits, folder.splits, overwrite=True)
        elif fresh and not run.splits and folder.splits.exists():
            folder.splits.unlink()  # a failed run's splits; this run has none
    barrier(info)


# ---------------------------------------------------------------------------------------------
# one fold
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FoldCases:
    """The cases of one fold: ``train`` and ``val`` (empty for ``fold="all"``)."""

    fold: Fold
    train: list[Case]
    val: list[Case]


def fold_cases(run: Run, fold: Fold) -> FoldCases:
    """Training and validation cases of ``fold`` (``"all"``: every case, none held out)."""
    if fold == "all":
        return FoldCases("all", list(run.dataset.cases), [])
    k = int(fold)  # in range: checked by FoldSelection.resolve
    split = run.splits[k]
    val = list(split["val"])
    if run.cfg.val_max_cases is not None:
        val = val[: run.cfg.val_max_cases]
    return FoldCases(
        k, [run.dataset.case(c) for c in split["train"]], [run.dataset.case(c) for c in val]
    )


def fold_inputs(
    run: Run, cases: FoldCases, info: DistInfo
) -> tuple[TrainLoader, list[ValidationCase]]:
    """The training loader of a fold's training cases and its cached validation cases (rank 0
    fills the disk cache first; the other ranks then only read it)."""
    from medseg.cache import ensure_cached
    from medseg.loader import TrainLoader
    from medseg.training.validation import ValidationCase

    cfg = run.cfg
    if info.enabled and not info.is_main:
        barrier(info)
    loader = TrainLoader(
        run.plan,
        cases.train,
        run.cache_dir,
        num_workers=cfg.data.num_workers,
        seed=cfg.seed,
        iterations_per_epoch=cfg.iterations_per_epoch,
        augment=cfg.data.augment,
        rank=info.rank,
        world_size=info.world_size,
    )
    cached = ensure_cached(
        run.plan.preprocessing, cases.val, run.cache_dir, num_workers=cfg.data.num_workers
    )
    if info.enabled and info.is_main:
        barrier(info)
    return loader, [ValidationCase(c, cc) for c, cc in zip(cases.val, cached, strict=True)]


__all__ = [
    "RUNTIME_FIELDS",
    "FoldCases",
    "Run",
    "apply_overrides",
    "check_model_folder",
    "choose_splits",
    "config_differences",
    "fold_cases",
    "fold_inputs",
    "prepare_run",
    "resolve_plan",
    "write_run_files",
]
