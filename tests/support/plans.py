"""Tiny plans and networks for tests (built directly, no dataset needed), and a ready-to-train
ball dataset + plan + training config on disk."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from medseg.plan.schema import ChannelNormalization, NetworkSpec, Plan, Preprocessing


def tiny_network(stages: int = 3, filters: Sequence[int] | None = None, **kw: Any) -> NetworkSpec:
    """A DynUNet of ``stages`` stages (stride 2 after the first), 3×3×3 kernels, filters
    4, 8, 16, ... (deep supervision on when there are at least 3 stages, one extra head)."""
    f = list(filters) if filters is not None else [4 * 2**i for i in range(stages)]
    base: dict[str, Any] = {
        "kernel_sizes": [[3, 3, 3]] * stages,
        "strides": [[1, 1, 1]] + [[2, 2, 2]] * (stages - 1),
        "filters": f,
        "deep_supervision": stages >= 3,
        "deep_supr_num": 1,
    }
    base.update(kw)
    return NetworkSpec(**base)


def tiny_plan(
    *,
    channels: Sequence[str] = ("MR",),
    labels: dict[int, str] | None = None,
    target_spacing: Sequence[float] = (1.0, 1.0, 1.0),
    crop: bool = False,
    scheme: str = "zscore",
    label_interpolation: str = "nearest",
    patch_size: Sequence[int] = (16, 16, 16),
    batch_size: int = 2,
    foreground_ratio: float = 0.33,
    network: NetworkSpec | None = None,
) -> Plan:
    """A valid :class:`Plan` with the given preprocessing and a tiny network."""
    norms = []
    for c in channels:
        if scheme == "ct":
            norms.append(
                ChannelNormalization(
                    channel=c, scheme="ct", clip_low=-100, clip_high=300, mean=50, std=80
                )
            )
        else:
            norms.append(ChannelNormalization(channel=c, scheme="zscore", use_nonzero_mask=crop))
    return Plan(
        dataset="/x",
        dataset_name="synthetic",
        label_names=labels or {0: "background", 1: "ball"},
        preprocessing=Preprocessing(
            target_spacing=tuple(target_spacing),
            crop_to_nonzero=crop,
            normalization=norms,
            label_interpolation=label_interpolation,
        ),
        patch_size=tuple(patch_size),
        batch_size=batch_size,
        network=network or tiny_network(2, [8, 16]),
        foreground_ratio=foreground_ratio,
        gpu_memory_gb=8,
    )


#: A recipe that trains the tiny network on the ball dataset in seconds on one CPU thread.
TINY_RECIPE: dict[str, Any] = {
    "epochs": 4,
    "iterations_per_epoch": 5,
    "val_every": 2,
    "device": "cpu",
    "progress_bar": False,
    "num_threads": 1,
    "optimizer": {"lr": 0.05},
    "plan_overrides": {
        "patch_size": [16, 16, 16],
        "batch_size": 2,
        "network": {"max_filters": 16},
    },
    "data": {"augment": False},
}


def write_training_run(
    root: Path,
    *,
    n_cases: int = 5,
    shape: Sequence[int] = (24, 24, 20),
    seed: int = 0,
    n_folds: int | None = None,
    **recipe: Any,
) -> Path:
    """A ball dataset under ``root/data``, its plan (``root/plan/plan.yaml``, with
    ``splits.json`` beside it when ``n_folds``) and a training config ``root/cfg.yaml``
    (:data:`TINY_RECIPE` updated with ``recipe``); returns the config path."""
    from medseg.datasets import load_dataset, make_splits, write_splits
    from medseg.plan.files import save_plan
    from medseg.planning.rules import plan_dataset
    from support.volumes import write_ball_dataset

    data = write_ball_dataset(root / "data", n=n_cases, shape=shape, seed=seed)
    ds = load_dataset(data)
    (root / "plan").mkdir(parents=True, exist_ok=True)
    save_plan(plan_dataset(ds, 8.0), root / "plan" / "plan.yaml")
    if n_folds is not None:
        write_splits(make_splits(ds, n_folds, 0), root / "plan" / "splits.json")
    cfg = {**TINY_RECIPE, "plan": "plan/plan.yaml"}
    for k, v in recipe.items():
        cfg[k] = {**cfg[k], **v} if isinstance(v, dict) and isinstance(cfg.get(k), dict) else v
    path = root / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def write_cascade_run(
    root: Path,
    cascade: dict[str, Any],
    *,
    epochs: int = 2,
    iterations_per_epoch: int = 3,
    **stage2: Any,
) -> Path:
    """A ball dataset (4 cases, 2 folds), a coarse recipe at 2 mm (``root/coarse.yaml``) and a
    cascade config ``root/cascade.yaml`` (stage 2 at the plan's 1 mm) whose ``cascade:`` section
    is ``coarse.yaml`` plus ``cascade``, and whose top-level keys ``stage2`` replaces; returns
    the cascade config's path."""
    cfg = write_training_run(
        root,
        n_cases=4,
        n_folds=2,
        shape=(32, 32, 24),
        epochs=epochs,
        iterations_per_epoch=iterations_per_epoch,
    )
    coarse = yaml.safe_load(cfg.read_text())
    coarse["plan_overrides"] = {**coarse["plan_overrides"], "target_spacing": [2.0, 2.0, 2.0]}
    (root / "coarse.yaml").write_text(yaml.safe_dump(coarse))
    doc = yaml.safe_load(cfg.read_text())
    doc["cascade"] = {"coarse": "coarse.yaml", **cascade}
    doc.update(stage2)
    out = root / "cascade.yaml"
    out.write_text(yaml.safe_dump(doc))
    return out
