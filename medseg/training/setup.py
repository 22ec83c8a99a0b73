"""From a :class:`TrainConfig` to the inputs of :func:`medseg.training.loop.fit`: plan (with
the config's overrides), dataset, splits, network spec, batch source, preprocessed validation
cases and checkpoint metadata."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medseg.checkpoint import CheckpointMeta
from medseg.datasets import Dataset, load_dataset, make_splits, read_case, read_splits, write_splits
from medseg.errors import ConfigError
from medseg.io.atomic import atomic_write_text
from medseg.models import NetworkSpec, network_spec_from_plan
from medseg.plan import Plan, load_plan, plan_from_dict, save_plan
from medseg.training.config import TrainConfig
from medseg.training.distributed import DistInfo, barrier
from medseg.training.sampling import ArrayCase, BatchSource, PatchSampler

log = logging.getLogger("medseg.training")


@dataclass
class Run:
    """Everything shared by the folds of one ``train`` call."""

    cfg: TrainConfig
    plan: Plan
    dataset: Dataset
    splits: list[dict[str, list[str]]]
    out_dir: Path
    cache: dict[str, ArrayCase] = field(default_factory=dict)


def resolve_plan(cfg: TrainConfig) -> Plan:
    """Load ``cfg.plan`` and apply ``cfg.data`` overrides (patch size, batch size, foreground
    ratio). A patch-size override also re-derives the network topology for that patch
    (:func:`medseg.plan.network_topology`, nnU-Net's rule); the result is re-validated."""
    if cfg.plan is None:
        raise ConfigError("plan: a training config must name the plan file (plan: path)")
    plan = load_plan(cfg.plan)
    upd: dict[str, Any] = {}
    if cfg.data.patch_size is not None:
        from medseg.plan import network_topology

        upd["patch_size"] = list(cfg.data.patch_size)
        upd["network"] = network_topology(cfg.data.patch_size, plan.target_spacing).model_dump()
    if cfg.data.batch_size is not None:
        upd["batch_size"] = cfg.data.batch_size
    if cfg.data.foreground_ratio is not None:
        upd["foreground_ratio"] = cfg.data.foreground_ratio
    if upd:
        data = plan.model_dump(mode="json")
        data.update(upd)
        plan = plan_from_dict(data, f"{cfg.plan} (with the config's data overrides)")
    return plan


def network_spec(cfg: TrainConfig, plan: Plan) -> NetworkSpec:
    """The plan's topology with the config's architecture and filter overrides."""
    spec = network_spec_from_plan(
        plan,
        architecture=cfg.network.architecture,
        deep_supervision=cfg.network.deep_supervision,
    )
    filters = list(cfg.network.filters) if cfg.network.filters is not None else spec.filters
    if cfg.network.base_filters is not None:
        if cfg.network.filters is not None:
            raise ConfigError("network: give either filters or base_filters, not both")
        filters = [cfg.network.base_filters * 2**i for i in range(len(spec.strides))]
    if len(filters) != len(spec.strides):
        raise ConfigError(
            f"network.filters: expected {len(spec.strides)} entries (one per plan stage), "
            f"found {len(filters)}"
        )
    if cfg.network.max_filters is not None:
        filters = [min(f, cfg.network.max_filters) for f in filters]
    data = spec.model_dump()
    data.update(filters=filters, dropout=cfg.network.dropout)
    return NetworkSpec.model_validate(data)


def prepare_run(cfg: TrainConfig, out_dir: Path, *, write: bool) -> Run:
    """Resolve plan, dataset and splits; write ``config.json``, ``plan.yaml`` and
    ``splits.json`` into ``out_dir`` when ``write`` (rank 0)."""
    plan = resolve_plan(cfg)
    ds = load_dataset(cfg.data.dataset if cfg.data.dataset is not None else plan.dataset_root)
    labelled = [c for c in ds.cases if c.label is not None]
    ds = ds.subset([c.case_id for c in labelled])
    splits_file = out_dir / "splits.json"
    if cfg.data.splits is not None:
        splits = read_splits(cfg.data.splits, ds)
    elif splits_file.exists():
        splits = read_splits(splits_file, ds)
    else:
        splits = make_splits(ds, cfg.data.n_folds, cfg.data.split_seed)
    if write:
        out_dir.mkdir(parents=True, exist_ok=True)
        if not splits_file.exists():
            write_splits(splits, splits_file)
        atomic_write_text(
            out_dir / "config.json", json.dumps(cfg.resolved(), indent=2) + "\n", overwrite=True
        )
        save_plan(plan, out_dir / "plan.yaml", overwrite=True)
    return Run(cfg, plan, ds, splits, out_dir)


def array_case(run: Run, case_id: str) -> ArrayCase:
    """Read and preprocess one case with the run's plan (memoised in ``run.cache``)."""
    if case_id not in run.cache:
        from medseg.transforms.preprocessing import preprocess_case

        vols, lab = read_case(run.dataset.case(case_id), run.plan.label_names)
        pre = preprocess_case(vols, run.plan, lab)
        ts = run.plan.target_spacing
        run.cache[case_id] = ArrayCase(
            case_id, pre.image, pre.label, (float(ts[0]), float(ts[1]), float(ts[2]))
        )
    return run.cache[case_id]


class LoaderSource:
    """Adapter: :class:`medseg.loader.TrainLoader` (augmentation, disk cache, workers) as a
    :class:`~medseg.training.sampling.BatchSource` (``set_epoch`` then iterate)."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def epoch_batches(self, epoch: int) -> Any:
        self.loader.set_epoch(epoch)
        return iter(self.loader)

    def close(self) -> None:
        """Stop the loader's worker processes."""
        close = getattr(self.loader, "close", None)
        if close is not None:
            close()


def make_source(run: Run, train_ids: list[str], info: DistInfo) -> BatchSource:
    """The configured batch source (``data.loader``; see :class:`DataConfig`)."""
    cfg, plan = run.cfg, run.plan
    if cfg.data.loader == "medseg":
        from medseg.loader import make_train_loader

        # rank 0 fills the disk cache first; the other ranks then only read it
        if info.enabled and not info.is_main:
            barrier(info)
        loader = make_train_loader(
            plan,
            [run.dataset.case(c) for c in train_ids],
            cfg.data.cache_dir or (run.out_dir / "cache"),
            num_workers=cfg.data.num_workers,
            seed=cfg.seed,
            iterations_per_epoch=cfg.iterations_per_epoch,
            augment=True,
            rank=info.rank,
            world_size=info.world_size,
        )
        if info.enabled and info.is_main:
            barrier(info)
        return LoaderSource(loader)
    cases = [array_case(run, c) for c in train_ids]
    return PatchSampler(
        cases,
        plan.patch_size,
        plan.batch_size,
        cfg.iterations_per_epoch,
        foreground_ratio=plan.foreground_ratio,
        seed=cfg.seed,
        rank=info.rank,
    )


def prepare_fold(
    run: Run, fold: int, info: DistInfo
) -> tuple[NetworkSpec, BatchSource, list[ArrayCase], CheckpointMeta]:
    """Network spec, batch source, validation cases and checkpoint metadata for one fold."""
    cfg, plan = run.cfg, run.plan
    split = run.splits[fold]
    spec = network_spec(cfg, plan)
    source = make_source(run, list(split["train"]), info)
    val_ids = list(split["val"])
    if cfg.val_max_cases is not None:
        val_ids = val_ids[: cfg.val_max_cases]
    val_cases = [array_case(run, c) for c in val_ids]
    meta = CheckpointMeta(
        network=spec.model_dump(),
        label_names=dict(plan.label_names),
        channel_names=list(plan.channel_names),
        spacing=[float(s) for s in plan.target_spacing],
        patch_size=[int(p) for p in plan.patch_size],
        normalization=[n.model_dump(mode="json") for n in plan.normalization],
        plan=plan.model_dump(mode="json"),
        config=cfg.resolved(),
    )
    return spec, source, val_cases, meta


__all__ = [
    "LoaderSource",
    "Run",
    "array_case",
    "make_source",
    "network_spec",
    "prepare_fold",
    "prepare_run",
    "resolve_plan",
]
