"""The training loop for one fold: :func:`fit`.

It is driven by any :class:`~medseg.training.sampling.BatchSource`, validates by sliding-window
inference (:func:`medseg.inference.sliding_window_probabilities`) on whole preprocessed
validation cases, and writes into ``out_dir`` (rank 0 only):

* ``checkpoint_last.pt`` after every epoch (weights + optimizer, scheduler, grad-scaler and RNG
  states + history), ``checkpoint_best.pt`` whenever the mean validation Dice improves;
* ``metrics.csv``, ``log.txt``, ``progress.png``, ``tensorboard/``;
* ``validation_final.json``: per-case and mean Dice and HD95 (mm) of the final weights.

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
from medseg.errors import ConfigError, InputError, OutputExistsError
from medseg.inference import sliding_window_probabilities
from medseg.io.atomic import atomic_write_text
from medseg.models import NetworkSpec, build_network
from medseg.training.config import TrainConfig
from medseg.training.distributed import (
    DistInfo,
    all_reduce_sum,
    barrier,
    broadcast_flag,
    env_dist_info,
    gather_lists,
)
from medseg.training.optim import DeepSupervisionLoss, build_optimizer, build_scheduler
from medseg.training.sampling import ArrayCase, BatchSource

log = logging.getLogger("medseg.training")

LAST = "checkpoint_last.pt"
BEST = "checkpoint_best.pt"


@dataclass
class FoldResult:
    """Outcome of :func:`fit` for one fold.

    ``final_metrics`` maps label name → ``{"dice": ..., "hd95_mm": ...}`` (means over the
    validation cases where defined, NaN when undefined for every case); ``best_mean_dice`` is
    the best mean foreground Dice seen at a validation epoch (NaN if never validated).
    """

    fold: int | None
    out_dir: Path
    best_checkpoint: Path
    last_checkpoint: Path
    best_epoch: int
    best_mean_dice: float
    final_metrics: dict[str, dict[str, float]]
    epochs: int
    wall_s: float
    history: list[dict[str, Any]] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# devices, precision, seeding
# --------------------------------------------------------------------------------------------
def resolve_device(cfg: TrainConfig, info: DistInfo) -> torch.device:
    """``cuda`` / ``cpu`` as configured; ``auto`` picks CUDA when available (logged)."""
    kind = cfg.device
    if kind == "auto":
        kind = "cuda" if torch.cuda.is_available() else "cpu"
        log.info("device auto -> %s", kind)
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("device: cuda requested but no CUDA device is available")
        return torch.device("cuda", info.local_rank)
    return torch.device("cpu")


def resolve_amp(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    """Autocast dtype, or ``None`` for full float32 (see :class:`TrainConfig.amp`)."""
    if cfg.amp == "none":
        return None
    if cfg.amp == "bf16":
        return torch.bfloat16
    if cfg.amp == "fp16":
        if device.type != "cuda":
            raise ConfigError("amp: fp16 needs a CUDA device; use bf16 or none on CPU")
        return torch.float16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return None


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
# validation
# --------------------------------------------------------------------------------------------
def case_metrics(
    pred: np.ndarray,
    ref: np.ndarray,
    spacing: Sequence[float],
    label_names: dict[int, str],
    *,
    hd95: bool,
    case: str = "",
) -> dict[str, dict[str, float]]:
    """Per-label Dice (and HD95 in mm) of two label arrays on one grid, via
    :func:`medseg.metrics.evaluate_pair` (its conventions: Dice NaN when the label is absent
    from both; HD95 = max of the directed 95th percentiles, the image diagonal when exactly one
    mask is empty). Returns ``{label name: {"dice": ..., "hd95_mm": ...}}``."""
    from medseg.metrics import evaluate_pair
    from medseg.volume import LabelMap, affine_from_geometry

    labels = [k for k in sorted(label_names) if k != 0]
    aff = affine_from_geometry(spacing, (0.0, 0.0, 0.0))
    p = LabelMap(pred, aff, "<prediction>", label_names=label_names)
    r = LabelMap(ref, aff, "<reference>", label_names=label_names)
    out: dict[str, dict[str, float]] = {}
    for rec in evaluate_pair(p, r, labels=labels, case=case, label_names=label_names):
        m = {"dice": float(rec.dice)}
        if hd95:
            m["hd95_mm"] = float(rec.hd95_mm)
        out[rec.name] = m
    return out


def validate(
    model: torch.nn.Module,
    cases: Sequence[ArrayCase],
    patch_size: Sequence[int],
    label_names: dict[int, str],
    *,
    overlap: float,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    info: DistInfo,
    hd95: bool = False,
) -> tuple[dict[str, dict[str, float]], list[dict[str, Any]]]:
    """Sliding-window prediction of every validation case (dealt round-robin to the ranks),
    per-label metrics reduced across ranks: returns ``(means, per_case_rows)`` (all ranks'
    cases, on every rank)."""
    names = [label_names[k] for k in sorted(label_names) if k != 0]
    keys = ["dice", "hd95_mm"] if hd95 else ["dice"]
    sums = torch.zeros((len(names), len(keys), 2), dtype=torch.float64)  # sum, count
    rows: list[dict[str, Any]] = []
    for case in cases[info.rank :: info.world_size]:
        assert case.label is not None
        probs = sliding_window_probabilities(
            model,
            torch.from_numpy(case.image),
            patch_size,
            overlap=overlap,
            device=device,
            amp_dtype=amp_dtype,
        )
        pred = probs.argmax(0).numpy().astype(np.uint8)
        m = case_metrics(pred, case.label, case.spacing, label_names, hd95=hd95, case=case.case_id)
        rows.append({"case_id": case.case_id, **m})
        for i, n in enumerate(names):
            for j, k in enumerate(keys):
                v = m.get(n, {}).get(k, float("nan"))
                if not math.isnan(v):
                    sums[i, j, 0] += v
                    sums[i, j, 1] += 1
    sums = all_reduce_sum(sums, info)
    rows = gather_lists(rows, info)
    means = {
        n: {
            k: float(sums[i, j, 0] / sums[i, j, 1]) if sums[i, j, 1] > 0 else float("nan")
            for j, k in enumerate(keys)
        }
        for i, n in enumerate(names)
    }
    return means, rows


def mean_dice(metrics: dict[str, dict[str, float]]) -> float:
    vals = [m["dice"] for m in metrics.values() if not math.isnan(m["dice"])]
    return float(np.mean(vals)) if vals else float("nan")


# --------------------------------------------------------------------------------------------
# the loop
# --------------------------------------------------------------------------------------------
def fit(
    cfg: TrainConfig,
    spec: NetworkSpec,
    source: BatchSource,
    val_cases: Sequence[ArrayCase],
    meta: CheckpointMeta,
    out_dir: str | Path,
    *,
    resume: bool = False,
    fold: int | None = None,
    info: DistInfo | None = None,
    stop_after_epoch: Callable[[int], bool] | None = None,
) -> FoldResult:
    """Train one network and return a :class:`FoldResult`.

    Args:
        cfg: the recipe (epochs, optimizer, precision, validation cadence, ...).
        spec: the network to build.
        source: yields the training batches of each epoch (``(B, C, *patch)`` images).
        val_cases: preprocessed validation cases (whole volumes) with labels.
        meta: checkpoint metadata template (labels, channels, spacing, patch size, plan);
            epoch and metrics are filled in.
        out_dir: the fold's output folder. It must not hold a previous run unless ``resume``.
        resume: continue from ``out_dir/checkpoint_last.pt``.
        info: distributed placement (default: from the environment).
        stop_after_epoch: test hook, called with the 1-based epoch after its checkpoint is
            written; returning True ends training there (as an interruption would).
    """
    t_start = time.perf_counter()
    info = info or env_dist_info()
    out = Path(out_dir)
    device = resolve_device(cfg, info)
    amp_dtype = resolve_amp(cfg, device)
    if cfg.num_threads is not None:
        torch.set_num_threads(cfg.num_threads)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    last_path, best_path = out / LAST, out / BEST
    # decided on rank 0 and broadcast, so every rank raises together instead of hanging
    if broadcast_flag(info.is_main and not resume and last_path.exists(), info):
        raise OutputExistsError(last_path)
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
    ckpt = None
    if resume:
        if not last_path.exists():
            raise InputError(last_path, "--resume: no checkpoint_last.pt to resume from")
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

    seed_everything(cfg.seed, 0, info.rank)
    net = build_network(spec).to(device)
    if cfg.channels_last:
        net = net.to(memory_format=torch.channels_last_3d)  # type: ignore[call-overload]
    optimizer = build_optimizer(net.parameters(), cfg.optimizer)
    scheduler = build_scheduler(optimizer, cfg.optimizer, cfg.epochs)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    loss_fn = DeepSupervisionLoss(cfg.loss)
    history: list[dict[str, Any]] = []
    start_epoch, best_dice, best_epoch = 0, float("nan"), 0
    if ckpt is not None:
        tr = ckpt.training
        assert tr is not None
        net.load_state_dict(ckpt.state_dict)
        optimizer.load_state_dict(tr["optimizer"])
        scheduler.load_state_dict(tr["scheduler"])
        scaler.load_state_dict(tr["scaler"])
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

        writer = ProgressWriter(out, cfg.epochs)
    label_names = dict(meta.label_names)
    patch = list(meta.patch_size)
    try:
        for epoch in range(start_epoch, cfg.epochs):
            seed_everything(cfg.seed, epoch + 1, info.rank)
            net.train()
            t0 = time.perf_counter()
            # summed on the device: no host sync per iteration
            loss_acc = torch.zeros((), dtype=torch.float64, device=device)
            n_batches, n_patches = 0, 0
            batches = source.epoch_batches(epoch)
            if cfg.progress_bar and info.is_main:
                from tqdm import tqdm

                batches = tqdm(
                    batches,
                    total=cfg.iterations_per_epoch,
                    desc=f"epoch {epoch + 1}/{cfg.epochs}",
                    leave=False,
                )
            for batch in batches:
                x = batch["image"].to(device, non_blocking=True)
                y = batch["label"].to(device, non_blocking=True)
                if cfg.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last_3d)
                optimizer.zero_grad(set_to_none=True)
                with torch.autocast(
                    device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None
                ):
                    outp = train_model(x)
                loss = loss_fn(outp, y)
                scaler.scale(loss).backward()
                if cfg.optimizer.grad_clip is not None:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.optimizer.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                loss_acc += loss.detach().double()
                n_batches += 1
                n_patches += int(x.shape[0])
            lr = float(optimizer.param_groups[0]["lr"])
            scheduler.step()
            tot = all_reduce_sum(
                torch.tensor([float(loss_acc), n_batches, n_patches], dtype=torch.float64), info
            )
            dt = time.perf_counter() - t0
            row: dict[str, Any] = {
                "epoch": epoch + 1,
                "train_loss": float(tot[0]) / max(float(tot[1]), 1.0),
                "lr": lr,
                "epoch_time_s": dt,
                "patches_per_s": float(tot[2]) / dt if dt > 0 else float("nan"),
            }
            is_val = (epoch + 1) % cfg.val_every == 0 or epoch + 1 == cfg.epochs
            if is_val and val_cases:
                tv = time.perf_counter()
                means, _ = validate(
                    net,
                    val_cases,
                    patch,
                    label_names,
                    overlap=cfg.overlap,
                    device=device,
                    amp_dtype=amp_dtype,
                    info=info,
                )
                for name, m in means.items():
                    row[f"val_dice_{name}"] = m["dice"]
                row["val_mean_dice"] = mean_dice(means)
                row["val_time_s"] = time.perf_counter() - tv
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
                if improved or not best_path.exists():
                    save_checkpoint(best_path, net.state_dict(), m_meta)
                save_checkpoint(
                    last_path,
                    net.state_dict(),
                    m_meta,
                    training={
                        "epoch": epoch + 1,
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        "scaler": scaler.state_dict(),
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
        if val_cases and (not history or history[-1]["epoch"] == cfg.epochs):
            final, rows = validate(
                net,
                val_cases,
                patch,
                label_names,
                overlap=cfg.overlap,
                device=device,
                amp_dtype=amp_dtype,
                info=info,
                hd95=cfg.final_hd95,
            )
            if info.is_main:
                doc = {"fold": fold, "epoch": cfg.epochs, "mean": final, "cases": rows}
                atomic_write_text(
                    out / "validation_final.json", json.dumps(doc, indent=2) + "\n", overwrite=True
                )
    finally:
        if writer is not None:
            writer.close()
        close = getattr(source, "close", None)
        if close is not None:
            close()
    return FoldResult(
        fold=fold,
        out_dir=out,
        best_checkpoint=best_path,
        last_checkpoint=last_path,
        best_epoch=best_epoch,
        best_mean_dice=best_dice,
        final_metrics=final,
        epochs=int(history[-1]["epoch"]) if history else start_epoch,
        wall_s=time.perf_counter() - t_start,
        history=history,
    )


__all__ = [
    "BEST",
    "LAST",
    "FoldResult",
    "case_metrics",
    "fit",
    "mean_dice",
    "resolve_amp",
    "resolve_device",
    "rng_states",
    "seed_everything",
    "set_rng_states",
    "validate",
]
