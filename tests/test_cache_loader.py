"""Disk cache (keys, invalidation, atomic files) and the training loader (shapes, determinism,
DDP ranks, foreground ratio)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from support.plans import tiny_plan

import medseg.cache as cache_mod
from medseg.cache import cache_folder, ensure_cached, load_cached
from medseg.datasets import Case
from medseg.errors import ConfigError
from medseg.loader import TrainLoader, foreground_positions
from medseg.plan.schema import Plan

SHAPE = (30, 26, 20)


def _plan(patch=(16, 16, 8), batch=3, ratio=1 / 3, spacing=(1.0, 1.0, 2.0)) -> Plan:
    return tiny_plan(
        channels=("A", "B"),
        labels={0: "background", 1: "dot"},
        target_spacing=spacing,
        patch_size=patch,
        batch_size=batch,
        foreground_ratio=ratio,
    )


def _cases(root: Path, rng: np.random.Generator, n: int = 3) -> list[Case]:
    """Two channels, a tiny 2x2x1 foreground dot (so random patches usually miss it)."""
    out = []
    aff = np.diag([1.0, 1.0, 2.0, 1.0])
    for i in range(n):
        lab = np.zeros(SHAPE, np.uint8)
        lab[4 + i : 6 + i, 20:22, 15] = 1
        paths = []
        for c in range(2):
            p = root / f"c{i}_{c}.nii.gz"
            nib.save(nib.Nifti1Image(rng.normal(c * 10, 1, SHAPE).astype(np.float32), aff), str(p))
            paths.append(p)
        lp = root / f"c{i}_label.nii.gz"
        nib.save(nib.Nifti1Image(lab, aff), str(lp))
        out.append(Case(f"c{i}", tuple(paths), lp))
    return out


def test_cache_layout_hit_and_invalidation(
    tmp_path: Path, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    cases = _cases(tmp_path, rng)
    plan = _plan()
    prep = plan.preprocessing
    cached = ensure_cached(prep, cases, tmp_path / "cache")
    folder = cache_folder(prep, tmp_path / "cache")
    assert folder.name == prep.key()
    assert {p.name for p in folder.iterdir()} >= {
        "c0.image.npy",
        "c0.label.npy",
        "c0.fg.npy",
        "c0.json",
        "preprocessing.json",
    }
    assert not [p for p in folder.iterdir() if ".part" in p.name]  # atomic writes left nothing
    img = cached[0].load_image()
    assert isinstance(img, np.memmap) and img.dtype == np.float32 and img.shape == (2, *SHAPE)
    assert abs(float(np.asarray(img[1]).mean())) < 1e-4  # z-scored per channel
    fg = cached[0].foreground()
    lab = np.asarray(cached[0].load_label())
    assert len(fg) == 4 and np.all(lab[tuple(fg[:, 1:].T)] == 1)
    assert json.loads((folder / "c0.json").read_text())["info"]["original_shape"] == list(SHAPE)

    calls: list[str] = []
    real = cache_mod.cache_case

    def spy(prep_, case, cache_dir, seed=0):  # type: ignore[no-untyped-def]
        calls.append(case.case_id)
        return real(prep_, case, cache_dir, seed)

    monkeypatch.setattr(cache_mod, "cache_case", spy)
    ensure_cached(prep, cases, tmp_path / "cache")
    assert calls == []  # everything was a hit
    st = cases[1].images[0].stat()
    os.utime(cases[1].images[0], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert load_cached(prep, cases[1], tmp_path / "cache") is None
    ensure_cached(prep, cases, tmp_path / "cache")
    assert calls == ["c1"]  # only the touched case was recomputed
    calls.clear()
    edited = prep.model_copy(update={"target_spacing": (2.0, 2.0, 2.0)})
    again = ensure_cached(edited, cases, tmp_path / "cache")
    assert calls == ["c0", "c1", "c2"] and cache_folder(edited, tmp_path / "cache") != folder
    assert again[0].load_image().shape == (2, 15, 13, 20)
    calls.clear()
    batch5 = plan.model_copy(update={"batch_size": 5})
    ensure_cached(batch5.preprocessing, cases, tmp_path / "cache")
    assert calls == []  # batch size does not affect preprocessing


def test_parallel_caching_matches_serial(tmp_path: Path, rng: np.random.Generator) -> None:
    cases = _cases(tmp_path, rng)
    prep = _plan(spacing=(1.5, 1.5, 2.0)).preprocessing
    serial = ensure_cached(prep, cases, tmp_path / "serial")
    parallel = ensure_cached(prep, cases, tmp_path / "parallel", num_workers=2)
    assert [c.case_id for c in parallel] == ["c0", "c1", "c2"]
    for a, b in zip(serial, parallel, strict=True):
        np.testing.assert_array_equal(np.asarray(a.load_image()), np.asarray(b.load_image()))
        np.testing.assert_array_equal(a.foreground(), b.foreground())
        assert a.info == b.info


def test_loader_batches_shapes_and_determinism(tmp_path: Path, rng: np.random.Generator) -> None:
    cases = _cases(tmp_path, rng)
    plan = _plan()
    kw = dict(seed=11, iterations_per_epoch=4)
    loader = TrainLoader(plan, cases, tmp_path / "cache", num_workers=0, **kw)
    batches = list(loader)
    assert len(batches) == len(loader) == 4
    b = batches[0]
    assert b["image"].dtype == torch.float32 and b["image"].shape == (3, 2, 16, 16, 8)
    assert b["label"].dtype == torch.int64 and b["label"].shape == (3, 1, 16, 16, 8)
    assert len(b["case_id"]) == 3
    again = list(TrainLoader(plan, cases, tmp_path / "cache", num_workers=0, **kw))
    for x, y in zip(batches, again, strict=True):
        assert torch.equal(x["image"], y["image"]) and torch.equal(x["label"], y["label"])
    other_seed = list(
        TrainLoader(plan, cases, tmp_path / "cache", num_workers=0, seed=12, iterations_per_epoch=4)
    )
    assert not torch.equal(batches[0]["image"], other_seed[0]["image"])
    loader.set_epoch(1)
    assert not torch.equal(next(iter(loader))["image"], batches[0]["image"])
    inf = loader.infinite()
    assert [next(inf)["image"].shape[0] for _ in range(6)] == [3] * 6


def test_loader_workers_and_ranks(tmp_path: Path, rng: np.random.Generator) -> None:
    cases = _cases(tmp_path, rng, n=2)
    plan = _plan()
    single = list(
        TrainLoader(plan, cases, tmp_path / "c", num_workers=0, seed=3, iterations_per_epoch=2)
    )
    multi_loader = TrainLoader(
        plan, cases, tmp_path / "c", num_workers=2, seed=3, iterations_per_epoch=2
    )
    multi = list(multi_loader)
    multi_loader.close()  # workers stop; iterating again restarts them, same data
    assert torch.equal(list(multi_loader)[1]["image"], multi[1]["image"])
    multi_loader.close()
    for x, y in zip(single, multi, strict=True):  # the worker count does not change the data
        assert torch.equal(x["image"], y["image"]) and torch.equal(x["label"], y["label"])
    r0 = TrainLoader(
        plan,
        cases,
        tmp_path / "c",
        num_workers=0,
        seed=3,
        iterations_per_epoch=2,
        rank=0,
        world_size=2,
    )
    r1 = TrainLoader(
        plan,
        cases,
        tmp_path / "c",
        num_workers=0,
        seed=3,
        iterations_per_epoch=2,
        rank=1,
        world_size=2,
    )
    assert not set(r0.indices()) & set(r1.indices())
    assert not torch.equal(next(iter(r0))["image"], next(iter(r1))["image"])
    with pytest.raises(ConfigError, match="rank 2"):
        TrainLoader(plan, cases, tmp_path / "c", num_workers=0, seed=3, rank=2, world_size=2)


def test_foreground_ratio_makes_tiny_structures_seen(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    cases = _cases(tmp_path, rng)
    assert foreground_positions(3, 1 / 3) == 1 and foreground_positions(2, 0.33) == 1
    assert foreground_positions(4, 0.0) == 0

    def fg_share(ratio: float) -> float:
        loader = TrainLoader(
            _plan(ratio=ratio),
            cases,
            tmp_path / "cache",
            num_workers=0,
            seed=0,
            iterations_per_epoch=20,
            augment=False,
        )
        hits = [bool(lbl.sum() > 0) for b in loader for lbl in b["label"]]
        return float(np.mean(hits))

    without, with_third = fg_share(0.0), fg_share(1 / 3)
    assert without < 0.2  # a 4-voxel dot is rarely hit by chance
    assert with_third >= 1 / 3  # every forced position contains foreground


@pytest.mark.realdata
def test_loader_on_la2018(tmp_path: Path) -> None:
    """Two real cases through cache + loader: shapes, and forced patches contain the atrium."""
    from support.paths import shared_path

    from medseg.datasets import load_dataset

    ds = load_dataset(shared_path("la2018_msd"))
    plan = tiny_plan(
        channels=ds.channel_names,
        labels=ds.label_names,
        target_spacing=(1.25, 1.25, 1.25),
        patch_size=(32, 32, 32),
        foreground_ratio=0.5,
    )
    loader = TrainLoader(
        plan, ds.cases[:2], tmp_path, num_workers=0, seed=0, iterations_per_epoch=4
    )
    shapes = {c.case_id: c.load_image().shape for c in loader.cached}
    assert all(s[0] == 1 and abs(s[3] - 44) <= 1 for s in shapes.values())  # 88 z at 0.625 mm
    for b in loader:
        assert b["image"].shape == (2, 1, 32, 32, 32)
        assert b["forced_foreground"][1] and b["label"][1].sum() > 0
