"""Training-loader throughput (patches/s): medseg's cached loader vs a plain MONAI pipeline.

Both pipelines produce the same thing from the same cases: a foreground-biased patch of the
plan's patch size, augmented with the plan's augmentation (the same medseg augmentation code).

* **medseg**: ``TrainLoader`` — cases preprocessed once into the disk cache (reported
  separately as a one-off cost), then memory-mapped patch reads + augmentation.
* **MONAI reference**: ``monai.data.Dataset`` + ``DataLoader`` with ``LoadImaged`` →
  ``EnsureChannelFirstd`` → ``Orientationd(RAS)`` → ``Spacingd(target spacing)`` →
  ``NormalizeIntensityd`` → ``RandCropByPosNegLabeld`` (region large enough for the spatial
  augmentation) → the same augmentation; i.e. every sample re-reads and re-resamples its case.

Usage::

    python bench/bench_loader.py [--data /work/shared/data/la2018_msd] [--workers 2]
        [--batches 15] [--rounds 3] [--patch 128 128 80]
    python bench/bench_loader.py --smoke    # 4 synthetic 24x24x20 cases, seconds (tests)

The two pipelines are timed in alternating rounds (workers of one are shut down before the other
runs), and the median of the per-round ratios is reported, so that load from other jobs on a
shared machine affects both sides alike.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def _reference_loader(plan: Any, cases: list[Any], workers: int, batch: int, seed: int) -> Any:
    import monai.transforms as mt
    import torch
    from monai.data import DataLoader, Dataset

    from medseg.transforms.augmentation import apply_augmentation, region_size, sample_params

    patch = tuple(int(p) for p in plan.patch_size)
    # Largest region the augmentation can ask for (max rotation and scale), as a fixed crop.
    from medseg.transforms.augmentation import AugmentationParams

    aug = plan.augmentation
    worst = AugmentationParams(
        rotation_rad=tuple(
            math.radians(max(abs(a) for a in aug.rotation_range_deg)) for _ in range(3)
        ),  # type: ignore[arg-type]
        scale=max(aug.scale_range),
    )
    crop = region_size(patch, worst)

    class Augment(mt.Randomizable, mt.MapTransform):
        def __init__(self) -> None:
            mt.MapTransform.__init__(self, ["image", "label"])
            self.rng = np.random.default_rng(seed)

        def randomize(self, data: Any = None) -> None:
            pass

        def set_random_state(self, seed: int | None = None, state: Any = None) -> Any:
            self.rng = np.random.default_rng(seed)
            return self

        def __call__(self, d: dict[str, Any]) -> dict[str, Any]:
            params = sample_params(plan.augmentation, self.rng)
            need = region_size(patch, params)
            img = np.asarray(d["image"])
            lab = np.asarray(d["label"])[0].astype(np.int16)
            # centre-crop the fixed region to the needed one (or keep all of it)
            lo = [max(0, (c - n) // 2) for c, n in zip(img.shape[1:], need, strict=True)]
            sl = tuple(slice(a, a + n) for a, n in zip(lo, need, strict=True))
            im, lb = apply_augmentation(img[(slice(None), *sl)], lab[sl], params, patch)
            assert lb is not None
            return {
                "image": torch.from_numpy(im),
                "label": torch.from_numpy(lb[None].astype(np.int64)),
            }

    keys = ["image", "label"]
    ratio = plan.foreground_ratio
    transforms = mt.Compose(
        [
            mt.LoadImaged(keys, image_only=True),
            mt.EnsureChannelFirstd(keys),
            mt.Orientationd(keys, axcodes="RAS"),
            mt.Spacingd(
                keys, pixdim=plan.preprocessing.target_spacing, mode=("bilinear", "nearest")
            ),
            mt.NormalizeIntensityd("image", channel_wise=True),
            mt.RandCropByPosNegLabeld(
                keys,
                "label",
                spatial_size=crop,
                pos=ratio,
                neg=1 - ratio,
                num_samples=1,
                allow_smaller=True,
            ),
            mt.SpatialPadd(keys, spatial_size=crop),
            Augment(),
        ]
    )
    transforms.set_random_state(seed)
    items = [{"image": str(c.images[0]), "label": str(c.label)} for c in cases]
    n_items = 10**6
    ds = Dataset(
        [
            items[i % len(items)]
            for i in np.random.default_rng(seed).integers(len(items), size=n_items)
        ],
        transform=transforms,
    )

    def collate(samples: list[Any]) -> dict[str, Any]:
        flat = [s[0] if isinstance(s, list) else s for s in samples]
        return {k: torch.stack([s[k] for s in flat]) for k in ("image", "label")}

    return DataLoader(
        ds,
        batch_size=batch,
        num_workers=workers,
        collate_fn=collate,
        shuffle=False,
        persistent_workers=False,
        worker_init_fn=lambda _: torch.set_num_threads(1),
    )


def _time(make_iter: Any, warmup: int, batches: int) -> tuple[float, int, tuple[int, ...]]:
    """Start a fresh iterator (workers start), skip ``warmup`` batches, time ``batches``."""
    it = make_iter()
    shape: tuple[int, ...] = ()
    for _ in range(warmup):
        shape = tuple(next(it)["image"].shape)
    t0 = time.perf_counter()
    n = 0
    for _ in range(batches):
        n += int(next(it)["image"].shape[0])
    dt = time.perf_counter() - t0
    del it
    return dt, n, shape


def write_smoke_dataset(root: Path, n: int = 4, shape: tuple[int, int, int] = (24, 24, 20)) -> Path:
    """A tiny Decathlon-layout dataset: noisy images with one ball label each (1 mm voxels)."""
    import json

    import nibabel as nib

    rng = np.random.default_rng(0)
    (root / "imagesTr").mkdir(parents=True, exist_ok=True)
    (root / "labelsTr").mkdir(exist_ok=True)
    g = np.indices(shape, dtype=float)
    training = []
    for i in range(n):
        centre = [int(rng.integers(7, s - 7)) for s in shape]
        label = (sum((g[a] - centre[a]) ** 2 for a in range(3)) <= 25).astype(np.uint8)
        image = (label + rng.normal(0, 0.5, shape)).astype(np.float32)
        for sub, arr in (("imagesTr", image), ("labelsTr", label)):
            nib.save(nib.Nifti1Image(arr, np.eye(4)), root / sub / f"c{i}.nii.gz")
        training.append({"image": f"./imagesTr/c{i}.nii.gz", "label": f"./labelsTr/c{i}.nii.gz"})
    doc = {"name": "smoke", "modality": {"0": "MRI"}, "labels": {"0": "background", "1": "ball"}}
    (root / "dataset.json").write_text(json.dumps({**doc, "training": training}))
    return root


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("/work/shared/data/la2018_msd"))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batches", type=int, default=15, help="timed batches per pipeline/round")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds (median ratio)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument(
        "--patch", type=int, nargs=3, default=None, help="patch size (default: the plan's)"
    )
    ap.add_argument("--cases", type=int, default=12)
    ap.add_argument("--cache", type=Path, default=None, help="cache folder (default: temp)")
    ap.add_argument("--smoke", action="store_true", help="tiny synthetic dataset (tests)")
    args = ap.parse_args()
    smoke_dir = tempfile.TemporaryDirectory(prefix="medseg_bench_smoke_") if args.smoke else None
    if smoke_dir is not None:  # removed at exit
        args.data = write_smoke_dataset(Path(smoke_dir.name) / "data")
        args.cache = Path(smoke_dir.name) / "cache"
        args.workers, args.batches, args.rounds, args.warmup = 0, 2, 1, 1
        args.patch, args.cases = [16, 16, 16], 4

    import torch

    from medseg.datasets import load_dataset
    from medseg.loader import TrainLoader
    from medseg.planning import plan_dataset

    torch.set_num_threads(1)
    ds = load_dataset(args.data)
    cases = ds.cases[: args.cases]
    plan = plan_dataset(ds.subset([c.case_id for c in cases]), voxels_per_case=5000)
    if args.patch:
        from medseg.planning import network_topology

        plan = plan.model_copy(
            update={
                "patch_size": tuple(args.patch),
                "network": network_topology(args.patch, plan.preprocessing.target_spacing),
            }
        )
    cache = args.cache or Path(tempfile.mkdtemp(prefix="medseg_bench_cache_"))
    t0 = time.perf_counter()
    ours = TrainLoader(
        plan,
        cases,
        cache,
        num_workers=args.workers,
        seed=0,
        iterations_per_epoch=10**6,
        batch_size=args.batch_size,
    )
    cache_s = time.perf_counter() - t0
    ref = _reference_loader(plan, cases, args.workers, args.batch_size, seed=0)

    def ours_iter() -> Any:
        ours.close()  # fresh workers each round, none left running during the other's round
        return iter(ours)

    def ref_iter() -> Any:
        return iter(ref)

    rows = []
    ratios = []
    for r in range(args.rounds):
        order = [("medseg cached loader", ours_iter), ("MONAI Dataset pipeline", ref_iter)]
        if r % 2:
            order.reverse()
        rates = {}
        for name, make in order:
            dt, n, shape = _time(make, args.warmup, args.batches)
            if name.startswith("medseg"):
                ours.close()
            rates[name] = n / dt
            rows.append((r + 1, name, n, dt, n / dt, shape))
        ratios.append(rates["medseg cached loader"] / rates["MONAI Dataset pipeline"])
    print(
        f"data: {args.data} ({len(cases)} cases), patch {tuple(plan.patch_size)}, batch "
        f"{args.batch_size}, workers {args.workers}, {args.rounds} alternating rounds of "
        f"{args.batches} timed batches (after {args.warmup} warm-up) per pipeline, target "
        f"spacing {plan.preprocessing.target_spacing}"
    )
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"one-off cache build {cache_s:.1f} s (num_workers={args.workers})"
    )
    print()
    print("| round | pipeline | patches | seconds | patches/s | batch shape |")
    print("|---:|---|---:|---:|---:|---|")
    for r, name, n, dt, rate, shape in rows:
        print(f"| {r} | {name} | {n} | {dt:.2f} | {rate:.2f} | {shape} |")
    print()
    print("per-round ratio medseg / MONAI: " + ", ".join(f"{x:.2f}x" for x in ratios))
    print(f"median ratio = {float(np.median(ratios)):.2f}x (target >= 3x)")


if __name__ == "__main__":
    main()
