"""Restoring probabilities with torch: the same numbers as scipy's zoom (the CPU reference
``resample_to_shape(order=1)``), argmax in bounded slabs, half-precision inputs, CUDA."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage
from support.paths import REPO

from medseg.transforms.resample_torch import resample_probabilities, restore_labels
from medseg.transforms.spatial import resample_to_shape

CASES = [
    ((5, 7, 4), (11, 13, 9)),  # up-sampling, odd factors
    ((17, 12, 9), (6, 5, 4)),  # down-sampling
    ((9, 1, 6), (4, 3, 13)),  # mixed, an axis of size 1
    ((8, 8, 8), (8, 3, 8)),  # identity on two axes
    ((6, 5, 7), (1, 9, 2)),  # down to a single plane
]


def _smooth(k: int, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    raw = rng.normal(size=(k, *shape)).astype(np.float32)
    return np.stack([ndimage.gaussian_filter(c, 1.0) for c in raw]).astype(np.float32)


@pytest.mark.parametrize(("src", "dst"), CASES)
def test_resample_matches_scipy_zoom(src: tuple[int, ...], dst: tuple[int, ...]) -> None:
    p = np.random.default_rng(1).random((3, *src), dtype=np.float32)
    ref = resample_to_shape(p, dst, order=1)  # scipy zoom(grid_mode=True, mode="nearest")
    got = resample_probabilities(p, dst).numpy()
    assert got.shape == (3, *dst) and got.dtype == np.float32
    np.testing.assert_allclose(got, ref, atol=2e-6, rtol=0)
    lab = restore_labels(p, dst, max_chunk_bytes=1)  # one output plane per slab
    np.testing.assert_allclose(
        restore_labels(p, dst, return_probabilities=True).probabilities.astype(np.float32),  # type: ignore[union-attr]
        ref,
        atol=1e-3,
    )
    top2 = np.sort(ref, axis=0)[-2:]
    decided = (top2[1] - top2[0]) > 1e-5  # ties within float32 rounding may go either way
    assert np.array_equal(lab.labels[decided], ref.argmax(0)[decided])


def test_half_voxel_alignment_and_edge_extension_on_a_ramp() -> None:
    """A ramp ``v[i] = i`` up-sampled 4 → 8: inner outputs sample ``(o + 0.5) / 2 - 0.5``,
    outputs beyond the first/last input centre keep the edge value."""
    ramp = np.broadcast_to(np.arange(4, dtype=np.float32)[:, None, None], (4, 2, 2))[None]
    got = resample_probabilities(np.ascontiguousarray(ramp), (8, 2, 2)).numpy()[0, :, 0, 0]
    expected = np.clip((np.arange(8) + 0.5) / 2 - 0.5, 0, 3)
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_streaming_argmax_equals_full_resampling_for_any_chunk() -> None:
    p = _smooth(5, (14, 11, 9))
    full = resample_probabilities(p, (31, 20, 17)).numpy().argmax(0)
    for budget in (1, 5 * 20 * 17 * 4 * 3, 10**9):
        r = restore_labels(p, (31, 20, 17), max_chunk_bytes=budget)
        assert r.labels.dtype == np.uint8 and r.probabilities is None
        assert np.array_equal(r.labels, full)
        assert r.chunk_bytes <= max(budget, 5 * 20 * 17 * 4)  # the documented bound
    assert restore_labels(p, (31, 20, 17), max_chunk_bytes=1).planes_per_chunk == 1


def test_two_classes_take_the_one_channel_route_with_the_same_labels() -> None:
    """Two classes: the labels are those of argmax over both resampled channels (computed
    from their difference); ties go to class 0, as argmax."""
    for seed in range(3):
        p = _smooth(2, (14, 11, 9), seed=seed)
        full = resample_probabilities(p, (31, 20, 17)).numpy()
        expected = full.argmax(0)
        got = restore_labels(p, (31, 20, 17)).labels
        near_tie = np.abs(full[1] - full[0]) < 1e-6  # float rounding may differ only here
        assert np.array_equal(got[~near_tie], expected[~near_tie])
        assert got.mean() > 0.05 and got.mean() < 0.95  # both classes present
    flat = np.full((2, 4, 4, 4), 0.5, np.float32)  # an exact tie everywhere: class 0
    assert not restore_labels(flat, (7, 7, 7)).labels.any()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_inputs(dtype: torch.dtype) -> None:
    p = _smooth(4, (10, 9, 8))
    q = torch.from_numpy(p).to(dtype)
    ref = resample_to_shape(q.float().numpy(), (19, 17, 15), order=1)
    r = restore_labels(q, (19, 17, 15), return_probabilities=True)
    np.testing.assert_allclose(r.probabilities.astype(np.float32), ref, atol=2e-3)  # type: ignore[union-attr]
    assert np.mean(r.labels == ref.argmax(0)) > 0.999


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match=r"\(K, X, Y, Z\)"):
        restore_labels(np.zeros((4, 4, 4), np.float32), (2, 2, 2))
    with pytest.raises(ValueError, match="floating point"):
        restore_labels(np.zeros((2, 4, 4, 4), np.int64), (2, 2, 2))
    with pytest.raises(ValueError, match="positive"):
        resample_probabilities(np.zeros((2, 4, 4, 4), np.float32), (2, 0, 2))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu() -> None:
    p = torch.from_numpy(_smooth(6, (20, 18, 16))).cuda()
    cpu = restore_labels(p.cpu(), (41, 37, 30), return_probabilities=True)
    gpu = restore_labels(p, (41, 37, 30), return_probabilities=True)
    assert np.mean(cpu.labels == gpu.labels) > 0.9999
    np.testing.assert_allclose(cpu.probabilities, gpu.probabilities, atol=1e-3)  # type: ignore[arg-type]


def test_restore_benchmark_smoke(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "bench_restore.py"), "--smoke"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "identical argmax" in proc.stdout and "nnU-Net" in proc.stdout
