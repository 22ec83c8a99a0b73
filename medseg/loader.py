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
from typing import Any, cast

import numpy as np
from numpy.typing import NDArray

from medseg.cache import CachedCase, ensure_cached
from medseg.datasets import Case
from medseg.errors import ConfigError
from medseg.plan.schema import Plan
from medseg.transforms.augmentation import (
    AugmentationParams,
    apply_augmentation,
    region_size,
    sample_params,
)
from medseg.transforms.sampling import choose_center, extract_patch


def foreground_positions(batch_size: int, foreground_ratio: float) -> int:
    """Number of batch positions forced to a foreground centre (nnU-Net's rule: the last
    ``batch_size - round(batch_size * (1 - foreground_ratio))`` positions)."""
    return batch_size - round(batch_size * (1.0 - foreground_ratio))


class PatchSampler:
    """Maps a global sample index to one ``(image, label)`` patch, deterministically.

    Sample ``i`` uses ``numpy.random.default_rng([seed, i])``: it picks a case uniformly, a
    patch centre (foreground-forced when its batch position says so; for a cascade's second
    stage, ``plan.roi``, the centre of the foreground's box moved by up to ``jitter_mm``),
    augmentation parameters,
    cuts the needed region from the memory-mapped cache and augments it. Picklable, so it
    runs unchanged in ``DataLoader`` worker processes.
    """

    def __init__(
        self,
        plan: Plan,
        cached: Sequence[CachedCase],
        *,
        seed: int,
        batch_size: int,
        augment: bool = True,
    ) -> None:
        if not cached:
            raise ConfigError("training loader: no cases to sample from; expected at least one")
        self.plan = plan
        self.cached = list(cached)
        self.seed = int(seed)
        self.batch_size = int(batch_size)
        self.augment = augment
        self.n_fg = foreground_positions(self.batch_size, plan.foreground_ratio)
        self._arrays: dict[str, tuple[NDArray[Any], NDArray[Any] | None, NDArray[Any]]] = {}
        self._boxes: dict[str, Any] = {}  # plan.roi: each case's foreground box

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_arrays"] = {}  # memory maps are reopened in each worker
        state["_boxes"] = {}
        return state

    def _open(self, cc: CachedCase) -> tuple[NDArray[Any], NDArray[Any] | None, NDArray[Any]]:
        hit = self._arrays.get(cc.case_id)
        if hit is None:
            hit = (cc.load_image(), cc.load_label(), cc.foreground())
            self._arrays[cc.case_id] = hit
        return hit

    def _roi_center(
        self,
        cc: CachedCase,
        label: NDArray[Any],
        shape: tuple[int, ...],
        patch: tuple[int, ...],
        rng: np.random.Generator,
    ) -> tuple[int, int, int]:
        """A cascade's second stage (``plan.roi``): the centre of the case's foreground box
        moved by up to ``jitter_mm``; a case without foreground gives a uniform centre."""
        from medseg.transforms.roi import foreground_box, jittered_center, mm_to_voxels

        assert self.plan.roi is not None
        if cc.case_id not in self._boxes:
            self._boxes[cc.case_id] = foreground_box(np.asarray(label))
        box = self._boxes[cc.case_id]
        if box is None:
            return choose_center(shape, patch, rng)
        spacing = self.plan.preprocessing.target_spacing
        return jittered_center(box, mm_to_voxels(self.plan.roi.jitter_mm, spacing), rng)

    def sample(self, index: int) -> dict[str, Any]:
        """Patch ``index``: ``{"image": float32 (C, *patch), "label": int64 (1, *patch),
        "case_id": str, "forced_foreground": bool}`` (numpy arrays)."""
        rng = np.random.default_rng([self.seed, int(index)])
        cc = self.cached[int(rng.integers(len(self.cached)))]
        image, label, fg = self._open(cc)
        force = (int(index) % self.batch_size) >= self.batch_size - self.n_fg
        patch = tuple(int(p) for p in self.plan.patch_size)
        if self.plan.roi is not None and label is not None:
            center = self._roi_center(cc, label, image.shape[1:], patch, rng)
        else:
            center = choose_center(image.shape[1:], patch, rng, fg, force)
        params = (
            sample_params(self.plan.augmentation, rng) if self.augment else AugmentationParams()
        )
        region = region_size(patch, params)
        img_r = extract_patch(image, center, region, pad_value=0.0)
        lab_r = None if label is None else extract_patch(label, center, region, pad_value=0)
        img_p, lab_p = apply_augmentation(img_r, lab_r, params, patch)
        if lab_p is None:
            lab_p = np.zeros(patch, dtype=np.int64)
        return {
            "image": np.ascontiguousarray(img_p, dtype=np.float32),
            "label": np.ascontiguousarray(lab_p, dtype=np.int64)[None],
            "case_id": cc.case_id,
            "forced_foreground": bool(force and len(fg) > 0),
        }


def _worker_init(_: int) -> None:
    import torch

    torch.set_num_threads(1)  # one thread per worker: workers are the parallelism


class TrainLoader:
    """Iterable over batches ``{"image": FloatTensor (B, C, *patch), "label": LongTensor
    (B, 1, *patch), "case_id": list[str], "forced_foreground": list[bool]}``; one pass =
    ``iterations_per_epoch`` batches.

    Call :meth:`set_epoch` before each epoch (as with ``DistributedSampler``) to get new
    samples; without it every pass repeats the same batches. :meth:`infinite` yields batches
    forever, advancing the epoch itself.

    Sample indices: batch ``b`` of epoch ``e`` on rank ``r`` holds the global indices
    ``((e * iterations_per_epoch + b) * world_size + r) * batch_size + p`` for positions ``p``,
    so ranks never share a sample and results do not depend on ``num_workers``.

    Construction preprocesses ``cases`` into ``cache_dir`` (if not cached yet).

    Args:
        plan: preprocessing, patch size, batch size, augmentation and foreground ratio.
        cases: the training cases (with labels).
        cache_dir: cache root; arrays live in ``cache_dir/<plan.preprocessing.key()>/``.
        num_workers: torch ``DataLoader`` worker processes (0 = in the main process).
        seed: base seed; batches are a deterministic function of (seed, epoch, rank).
        iterations_per_epoch: batches per pass over the loader (per rank).
        batch_size: per-rank batch size (default ``plan.batch_size``).
        augment: apply the plan's augmentation (False: patches only, e.g. for validation).
        rank, world_size: DDP rank and number of ranks; ranks draw different samples.
        pin_memory: page-locked batches for faster host-to-GPU copies (``DataLoader`` option).
    """

    def __init__(
        self,
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
        pin_memory: bool = False,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ConfigError(f"rank {rank}: expected a rank in [0, world_size={world_size})")
        if iterations_per_epoch < 1:
            raise ConfigError(f"iterations_per_epoch: expected >= 1, found {iterations_per_epoch}")
        missing = [c.case_id for c in cases if c.label is None]
        if missing:
            raise ConfigError(
                f"training cases: expected a label for each, found none for {missing}"
            )
        self.plan = plan
        self.cache_dir = Path(cache_dir)
        self.num_workers = int(num_workers)
        self.seed = int(seed)
        self.iterations_per_epoch = int(iterations_per_epoch)
        self.batch_size = int(batch_size if batch_size is not None else plan.batch_size)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.epoch = 0
        self.pin_memory = bool(pin_memory)
        self.cached = ensure_cached(
            plan.preprocessing, cases, self.cache_dir, num_workers=self.num_workers
        )
        self.sampler = PatchSampler(
            plan, self.cached, seed=self.seed, batch_size=self.batch_size, augment=augment
        )
        self._loader: Any = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.iterations_per_epoch

    def indices(self, epoch: int | None = None) -> list[int]:
        """Global sample indices of one epoch on this rank, in batch order."""
        e = self.epoch if epoch is None else int(epoch)
        out: list[int] = []
        for b in range(self.iterations_per_epoch):
            base = (e * self.iterations_per_epoch + b) * self.world_size + self.rank
            out.extend(base * self.batch_size + p for p in range(self.batch_size))
        return out

    def _dataloader(self) -> Any:
        if self._loader is None:
            import torch.utils.data as tud

            if self.num_workers and self.sampler.augment:
                # Import MONAI's transforms once here, so forked workers do not each spend
                # seconds importing it on their first spatial augmentation.
                import monai.transforms  # noqa: F401

            loader = self

            class _Indices(tud.Sampler[int]):
                def __iter__(self) -> Iterator[int]:
                    return iter(loader.indices())

                def __len__(self) -> int:
                    return loader.iterations_per_epoch * loader.batch_size

            self._loader = tud.DataLoader(
                cast(Any, _SampleDataset(self.sampler)),
                batch_size=self.batch_size,
                sampler=_Indices(),
                num_workers=self.num_workers,
                collate_fn=_collate,
                worker_init_fn=_worker_init if self.num_workers else None,
                persistent_workers=self.num_workers > 0,
                pin_memory=self.pin_memory,
                prefetch_factor=4 if self.num_workers else None,
            )
        return self._loader

    def __iter__(self) -> Iterator[dict[str, Any]]:
        yield from self._dataloader()

    def close(self) -> None:
        """Stop the worker processes (they persist between epochs otherwise); the loader can
        be iterated again afterwards (workers restart)."""
        self._loader = None

    def infinite(self) -> Iterator[dict[str, Any]]:
        """Batches forever: one epoch after another, calling :meth:`set_epoch` itself."""
        while True:
            yield from self
            self.set_epoch(self.epoch + 1)


class _SampleDataset:
    """Map-style dataset over global sample indices (torch-compatible ``__getitem__``)."""

    def __init__(self, sampler: PatchSampler) -> None:
        self.sampler = sampler

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.sampler.sample(index)

    def __len__(self) -> int:  # nominal; indices come from the sampler
        return 2**62


def _collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    import torch

    return {
        "image": torch.from_numpy(np.stack([it["image"] for it in items])),
        "label": torch.from_numpy(np.stack([it["label"] for it in items])),
        "case_id": [it["case_id"] for it in items],
        "forced_foreground": [it["forced_foreground"] for it in items],
    }


#: The documented way to build the loader (the same callable as :class:`TrainLoader`).


__all__ = ["PatchSampler", "TrainLoader", "foreground_positions"]
