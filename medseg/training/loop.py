"""The training loop for one fold: :func:`fit`.

It is driven by medseg's training loader (:class:`medseg.loader.TrainLoader`: disk-cached
cases, foreground-biased patches, augmentation), validates with
:mod:`medseg.training.validation`, and writes into ``out_dir`` (rank 0 only):

* ``checkpoint_last.pt`` after every epoch (weights + optimizer, scheduler, grad-scaler and RNG
  states + history), ``checkpoint_best.pt`` whenever the mean validation Dice improves (only
  when there are validation cases);
* ``metrics.csv``, ``log.txt``, ``progress.png``, ``tensorboard/``;
* after the last epoch, the final validation on the original grid: ``validation/<case>.nii.gz``
  (predictions of the final weights), ``validation/metrics.csv`` and ``summary.csv`` (the
  columns of ``medseg evaluate``) and ``validation_final.json`` (per-case and mean Dice and
  HD95 in mm).

Determinism: at the start of every epoch Python, NumPy and torch are reseeded from
``(seed, epoch, rank)`` and batch sources sample from the same triple, so a run resumed from
``checkpoint_last.pt`` (written atomically at each epoch end) repeats the interrupted epoch
exactly as an uninterrupted run would. Remaining sources of non-determinism: non-deterministic
GPU kernels (cuDNN convolution algorithms, atomics in ``index_add``/interpolation backward;
``deterministic: true`` requests deterministic algorithms at a speed cost), a different number
of CPU threads or a different device, and ``torch.compile`` autotuning.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medseg.checkpoint import CheckpointMeta, load_checkpoint, save_checkpoint
from medseg.errors import ConfigError, InputError
from medseg.io.atomic import atomic_write_text
from medseg.loader import TrainLoader
from medseg.model_folder import Fold, FoldFolder
from medseg.models import build_model
from medseg.plan.schema import Plan
from medseg.runtime import DistInfo, dist_info, resolve_amp, resolve_device
from medseg.training.config import TrainConfig
from medseg.training.distributed import all_reduce_sum, barrier
from medseg.training.optim import DeepSupervisionLoss, build_optimizer, build_scheduler
from medseg.training.validation import (
    ValidationCase,
    final_validation,
    mean_dice,
    periodic_validation,
    write_validation_tables,
)

log = logging.getLogger("medseg.training")


@dataclass
class FoldResult:
    """Outcome of :func:`fit` for one fold.

    ``final_metrics`` maps label name → ``{"dice": ..., "hd95_mm": ...}`` (means over the
    validation cases where defined, NaN when undefined for every case; empty without
    validation cases); ``best_mean_dice`` is the best mean foreground Dice seen at a validation
    epoch (NaN if never validated); ``best_checkpoint`` is ``None`` without validation cases.
    """

    fold: Fold | None
    out_dir: Path
    best_checkpoint: Path | None
    last_checkpoint: Path
    best_epoch: int
    best_mean_dice: float
    final_metrics: dict[str, dict[str, float]]
    epochs: int
    wall_s: float
    history: list[dict[str, Any]] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# seeding
# --------------------------------------------------------------------------------------------
def seed_everything(seed: int, epoch: int, rank: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) from ``(seed, epoch, rank)``."""
    s = int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1)[0])
    random.seed(s)
    np.random.seed(s)
    torch.manual_seed(s)


def rng_states() -> dict[str, Any]:
    """Python, NumPy and torch RNG states as plain values/tensors (weights-only safe)."""
    py = random.getstate()
    npst: Any = np.random.get_state()
    out: dict[str, Any] = {
        "python": [int(py[0]), [int(x) for x in py[1]], py[2]],
        "numpy": [
            str(npst[0]),
            torch.from_numpy(np.asarray(npst[1], dtype=np.int64)),
            int(npst[2]),
            int(npst[3]),
            float(npst[4]),
        ],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        out["cuda"] = list(torch.cuda.get_rng_state_all())
    return out


def set_rng_states(st: dict[str, Any]) -> None:
    """Inverse of :func:`rng_states`."""
    py: list[Any] = st["python"]
    random.setstate((int(py[0]), tuple(int(x) for x in py[1]), py[2]))
    n: list[Any] = st["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), int(n[2]), int(n[3]), float(n[4])))
    torch.set_rng_state(st["torch"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


# --------------------------------------------------------------------------------------------
# the loop
# --------------------------------------------------------------------------------------------
def _epoch(
    train_model: torch.nn.Module,
    net: torch.nn.Module,
    loader: TrainLoader,
    epoch: int,
    cfg: TrainConfig,
    parts: _Parts,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    info: DistInfo,
) -> dict[str, Any]:
    """One training epoch; returns its log row (loss, lr, time, throughput)."""
    net.train()
    t0 = time.perf_counter()
    loss_acc = torch.zeros((), dtype=torch.float64, device=device)  # no host sync per batch
    n_batches, n_patches = 0, 0
    loader.set_epoch(epoch)
    batches: Any = iter(loader)
    if cfg.progress_bar and info.is_main:
        from tqdm import tqdm

        batches = tqdm(
            batches, total=len(loader), desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False
        )
    for batch in batches:
        x = batch["image"].to(device, non_blocking=True)
        y = batch["label"].to(device, non_blocking=True)
        if cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        parts.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(
            device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None
        ):
            outp = train_model(x)
        loss = parts.loss_fn(outp, y)
        parts.scaler.scale(loss).backward()
        if cfg.optimizer.grad_clip is not None:
            parts.scaler.unscale_(parts.optimizer)
            torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.optimizer.grad_clip)
        parts.scaler.step(parts.optimizer)
        parts.scaler.update()
        loss_acc += loss.detach().double()
        n_batches += 1
        n_patches += int(x.shape[0])
    lr = float(parts.optimizer.param_groups[0]["lr"])
    parts.scheduler.step()
    tot = all_reduce_sum(
        torch.tensor([float(loss_acc), n_batches, n_patches], dtype=torch.float64), info
    )
    dt = time.perf_counter() - t0
    return {
        "epoch": epoch + 1,
        "train_loss": float(tot[0]) / max(float(tot[1]), 1.0),
        "lr": lr,
        "epoch_time_s": dt,
        "patches_per_s": float(tot[2]) / dt if dt > 0 else float("nan"),
    }


@dataclass
class _Parts:
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    loss_fn: DeepSupervisionLoss


def _check_resume(cfg: TrainConfig, last_path: Path) -> Any:
    ckpt = load_checkpoint(last_path)
    if ckpt.training is None:
        raise InputError(last_path, "checkpoint holds no training state; cannot resume")
    old_epochs = (ckpt.meta.config or {}).get("epochs")
    if old_epochs is not None and int(old_epochs) != cfg.epochs:
        raise ConfigError(
            f"{last_path}: epochs: the run was started with epochs={old_epochs}, found "
            f"{cfg.epochs}; resume with the same value (the learning-rate schedule depends "
            "on it)"
        )
    return ckpt


def fit(
    cfg: TrainConfig,
    plan: Plan,
    loader: TrainLoader,
    out_dir: str | Path,
    *,
    validation: Sequence[ValidationCase] = (),
    resume: bool = False,
    fold: Fold | None = None,
    info: DistInfo | None = None,
    stop_after_epoch: Callable[[int], bool] | None = None,
    init: Path | None = None,
) -> FoldResult:
    """Train one network and return a :class:`FoldResult`.

    Args:
        cfg: the recipe (epochs, optimizer, precision, validation cadence, ...).
        plan: the resolved plan (network, patch size, labels; stored in every checkpoint).
        loader: the training batches (:class:`medseg.loader.TrainLoader`).
        out_dir: the fold's output folder (:class:`~medseg.model_folder.FoldFolder`). It
            must not hold a previous run unless ``resume`` (checked before, by
            :func:`medseg.training.setup.check_model_folder`).
        validation: the held-out cases (none: no validation, no best checkpoint).
        resume: continue from ``out_dir/checkpoint_last.pt``.
        fold: recorded in the checkpoints and ``validation_final.json``.
        info: distributed placement (default: from the environment).
        stop_after_epoch: test hook, called with the 1-based epoch after its checkpoint is
            written; returning True ends training there (as an interruption would).
        init: a checkpoint whose weights the network starts from (not when resuming; see
            :mod:`medseg.training.init`).
    """
    t_start = time.perf_counter()
    info = info or dist_info()
    files = FoldFolder(fold, Path(out_dir))
    out = files.dir
    device = resolve_device(cfg.device, local_rank=info.local_rank)
    amp_dtype = resolve_amp(cfg.amp, device)
    if cfg.num_threads is not None:
        torch.set_num_threads(cfg.num_threads)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    last_path, best_path = files.last, files.best
    ckpt = _check_resume(cfg, last_path) if resume else None
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)

    seed_everything(cfg.seed, 0, info.rank)
    net = build_model(plan).to(device)
    if init is not None and ckpt is None:
        from medseg.training.init import read_init_weights

        shapes = {k: tuple(v.shape) for k, v in net.state_dict().items()}
        net.load_state_dict(read_init_weights(init, shapes))
        log.info("weights from %s", init)
    if cfg.channels_last:
        net = net.to(memory_format=torch.channels_last_3d)  # type: ignore[call-overload]
    optimizer = build_optimizer(net.parameters(), cfg.optimizer)
    parts = _Parts(
        optimizer,
        build_scheduler(optimizer, cfg.optimizer, cfg.epochs),
        torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16),
        DeepSupervisionLoss(cfg.loss),
    )
    history: list[dict[str, Any]] = []
    start_epoch, best_dice, best_epoch = 0, float("nan"), 0
    if ckpt is not None:
        tr = ckpt.training
        assert tr is not None
        net.load_state_dict(ckpt.state_dict)
        parts.optimizer.load_state_dict(tr["optimizer"])
        parts.scheduler.load_state_dict(tr["scheduler"])
        parts.scaler.load_state_dict(tr["scaler"])
        set_rng_states(tr["rng"])
        history = json.loads(tr["history_json"])
        start_epoch = int(tr["epoch"])
        best_dice = float(tr["best_dice"])
        best_epoch = int(tr["best_epoch"])
        log.info("resumed from %s at epoch %d", last_path, start_epoch)

    train_model: torch.nn.Module = net
    if info.enabled:
        from torch.nn.parallel import DistributedDataParallel

        train_model = DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None
        )
    if cfg.compile:
        train_model = torch.compile(train_model)  # type: ignore[assignment]

    writer = None
    if info.is_main:
        from medseg.training.logging import ProgressWriter

        writer = ProgressWriter(files, cfg.epochs)
    meta = CheckpointMeta(plan=plan, config=cfg.resolved(), fold=fold)
    elapsed = float(history[-1].get("elapsed_s", 0.0)) if history else 0.0
    try:
        for epoch in range(start_epoch, cfg.epochs):
            seed_everything(cfg.seed, epoch + 1, info.rank)
            row = _epoch(train_model, net, loader, epoch, cfg, parts, device, amp_dtype, info)
            is_val = (epoch + 1) % cfg.val_every == 0 or epoch + 1 == cfg.epochs
            if is_val and validation:
                tv = time.perf_counter()
                means = periodic_validation(
                    net,
                    validation,
                    plan,
                    overlap=cfg.overlap,
                    device=device,
                    amp_dtype=amp_dtype,
                    info=info,
                )
                for name, m in means.items():
                    row[f"val_dice_{name}"] = m["dice"]
                row["val_mean_dice"] = mean_dice(means)
                row["val_time_s"] = time.perf_counter() - tv
            elapsed += row["epoch_time_s"] + row.get("val_time_s", 0.0)
            row["elapsed_s"] = elapsed
            history.append(row)
            improved = (
                "val_mean_dice" in row
                and not math.isnan(row["val_mean_dice"])
                and (math.isnan(best_dice) or row["val_mean_dice"] > best_dice)
            )
            if improved:
                best_dice, best_epoch = float(row["val_mean_dice"]), epoch + 1
            if info.is_main:
                m_meta = replace(meta, epoch=epoch + 1, metrics=dict(row))
                if validation and (improved or not best_path.exists()):
                    save_checkpoint(best_path, net.state_dict(), m_meta)
                save_checkpoint(
                    last_path,
                    net.state_dict(),
                    m_meta,
                    training={
                        "epoch": epoch + 1,
                        "optimizer": parts.optimizer.state_dict(),
                        "scheduler": parts.scheduler.state_dict(),
                        "scaler": parts.scaler.state_dict(),
                        "rng": rng_states(),
                        "history_json": json.dumps(history),
                        "best_dice": best_dice,
                        "best_epoch": best_epoch,
                    },
                )
                assert writer is not None
                writer.epoch_end(row, history)
            barrier(info)
            if stop_after_epoch is not None and stop_after_epoch(epoch + 1):
                break
        final: dict[str, dict[str, float]] = {}
        if validation and (not history or history[-1]["epoch"] == cfg.epochs):
            val_dir = files.validation
            if info.is_main:
                val_dir.mkdir(parents=True, exist_ok=True)
            barrier(info)
            final, rows, records = final_validation(
                net,
                validation,
                plan,
                val_dir,
                overlap=cfg.overlap,
                device=device,
                amp_dtype=amp_dtype,
                info=info,
                hd95=cfg.final_hd95,
            )
            if info.is_main:
                write_validation_tables(val_dir, records)
                doc = {
                    "fold": fold,
                    "epoch": cfg.epochs,
                    "grid": "original",
                    "mean": final,
                    "cases": rows,
                }
                atomic_write_text(
                    files.validation_final, json.dumps(doc, indent=2) + "\n", overwrite=True
                )
    finally:
        if writer is not None:
            writer.close()
        loader.close()
    return FoldResult(
        fold=fold,
        out_dir=out,
        best_checkpoint=best_path if validation else None,
        last_checkpoint=last_path,
        best_epoch=best_epoch,
        best_mean_dice=best_dice,
        final_metrics=final,
        epochs=int(history[-1]["epoch"]) if history else start_epoch,
        wall_s=time.perf_counter() - t_start,
        history=history,
    )


__all__ = [
    "FoldResult",
    "fit",
    "rng_states",
    "seed_everything",
    "set_rng_states",
]
