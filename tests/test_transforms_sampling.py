"""Patch sampling: foreground forcing, uniform centres inside the image, padded extraction."""

from __future__ import annotations

import numpy as np

from medseg.transforms.sampling import choose_center, extract_patch, foreground_locations


def test_foreground_locations_subsample_per_class(rng: np.random.Generator) -> None:
    lab = np.zeros((20, 20, 20), np.uint8)
    lab[:10] = 1
    lab[15, 15, 15] = 2
    locs = foreground_locations(lab, rng, max_per_class=100)
    assert locs.dtype == np.int32 and locs.shape == (101, 4)
    assert set(locs[:, 0]) == {1, 2}
    assert np.all(lab[tuple(locs[:, 1:].T)] == locs[:, 0])
    assert foreground_locations(np.zeros((3, 3, 3), np.uint8), rng).shape == (0, 4)


def test_forced_centres_hit_every_class_equally(rng: np.random.Generator) -> None:
    lab = np.zeros((40, 40, 40), np.uint8)
    lab[:20] = 1  # big class
    lab[30, 31, 32] = 2  # one-voxel class
    locs = foreground_locations(lab, rng)
    centres = [choose_center(lab.shape, (16, 16, 16), rng, locs, True) for _ in range(400)]
    values = np.array([lab[c] for c in centres])
    assert np.all(values > 0)
    assert 0.4 < np.mean(values == 2) < 0.6


def test_uniform_centres_keep_patch_inside(rng: np.random.Generator) -> None:
    shape, patch = (30, 25, 12), (16, 16, 16)
    for _ in range(200):
        c = choose_center(shape, patch, rng)
        for n, p, ci in zip(shape, patch, c, strict=True):
            lo = ci - p // 2
            if n >= p:
                assert lo >= 0 and lo + p <= n
            else:
                assert ci == n // 2


def test_extract_patch_pads_outside() -> None:
    a = np.arange(2 * 6 * 5 * 4, dtype=np.float32).reshape(2, 6, 5, 4)
    p = extract_patch(a, (3, 2, 2), (4, 4, 4))
    np.testing.assert_array_equal(p, a[:, 1:5, 0:4, 0:4])
    q = extract_patch(a, (0, 0, 0), (4, 4, 4), pad_value=-1)
    assert q.shape == (2, 4, 4, 4)
    np.testing.assert_array_equal(q[:, 2:, 2:, 2:], a[:, :2, :2, :2])
    assert np.all(q[:, :2] == -1)


def test_extract_patch_from_memory_map(tmp_path) -> None:
    a = np.random.default_rng(1).normal(size=(1, 10, 9, 8)).astype(np.float32)
    np.save(tmp_path / "a.npy", a)
    mm = np.load(tmp_path / "a.npy", mmap_mode="r")
    p = extract_patch(mm, (5, 4, 4), (4, 4, 4))
    assert isinstance(p, np.ndarray) and not isinstance(p, np.memmap)
    np.testing.assert_array_equal(p, a[:, 3:7, 2:6, 2:6])
