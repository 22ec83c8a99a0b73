"""Lesion matching when many lesions touch one predicted component: the results equal a
straightforward per-lesion computation (the previous implementation, kept here as the
reference), also through the bounded-cube path for large surfaces, and the surfels of a
matched component are extracted once however many lesions touch it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from scipy import ndimage

import medseg.metrics.lesions as lesions_mod
from medseg.components import connected_components
from medseg.metrics.lesions import MISSED_HD95_MM, lesion_wise_scores, merged_lesions
from medseg.metrics.surface import surfel_surface_distances, weighted_percentile

_S18 = ndimage.generate_binary_structure(3, 2)


def _reference(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float]) -> list[tuple]:
    """Per lesion (dilation 3, 26-connectivity), on the whole image: (detected, n components,
    Dice, HD95) against the union of the whole predicted components touching it."""
    lesions, n = merged_lesions(ref, 3, 26)
    cc, _ = connected_components(pred, 26)
    out = []
    for lid in range(1, n + 1):
        les = lesions == lid
        comps = [int(c) for c in np.unique(cc[ndimage.binary_dilation(les, _S18, 3)]) if c]
        if not comps:
            out.append((False, 0, 0.0, MISSED_HD95_MM))
            continue
        pm = np.isin(cc, comps)
        dice = 2.0 * np.count_nonzero(pm & les) / (np.count_nonzero(pm) + np.count_nonzero(les))
        sd = surfel_surface_distances(pm, les, tuple(float(s) for s in spacing), method="kdtree")
        hd = max(
            weighted_percentile(sd.pred_to_ref, sd.pred_weights, 95.0, border=False),
            weighted_percentile(sd.ref_to_pred, sd.ref_weights, 95.0, border=False),
        )
        out.append((True, len(comps), dice, hd))
    return out


def _many_lesions_on_a_blob(rng: np.random.Generator, k: int) -> tuple[np.ndarray, np.ndarray]:
    """A thick irregular slab (one predicted component), ``k*k`` small lesions next to it
    (some merged, some overlapping it), and a few far away (missed) and a stray component."""
    n = 8 * k
    pred = np.zeros((n, n, 16), bool)
    pred[:, :, 0:3] = True
    pred[rng.random((n, n, 16)) < 0.02] = False  # holes do not split a 3-voxel slab
    pred[:, :, 0] = True
    ref = np.zeros_like(pred)
    xs, ys = np.meshgrid(np.arange(3, n, 8), np.arange(3, n, 8), indexing="ij")
    zs = rng.integers(2, 5, xs.shape)
    ref[xs, ys, zs] = True
    ref[xs[:2, :2] + 1, ys[:2, :2], zs[:2, :2]] = True  # a few two-voxel lesions
    ref[4, 4, 14] = True  # far from the slab: missed
    pred[n - 3 : n, n - 3 : n, 13:16] = True  # a false positive
    return pred, ref


@pytest.mark.parametrize("force_cubes", [False, True])
@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.8, 0.8, 2.5)])
def test_equal_to_the_reference(
    monkeypatch: pytest.MonkeyPatch, force_cubes: bool, spacing: tuple[float, float, float]
) -> None:
    if force_cubes:
        monkeypatch.setattr(lesions_mod, "DIRECT_SURFELS", 0)
        monkeypatch.setattr(lesions_mod, "CELL_MM", 3.0)
    pred, ref = _many_lesions_on_a_blob(np.random.default_rng(1), 5)
    got = lesion_wise_scores(pred, ref, spacing, min_volume_mm3=0)
    want = _reference(pred, ref, spacing)
    assert len(got.lesions) == len(want) >= 20
    for rec, (det, ncomp, dice, hd) in zip(got.lesions, want, strict=True):
        assert (rec.detected, rec.n_pred_components) == (det, ncomp)
        assert rec.dice == pytest.approx(dice, rel=1e-12)
        assert rec.hd95_mm == pytest.approx(hd, rel=1e-9, abs=1e-9)
    assert got.num_fp == 1 and got.num_fn == 1


def test_surfels_of_a_component_are_extracted_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Work per lesion does not repeat the shared component's: surfaces extracted = lesions
    (their own, small) + distinct matched component sets (here the slab, once)."""
    made: list[tuple[int, ...]] = []
    real = lesions_mod._Surface.__init__

    def spy(self: Any, mask: np.ndarray, offset: Sequence[int], spacing: Any) -> None:
        made.append(mask.shape)
        real(self, mask, offset, spacing)

    monkeypatch.setattr(lesions_mod._Surface, "__init__", spy)
    pred, ref = _many_lesions_on_a_blob(np.random.default_rng(2), 4)
    res = lesion_wise_scores(pred, ref, (1.0, 1.0, 1.0), min_volume_mm3=0)
    detected = sum(r.detected for r in res.lesions)
    assert detected == len(res.lesions) - 1 >= 10  # all but the far one
    assert len(made) == detected + 1
    assert sum(s[:2] == pred.shape[:2] for s in made) == 1  # the slab's surface, once
