"""The training loader: cached preprocessed cases → random patches → augmented batches.

Cases are preprocessed once into the disk cache (:mod:`medseg.cache`); every sample then
memory-maps its case, cuts a patch (foreground-biased, :mod:`medseg.transforms.sampling`) and
augments only that patch (:mod:`medseg.transforms.augmentation`). Randomness is derived from
``(seed, epoch, global sample index)`` so a run is reproducible whatever ``num_workers`` is,
and DDP ranks (``rank``/``world_size``) draw disjoint sample indices.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from medseg.datasets import Case
from medseg.plan import Plan


class TrainLoader:
    """Iterable over batches ``{"image": FloatTensor (B, C, *patch), "label": LongTensor
    (B, 1, *patch), "case_id": list[str]}``; one pass = ``iterations_per_epoch`` batches.

    Call :meth:`set_epoch` before each epoch (as with ``DistributedSampler``) to get new
    samples; without it every pass repeats the same batches.
    """

    def __init__(
        self,
        plan: Plan,
        cases: Sequence[Case],
        cache_dir: Path,
        *,
        num_workers: int,
        seed: int,
        iterations_per_epoch: int = 250,
        batch_size: int | None = None,
        augment: bool = True,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        raise NotImplementedError

    def set_epoch(self, epoch: int) -> None:
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError

    def __iter__(self) -> Iterator[dict[str, Any]]:
        raise NotImplementedError


def make_train_loader(
    plan: Plan,
    cases: Sequence[Case],
    cache_dir: str | Path,
    *,
    num_workers: int,
    seed: int,
    iterations_per_epoch: int = 250,
    batch_size: int | None = None,
    augment: bool = True,
    rank: int = 0,
    world_size: int = 1,
) -> TrainLoader:
    """Preprocess ``cases`` into ``cache_dir`` (if not cached yet) and return the loader.

    Args:
        plan: preprocessing, patch size, batch size, augmentation and foreground ratio.
        cases: the training cases (with labels).
        cache_dir: cache root; arrays live in ``cache_dir/<plan.preprocessing_key()>/``.
        num_workers: torch ``DataLoader`` worker processes (0 = in the main process).
        seed: base seed; batches are a deterministic function of (seed, epoch, rank).
        iterations_per_epoch: batches per pass over the loader (per rank).
        batch_size: per-rank batch size (default ``plan.batch_size``).
        augment: apply the plan's augmentation (False: patches only, e.g. for validation).
        rank, world_size: DDP rank and number of ranks; ranks draw different samples.

    Yields (per iteration) a dict with ``image`` ``torch.float32 (B, C, *plan.patch_size)``,
    ``label`` ``torch.int64 (B, 1, *plan.patch_size)`` and ``case_id`` (list of B str).
    """
    return TrainLoader(
        plan,
        cases,
        Path(cache_dir),
        num_workers=num_workers,
        seed=seed,
        iterations_per_epoch=iterations_per_epoch,
        batch_size=batch_size,
        augment=augment,
        rank=rank,
        world_size=world_size,
    )


__all__ = ["TrainLoader", "make_train_loader"]
