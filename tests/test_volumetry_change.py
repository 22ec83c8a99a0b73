"""Longitudinal change, volume comparison and Bland–Altman agreement against hand-computed
numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medseg.volumetry import VolumeEntry, agreement, compare_volumes, longitudinal_change
from medseg.volumetry.change import CHANGE_FIELDS, percent_of_mean


def _e(label: int, voxels: int, mm3_per_voxel: float, name: str = "") -> VolumeEntry:
    return VolumeEntry(label, name or f"s{label}", voxels, voxels * mm3_per_voxel)


def test_longitudinal_change_and_statuses() -> None:
    base = {1: _e(1, 1000, 2.0), 2: _e(2, 500, 2.0), 4: _e(4, 0, 2.0)}
    follow = {1: _e(1, 1300, 1.5), 3: _e(3, 40, 1.5), 4: _e(4, 0, 1.5)}
    recs = {r.label: r for r in longitudinal_change("p01_t1", follow, base, "p01_t0")}
    assert sorted(recs) == [1, 2, 3, 4]
    r1 = recs[1]
    assert (r1.baseline_ml, r1.followup_ml) == (2.0, 1.95)  # 1000 × 2 mm³, 1300 × 1.5 mm³
    assert r1.change_ml == pytest.approx(-0.05)
    assert r1.change_percent == pytest.approx(-2.5)
    assert r1.status == "present_in_both" and r1.baseline_case == "p01_t0"
    assert recs[2].status == "disappeared" and recs[2].change_percent == pytest.approx(-100.0)
    assert recs[3].status == "new" and math.isnan(recs[3].change_percent)
    assert recs[3].change_ml == pytest.approx(0.06)
    assert recs[4].status == "absent_in_both" and recs[4].change_ml == 0.0
    assert all(r.label_set_differs for r in recs.values())
    assert tuple(r1.as_dict()) == CHANGE_FIELDS


def test_same_label_sets_not_flagged() -> None:
    base = {1: _e(1, 10, 1.0), 2: _e(2, 0, 1.0)}
    follow = {1: _e(1, 12, 1.0)}  # 2 absent in both: the present sets are equal
    recs = longitudinal_change("c", follow, base)
    assert not any(r.label_set_differs for r in recs)
    assert recs[0].baseline_case == "c" and recs[0].change_percent == pytest.approx(20.0)


def test_comparison_and_bland_altman() -> None:
    this_sets = [
        {1: _e(1, 110, 1.0), 2: _e(2, 50, 1.0)},
        {1: _e(1, 90, 1.0), 2: _e(2, 0, 1.0), 3: _e(3, 5, 1.0)},
        {1: _e(1, 100, 1.0), 2: _e(2, 60, 1.0)},
    ]
    other_sets = [
        {1: _e(1, 100, 1.0), 2: _e(2, 40, 1.0)},
        {1: _e(1, 100, 1.0), 2: _e(2, 30, 1.0)},
        {1: _e(1, 100, 1.0), 2: _e(2, 60, 1.0), 5: _e(5, 0, 1.0)},
    ]
    recs = [
        r
        for i, (a, b) in enumerate(zip(this_sets, other_sets, strict=True))
        for r in compare_volumes(f"c{i}", a, b)
    ]
    c0 = {r.label: r for r in recs if r.case == "c0"}
    assert c0[1].difference_ml == pytest.approx(0.01)
    assert c0[1].difference_percent == pytest.approx(10.0)
    assert c0[1].mean_ml == pytest.approx(0.105)
    c1 = {r.label: r for r in recs if r.case == "c1"}
    assert c1[2].status == "only_other" and c1[3].status == "only_this"
    assert math.isnan(c1[3].difference_percent)
    assert percent_of_mean(c1[2]) == pytest.approx(-200.0)

    ag = {a.label: a for a in agreement(recs)}
    d1 = np.array([10.0, -10.0, 0.0]) / 1000.0
    a1 = ag[1]
    assert a1.n_pairs == 3 and a1.n_one_sided == 0
    assert a1.bias_ml == pytest.approx(d1.mean(), abs=1e-15)
    assert a1.sd_ml == pytest.approx(d1.std(ddof=1))
    assert a1.loa_high_ml == pytest.approx(d1.mean() + 1.96 * d1.std(ddof=1))
    pct1 = 100 * np.array([10 / 105, -10 / 95, 0.0])
    assert a1.bias_percent == pytest.approx(pct1.mean())
    assert ag[2].n_pairs == 3 and ag[2].n_one_sided == 1
    assert 5 not in ag or ag[5].n_pairs == 0  # absent from both sets: not a pair
    pooled = ag[0]
    assert pooled.name == "all" and pooled.n_pairs == 7 and pooled.n_one_sided == 2
