"""Batch sources for the training loop.

The loop asks a source for one epoch of batches at a time (``epoch_batches(epoch)``); a
source's sampling is a pure function of ``(seed, epoch, rank)``, so a resumed run draws exactly
the batches the interrupted run would have drawn, with no sampler state to save.

:class:`PatchSampler` is the built-in source: random patches from preprocessed in-memory cases,
a fixed fraction centred on foreground voxels (nnU-Net's oversampling), no augmentation.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt
import torch


class BatchSource(Protocol):
    """Anything that yields one epoch of ``dict(image=(B, C, *patch) float32 tensor,
    label=(B, 1, *patch) int64 tensor)`` batches, deterministically from ``epoch``."""

    def epoch_batches(self, epoch: int) -> Iterable[dict[str, torch.Tensor]]: ...


@dataclass
class ArrayCase:
    """A preprocessed case: ``image`` float32 ``(C, X, Y, Z)``, ``label`` integer
    ``(X, Y, Z)`` (or ``None``), ``spacing`` in mm (array axis order)."""

    case_id: str
    image: npt.NDArray[np.float32]
    label: npt.NDArray[np.integer] | None
    spacing: tuple[float, float, float]


class PatchSampler:
    """Random patches with foreground oversampling.

    Args:
        cases: preprocessed training cases (labels required).
        patch_size: ``(px, py, pz)`` voxels; images smaller than that are zero-padded.
        batch_size: patches per batch.
        iterations: batches per epoch.
        foreground_ratio: fraction of each batch (rounded, at least 1 when > 0) centred on a
            random voxel of a random foreground label present in the case.
        seed, rank: sampling is seeded with ``(seed, epoch, rank)``.
    """

    def __init__(
        self,
        cases: Sequence[ArrayCase],
        patch_size: Sequence[int],
        batch_size: int,
        iterations: int,
        *,
        foreground_ratio: float = 1.0 / 3,
        seed: int = 0,
        rank: int = 0,
        max_fg_points: int = 10000,
    ) -> None:
        if not cases:
            raise ValueError("PatchSampler needs at least one case")
        self.cases = list(cases)
        self.patch = tuple(int(p) for p in patch_size)
        self.batch_size = batch_size
        self.iterations = iterations
        self.n_fg = max(1, round(batch_size * foreground_ratio)) if foreground_ratio > 0 else 0
        self.seed = seed
        self.rank = rank
        # Foreground voxel coordinates per case and label (subsampled, fixed seed).
        rng = np.random.default_rng([seed, 999_999])
        self._fg: list[dict[int, npt.NDArray[np.int64]]] = []
        for c in self.cases:
            if c.label is None:
                raise ValueError(f"case {c.case_id}: PatchSampler needs a label")
            per: dict[int, npt.NDArray[np.int64]] = {}
            for lab in np.unique(c.label):
                if lab == 0:
                    continue
                pts = np.argwhere(c.label == lab)
                if len(pts) > max_fg_points:
                    pts = pts[rng.choice(len(pts), max_fg_points, replace=False)]
                per[int(lab)] = pts.astype(np.int64)
            self._fg.append(per)

    def __len__(self) -> int:
        return self.iterations

    def epoch_batches(self, epoch: int) -> Iterator[dict[str, torch.Tensor]]:
        rng = np.random.default_rng([self.seed, epoch, self.rank])
        for _ in range(self.iterations):
            imgs, labs = [], []
            for b in range(self.batch_size):
                ci = int(rng.integers(len(self.cases)))
                force_fg = b >= self.batch_size - self.n_fg
                img, lab = self._crop(ci, force_fg, rng)
                imgs.append(img)
                labs.append(lab)
            yield {
                "image": torch.from_numpy(np.stack(imgs)),
                "label": torch.from_numpy(np.stack(labs)[:, None].astype(np.int64)),
            }

    def _crop(
        self, ci: int, force_fg: bool, rng: np.random.Generator
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.integer]]:
        case = self.cases[ci]
        assert case.label is not None
        shape = case.label.shape
        fg = self._fg[ci]
        if force_fg and fg:
            lab = list(fg)[int(rng.integers(len(fg)))]
            pts = fg[lab]
            centre = pts[int(rng.integers(len(pts)))]
            lo = [int(centre[a]) - self.patch[a] // 2 for a in range(3)]
        else:
            lo = [
                int(
                    rng.integers(
                        min(0, shape[a] - self.patch[a]), max(0, shape[a] - self.patch[a]) + 1
                    )
                )
                for a in range(3)
            ]
        # clamp so the patch overlaps the image as much as possible
        lo = [
            min(max(lo[a], min(0, shape[a] - self.patch[a])), max(0, shape[a] - self.patch[a]))
            for a in range(3)
        ]
        img = np.zeros((case.image.shape[0], *self.patch), dtype=np.float32)
        lab_out = np.zeros(self.patch, dtype=case.label.dtype)
        src = tuple(slice(max(lo[a], 0), min(lo[a] + self.patch[a], shape[a])) for a in range(3))
        dst = tuple(slice(src[a].start - lo[a], src[a].stop - lo[a]) for a in range(3))
        img[(slice(None), *dst)] = case.image[(slice(None), *src)]
        lab_out[dst] = case.label[src]
        return img, lab_out


__all__ = ["ArrayCase", "BatchSource", "PatchSampler"]
