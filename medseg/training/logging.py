"""Training progress outputs (rank 0 only): a log line per epoch (logger
``medseg.training`` and ``log.txt``), ``metrics.csv``, TensorBoard events (``tensorboard/``) and
``progress.png`` (loss, validation Dice per label against epoch and against wall-clock
training time, learning rate; matplotlib Agg backend). :func:`time_to_dice` reads the
time-to-accuracy figure off a history.

The history (one dict per epoch) lives in the checkpoint, so after ``--resume`` the CSV and the
plot are rewritten from it and stay consistent with the weights.
"""

from __future__ import annotations

import csv
import io
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from medseg.io.atomic import atomic_path, atomic_write_text
from medseg.model_folder import FoldFolder

log = logging.getLogger("medseg.training")


def format_epoch_line(row: dict[str, Any], epochs: int) -> str:
    """``epoch 3/100 loss 0.4123 lr 9.7e-03 time 12.3s 41.2 patches/s val dice LA 0.8123``."""
    parts = [
        f"epoch {row['epoch']}/{epochs}",
        f"loss {row['train_loss']:.4f}",
        f"lr {row['lr']:.3g}",
        f"time {row['epoch_time_s']:.1f}s",
        f"{row['patches_per_s']:.1f} patches/s",
    ]
    dice = {k[len("val_dice_") :]: v for k, v in row.items() if k.startswith("val_dice_")}
    if dice and not all(_isnan(v) for v in dice.values()):
        parts.append("val dice " + " ".join(f"{k} {v:.4f}" for k, v in dice.items()))
    return "  ".join(parts)


def _isnan(v: Any) -> bool:
    return isinstance(v, float) and math.isnan(v)


class ProgressWriter:
    """Writes the per-epoch outputs into a fold's folder (construct only on rank 0)."""

    def __init__(self, files: FoldFolder, epochs: int, tensorboard: bool = True) -> None:
        self.files = files
        self.epochs = epochs
        self._tb: Any = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as exc:  # pragma: no cover - tensorboard is a dependency
                raise RuntimeError("tensorboard is required for training logs") from exc
            self._tb = SummaryWriter(log_dir=str(files.tensorboard))

    def epoch_end(self, row: dict[str, Any], history: Sequence[dict[str, Any]]) -> None:
        line = format_epoch_line(row, self.epochs)
        log.info(line)
        with self.files.log.open("a", encoding="utf-8") as fh:
            fh.write(line + "\n")
        if self._tb is not None:
            step = int(row["epoch"])
            for k, v in row.items():
                if k != "epoch" and isinstance(v, (int, float)) and not _isnan(v):
                    self._tb.add_scalar(k, float(v), step)
            self._tb.flush()
        write_csv(self.files.metrics, history)
        plot_progress(self.files.progress, history)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def read_history(path: Path) -> list[dict[str, Any]]:
    """The epochs of a ``metrics.csv`` written by :func:`write_csv`, numbers as floats (empty
    cells dropped)."""
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    out = []
    for row in rows:
        rec: dict[str, Any] = {}
        for k, v in row.items():
            if v in ("", None):
                continue
            try:
                rec[k] = float(v)
            except ValueError:
                rec[k] = v
        out.append(rec)
    return out


def plot_dice_vs_time(path: Path, curves: Mapping[str, Sequence[tuple[float, float]]]) -> None:
    """One line per fold (``{"fold 0": [(seconds, dice), ...]}``): validation mean Dice
    against wall-clock training time, written atomically (``crossval/dice_vs_time.png``)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, curve in curves.items():
        if curve:
            ax.plot([t / 60 for t, _ in curve], [d for _, d in curve], marker="o", ms=3, label=name)
    ax.set_xlabel("training time (min)")
    ax.set_ylabel("validation mean Dice")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    if curves:
        ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path, overwrite=True) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)


def write_csv(path: Path, history: Sequence[dict[str, Any]]) -> None:
    """All epochs as CSV (columns = union of keys, first-seen order), written atomically."""
    cols: list[str] = []
    for row in history:
        for k in row:
            if k not in cols:
                cols.append(k)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
    w.writeheader()
    for row in history:
        w.writerow({k: row.get(k, "") for k in cols})
    atomic_write_text(path, buf.getvalue(), overwrite=True)


def time_to_dice(history: Sequence[dict[str, Any]], threshold: float) -> float:
    """Seconds of training (epochs plus periodic validation, ``elapsed_s``) until the mean
    validation Dice first reached ``threshold``; NaN when it never did."""
    return next((t for t, d in dice_curve(history) if d >= threshold), float("nan"))


def dice_curve(history: Sequence[dict[str, Any]]) -> list[tuple[float, float]]:
    """``(elapsed seconds, mean validation Dice)`` at every validated epoch."""
    return [
        (float(r["elapsed_s"]), float(r["val_mean_dice"]))
        for r in history
        if "elapsed_s" in r
        and isinstance(r.get("val_mean_dice"), float)
        and not math.isnan(r["val_mean_dice"])
    ]


def plot_progress(path: Path, history: Sequence[dict[str, Any]]) -> None:
    """``progress.png``: training loss and validation Dice per label vs epoch (left),
    validation mean Dice vs wall-clock training time (middle), learning rate (right). Written
    atomically with the Agg backend."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    if not history:
        return
    epochs = [r["epoch"] for r in history]
    fig, (ax, ax_t, ax_lr) = plt.subplots(1, 3, figsize=(15, 4))
    ax.plot(epochs, [r["train_loss"] for r in history], label="train loss", color="tab:blue")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax2 = ax.twinx()
    keys = [k for k in history[-1] if k.startswith("val_dice_")]
    for k in keys:
        pts = [(r["epoch"], r[k]) for r in history if k in r and not _isnan(r[k])]
        if pts:
            ax2.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, label=k[4:])
    ax2.set_ylabel("validation Dice")
    ax2.set_ylim(0, 1)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, loc="center right", fontsize=8)
    curve = dice_curve(history)
    if curve:
        ax_t.plot([t / 60 for t, _ in curve], [d for _, d in curve], marker="o", ms=3)
    ax_t.set_xlabel("training time (min)")
    ax_t.set_ylabel("validation mean Dice")
    ax_t.set_ylim(0, 1)
    ax_t.grid(alpha=0.3)
    ax_lr.plot(epochs, [r["lr"] for r in history], color="tab:gray")
    ax_lr.set_xlabel("epoch")
    ax_lr.set_ylabel("learning rate")
    fig.tight_layout()
    with atomic_path(path, overwrite=True) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)


__all__ = [
    "ProgressWriter",
    "dice_curve",
    "format_epoch_line",
    "plot_dice_vs_time",
    "plot_progress",
    "read_history",
    "time_to_dice",
    "write_csv",
]
