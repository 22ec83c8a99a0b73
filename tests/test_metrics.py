"""Tests of medseg.metrics: analytic cases, empty-mask conventions, regions, aggregation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial.distance import cdist
from support.volumes import box, sphere

from medseg.errors import GeometryMismatchError, InvalidVolumeError
from medseg.metrics import (
    EmptyPolicy,
    LabelRecord,
    border_voxels,
    both_empty_record,
    evaluate_arrays,
    evaluate_pair,
    summarize,
)
from medseg.metrics.surface import border_surface_distances, weighted_percentile
from medseg.volume import LabelMap


def lm(arr: np.ndarray, spacing=(1.0, 1.0, 1.0), direction=None, name="mem") -> LabelMap:
    aff = np.eye(4)
    d = np.eye(3) if direction is None else np.asarray(direction, dtype=float)
    aff[:3, :3] = d * np.asarray(spacing)[None, :]
    return LabelMap(arr, aff, source=name)


def brute_force(pred: np.ndarray, ref: np.ndarray, spacing, tol: float) -> dict[str, float]:
    """Independent reference: all-pairs distances between scipy-eroded border voxels."""
    sp = np.asarray(spacing, dtype=float)
    bp = np.argwhere(pred & ~ndimage.binary_erosion(pred)) * sp
    br = np.argwhere(ref & ~ndimage.binary_erosion(ref)) * sp
    d = cdist(bp, br)
    d_pr, d_rp = d.min(axis=1), d.min(axis=0)
    n = d_pr.size + d_rp.size
    return {
        "hd_mm": max(d_pr.max(), d_rp.max()),
        "hd95_mm": max(np.percentile(d_pr, 95), np.percentile(d_rp, 95)),
        "assd_mm": (d_pr.sum() + d_rp.sum()) / n,
        "nsd": ((d_pr <= tol).sum() + (d_rp <= tol).sum()) / n,
    }


# --- surfaces --------------------------------------------------------------------------------


def test_border_voxels_equal_scipy_erosion_xor(rng: np.random.Generator) -> None:
    m = ndimage.binary_dilation(rng.random((12, 9, 7)) > 0.8, iterations=1)
    m[0, :, :] |= rng.random((9, 7)) > 0.5  # touches the array edge
    expected = m ^ ndimage.binary_erosion(m)
    np.testing.assert_array_equal(border_voxels(m), expected)


def test_border_voxels_thin_array_is_all_border() -> None:
    m = np.ones((2, 5, 5), dtype=bool)
    np.testing.assert_array_equal(border_voxels(m), m)


# --- analytic cases --------------------------------------------------------------------------


def test_identical_masks_are_perfect() -> None:
    a = box((20, 20, 20), (5, 5, 5), (15, 12, 10))
    (r,) = evaluate_pair(lm(a), lm(a.copy()))
    assert r.dice == 1.0 and r.iou == 1.0
    assert r.hd_mm == 0.0 and r.hd95_mm == 0.0 and r.assd_mm == 0.0 and r.nsd == 1.0
    assert r.fp == 0 and r.fn == 0 and r.tp == 10 * 7 * 5
    assert r.undefined == "" and not r.ref_empty and not r.pred_empty


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_shifted_box_overlap_and_hausdorff_use_spacing_of_each_axis(axis: int) -> None:
    spacing = (0.8, 0.47, 5.0)  # anisotropic, in array axis order
    shape = (30, 30, 30)
    lo, hi = [8, 8, 8], [18, 18, 18]
    ref = box(shape, lo, hi)
    lo2, hi2 = list(lo), list(hi)
    lo2[axis] += 2
    hi2[axis] += 2
    pred = box(shape, lo2, hi2)
    (r,) = evaluate_pair(lm(pred, spacing), lm(ref, spacing), tolerance_mm=0.5)
    assert r.tp == 8 * 10 * 10 and r.fp == 200 and r.fn == 200
    assert r.dice == pytest.approx(2 * 800 / 2000)
    assert r.iou == pytest.approx(800 / 1200)
    # Each face moves by 2 voxels along `axis`: HD = 2 * spacing[axis] exactly.
    assert r.hd_mm == pytest.approx(2 * spacing[axis])
    bf = brute_force(pred.astype(bool), ref.astype(bool), spacing, 0.5)
    for k, v in bf.items():
        assert getattr(r, k) == pytest.approx(v, abs=1e-9), k


def test_volumes_in_ml_and_counts() -> None:
    spacing = (0.5, 2.0, 3.0)  # 3 mm^3 per voxel
    ref = box((10, 10, 10), (0, 0, 0), (4, 5, 6))  # 120 voxels
    pred = box((10, 10, 10), (0, 0, 0), (2, 5, 6))  # 60 voxels
    (r,) = evaluate_pair(lm(pred, spacing), lm(ref, spacing))
    assert (r.ref_voxels, r.pred_voxels) == (120, 60)
    assert r.ref_ml == pytest.approx(120 * 3 / 1000)
    assert r.pred_ml == pytest.approx(60 * 3 / 1000)
    assert r.tp + r.fp + r.fn + r.tn == 1000


def test_concentric_spheres_hausdorff_is_radius_difference() -> None:
    shape = (41, 41, 41)
    ref = sphere(shape, (20, 20, 20), 12)
    pred = sphere(shape, (20, 20, 20), 8)
    (r,) = evaluate_pair(lm(pred, (1.5, 1.5, 1.5)), lm(ref, (1.5, 1.5, 1.5)))
    # Discretised spheres: border voxels lie within one voxel of the continuous surface.
    assert r.hd_mm == pytest.approx(4 * 1.5, abs=1.5)
    assert r.hd95_mm <= r.hd_mm
    vol_ml = 4 / 3 * math.pi * (12 * 1.5) ** 3 / 1000
    assert r.ref_ml == pytest.approx(vol_ml, rel=0.03)
    assert r.dice == pytest.approx(2 * 8**3 / (8**3 + 12**3), rel=0.05)


def test_sphere_shifted_by_known_vector() -> None:
    shape = (40, 40, 40)
    ref = sphere(shape, (20, 20, 20), 9)
    pred = sphere(shape, (23, 20, 16), 9)  # shift (3, 0, -4) voxels
    sp = (1.0, 2.0, 0.5)
    (r,) = evaluate_pair(lm(pred, sp), lm(ref, sp))
    shift_mm = math.hypot(3 * 1.0, 4 * 0.5)
    # A translated convex body: HD is at most the translation length (border voxels can
    # be slightly closer than the translation on the sides).
    assert r.hd_mm <= shift_mm + 1e-9
    assert r.hd_mm >= shift_mm - 1.0
    bf = brute_force(pred.astype(bool), ref.astype(bool), sp, 1.0)
    assert r.hd95_mm == pytest.approx(bf["hd95_mm"], abs=1e-9)
    assert r.assd_mm == pytest.approx(bf["assd_mm"], abs=1e-9)


def test_hd95_is_max_of_directed_percentiles_not_pooled() -> None:
    # A small hallucinated blob far away: pooled 95th percentile (MedPy) hides it because the
    # reference surface is large; the directed pred->ref percentile does not.
    # ref: 20^3 box, 2168 border voxels; blob: 6^3, 152 border voxels = 6.6% of the predicted
    # surface (> 5%) but 3.4% of both surfaces pooled (< 5%).
    shape = (60, 30, 30)
    ref = box(shape, (5, 5, 5), (25, 25, 25))
    pred = ref.copy()
    pred[45:51, 12:18, 12:18] = 1
    (r,) = evaluate_pair(lm(pred), lm(ref))
    sd = border_surface_distances(pred.astype(bool), ref.astype(bool), (1.0, 1.0, 1.0))
    pooled = float(np.percentile(np.concatenate([sd.pred_to_ref, sd.ref_to_pred]), 95))
    directed = max(np.percentile(sd.pred_to_ref, 95), np.percentile(sd.ref_to_pred, 95))
    assert r.hd95_mm == pytest.approx(directed)
    assert r.hd95_mm > pooled


def test_non_identity_direction_does_not_change_distances() -> None:
    ref = box((20, 20, 20), (4, 4, 4), (12, 14, 10))
    pred = box((20, 20, 20), (5, 4, 4), (12, 16, 10))
    sp = (0.7, 1.1, 2.5)
    lps = np.diag([-1.0, -1.0, 1.0])
    (a,) = evaluate_pair(lm(pred, sp), lm(ref, sp))
    (b,) = evaluate_pair(lm(pred, sp, lps), lm(ref, sp, lps))
    assert a.as_dict() == b.as_dict()


def test_mask_touching_image_edge_counts_edge_as_border() -> None:
    ref = box((10, 10, 10), (0, 0, 0), (10, 10, 5))  # fills half the image, touching 5 faces
    pred = box((10, 10, 10), (0, 0, 0), (10, 10, 7))
    (r,) = evaluate_pair(lm(pred), lm(ref))
    bf = brute_force(pred.astype(bool), ref.astype(bool), (1, 1, 1), 1.0)
    for k, v in bf.items():
        assert getattr(r, k) == pytest.approx(v, abs=1e-9), k


@pytest.mark.parametrize("method", ["edt", "kdtree", "auto"])
def test_distance_methods_agree_with_brute_force(rng: np.random.Generator, method: str) -> None:
    shape = (24, 20, 16)
    ref = ndimage.binary_dilation(rng.random(shape) > 0.97, iterations=2)
    pred = ndimage.binary_dilation(rng.random(shape) > 0.97, iterations=2)
    sp = (0.8, 0.47, 0.47)
    (r,) = evaluate_pair(lm(pred.astype(np.uint8), sp), lm(ref.astype(np.uint8), sp), method=method)
    bf = brute_force(pred, ref, sp, 1.0)
    for k, v in bf.items():
        assert getattr(r, k) == pytest.approx(v, abs=1e-9), k


def test_multilabel_equals_per_label_binary(rng: np.random.Generator) -> None:
    shape = (30, 26, 20)
    ref = np.zeros(shape, dtype=np.uint8)
    pred = np.zeros(shape, dtype=np.uint8)
    for v, c in ((1, (8, 8, 6)), (2, (20, 15, 12)), (3, (12, 18, 8))):
        ref[sphere(shape, c, 5) > 0] = v
        c2 = tuple(x + int(rng.integers(-2, 3)) for x in c)
        pred[sphere(shape, c2, 4) > 0] = v
    sp = (1.2, 0.9, 2.0)
    recs = evaluate_pair(lm(pred, sp), lm(ref, sp), tolerance_mm=1.5)
    assert [r.label for r in recs] == ["1", "2", "3"]
    for r in recs:
        v = int(r.label)
        (b,) = evaluate_pair(
            lm((pred == v).astype(np.uint8), sp),
            lm((ref == v).astype(np.uint8), sp),
            tolerance_mm=1.5,
        )
        for k in ("dice", "hd_mm", "hd95_mm", "assd_mm", "nsd", "tp", "fp", "fn"):
            assert getattr(r, k) == pytest.approx(getattr(b, k), abs=1e-12), (v, k)


# --- empty masks -----------------------------------------------------------------------------


def _diag(shape, spacing) -> float:
    return float(np.sqrt(np.sum((np.asarray(shape) * np.asarray(spacing)) ** 2)))


def test_ref_empty_pred_not_gives_dice_zero_and_worst_case_diagonal() -> None:
    shape, sp = (10, 12, 8), (1.0, 0.5, 3.0)
    pred = box(shape, (2, 2, 2), (5, 5, 5), value=2)
    ref = np.zeros(shape, dtype=np.uint8)
    (r,) = evaluate_pair(lm(pred, sp), lm(ref, sp))
    assert r.ref_empty and not r.pred_empty and r.undefined == "ref_empty"
    assert r.dice == 0.0 and r.iou == 0.0 and r.nsd == 0.0
    d = _diag(shape, sp)
    assert r.hd_mm == pytest.approx(d) and r.hd95_mm == pytest.approx(d)
    assert r.assd_mm == pytest.approx(d)
    assert r.distances_substituted


def test_pred_empty_ref_not_gives_dice_zero_and_worst_case() -> None:
    shape = (10, 10, 10)
    ref = box(shape, (2, 2, 2), (5, 5, 5))
    pred = np.zeros(shape, dtype=np.uint8)
    (r,) = evaluate_pair(lm(pred), lm(ref), labels=[1])
    assert r.pred_empty and not r.ref_empty and r.undefined == "pred_empty"
    assert r.dice == 0.0 and r.hd95_mm == pytest.approx(_diag(shape, (1, 1, 1)))


def test_one_empty_distance_policy_nan_and_fixed() -> None:
    ref = box((10, 10, 10), (2, 2, 2), (5, 5, 5))
    pred = np.zeros_like(ref)
    (r,) = evaluate_pair(lm(pred), lm(ref), policy=EmptyPolicy(one_empty_distance="nan"))
    assert math.isnan(r.hd_mm) and math.isnan(r.hd95_mm) and math.isnan(r.assd_mm)
    assert not r.distances_substituted and r.dice == 0.0
    (r,) = evaluate_pair(lm(pred), lm(ref), policy=EmptyPolicy(one_empty_distance=373.0))
    assert r.hd_mm == 373.0 and r.hd95_mm == 373.0 and r.distances_substituted


def test_both_empty_is_nan_by_default_and_one_on_request() -> None:
    a = np.zeros((8, 8, 8), dtype=np.uint8)
    a[1, 1, 1] = 2  # another label present, label 1 absent from both
    (r,) = evaluate_pair(lm(a), lm(a.copy()), labels=[1])
    assert r.ref_empty and r.pred_empty and r.undefined == "both_empty"
    for k in ("dice", "iou", "hd_mm", "hd95_mm", "assd_mm", "nsd"):
        assert math.isnan(getattr(r, k)), k
    (r,) = evaluate_pair(lm(a), lm(a.copy()), labels=[1], policy=EmptyPolicy("one"))
    assert r.dice == 1.0 and r.iou == 1.0 and math.isnan(r.hd95_mm)


def test_label_in_only_one_map_still_gets_a_record() -> None:
    ref = box((10, 10, 10), (1, 1, 1), (4, 4, 4), value=1)
    pred = box((10, 10, 10), (5, 5, 5), (8, 8, 8), value=3)
    recs = evaluate_pair(lm(pred), lm(ref))
    assert [(r.label, r.ref_empty, r.pred_empty) for r in recs] == [
        ("1", False, True),
        ("3", True, False),
    ]


def test_empty_policy_validation() -> None:
    with pytest.raises(ValueError, match="both_empty_dice"):
        EmptyPolicy(both_empty_dice="zero")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="one_empty_distance"):
        EmptyPolicy(one_empty_distance="max")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="finite"):
        EmptyPolicy(one_empty_distance=-1.0)
    assert EmptyPolicy.parse("nan", "12.5").one_empty_distance == 12.5
    with pytest.raises(ValueError, match="number of mm"):
        EmptyPolicy.parse("nan", "far")


# --- inputs ----------------------------------------------------------------------------------


def test_grid_mismatch_is_refused_naming_both() -> None:
    a = box((10, 10, 10), (1, 1, 1), (4, 4, 4))
    with pytest.raises(GeometryMismatchError, match=r"pred\.nii.*ref\.nii"):
        evaluate_pair(lm(a[:, :, :9], name="pred.nii"), lm(a, name="ref.nii"))
    with pytest.raises(GeometryMismatchError, match="affine differs"):
        evaluate_pair(lm(a, (1, 1, 1.5), name="pred.nii"), lm(a, name="ref.nii"))


def test_float_labels_integral_accepted_non_integral_refused() -> None:
    a = box((8, 8, 8), (1, 1, 1), (4, 4, 4)).astype(np.float32)
    (r,) = evaluate_pair(lm(a), lm(a.copy()))
    assert r.dice == 1.0
    with pytest.raises(InvalidVolumeError, match="non-integral"):
        lm(a * 0.5)


def test_negative_labels_refused() -> None:
    a = box((8, 8, 8), (1, 1, 1), (4, 4, 4)).astype(np.int16)
    b = a.copy()
    b[0, 0, 0] = -1
    with pytest.raises(InvalidVolumeError, match="negative"):
        evaluate_pair(lm(b, name="p.nii"), lm(a))


def test_bad_arguments() -> None:
    a = box((8, 8, 8), (1, 1, 1), (4, 4, 4))
    with pytest.raises(ValueError, match="positive"):
        evaluate_pair(lm(a), lm(a), labels=[0, 1])
    with pytest.raises(ValueError, match="tolerance"):
        evaluate_pair(lm(a), lm(a), tolerance_mm=-1)
    with pytest.raises(ValueError, match="unknown surface"):
        evaluate_pair(lm(a), lm(box((8, 8, 8), (2, 1, 1), (5, 4, 4))), surface="mesh")  # type: ignore[arg-type]


# --- regions and names -----------------------------------------------------------------------


def test_region_equals_binarised_union_and_names_resolved() -> None:
    shape = (20, 20, 20)
    ref = np.zeros(shape, dtype=np.uint8)
    ref[2:8, 2:8, 2:8] = 1
    ref[8:12, 2:8, 2:8] = 3
    ref[12:15, 2:8, 2:8] = 4
    ref[2:8, 10:15, 2:8] = 2
    pred = np.roll(ref, 1, axis=0)
    ref_lm = LabelMap(ref, np.eye(4), label_names={1: "necrosis", 4: "enhancing"})
    recs = evaluate_pair(
        lm(pred), ref_lm, regions={"tumour_core": [4, 1, 3], "enhancing_only": [4]}
    )
    by = {(r.kind, r.label): r for r in recs}
    assert by[("label", "1")].name == "necrosis" and by[("label", "3")].name == "label_3"
    core = by[("region", "1+3+4")]
    assert core.name == "tumour_core" and core.labels == (1, 3, 4)
    (b,) = evaluate_pair(
        lm(np.isin(pred, [1, 3, 4]).astype(np.uint8)), lm(np.isin(ref, [1, 3, 4]).astype(np.uint8))
    )
    for k in ("dice", "hd_mm", "hd95_mm", "assd_mm", "nsd", "tp", "fp", "fn", "ref_voxels"):
        assert getattr(core, k) == pytest.approx(getattr(b, k)), k
    # A one-label region is kept apart from the label itself.
    assert by[("region", "4")].dice == pytest.approx(by[("label", "4")].dice)


def test_region_validation() -> None:
    a = box((8, 8, 8), (1, 1, 1), (4, 4, 4))
    with pytest.raises(ValueError, match="no labels"):
        evaluate_pair(lm(a), lm(a), regions={"x": []})
    with pytest.raises(ValueError, match="positive"):
        evaluate_pair(lm(a), lm(a), regions={"x": [0, 1]})


def test_record_as_dict_is_plain() -> None:
    a = box((8, 8, 8), (1, 1, 1), (4, 4, 4))
    (r,) = evaluate_pair(lm(a), lm(a), case="c1")
    d = r.as_dict()
    assert d["case"] == "c1" and d["labels"] == [1] and d["surface"] == "border"
    assert list(d)[:4] == ["case", "label", "name", "kind"]
    for key in ("dice", "hd_mm", "hd95_mm", "assd_mm", "nsd", "ref_voxels", "pred_voxels"):
        assert key in d


# --- aggregation -----------------------------------------------------------------------------


def _rec(case: str, dice: float, hd95: float, ref_empty=False, pred_empty=False, subst=False):
    return LabelRecord(
        case=case, label="1", name="x", labels=(1,), dice=dice, iou=dice, tp=0, fp=0, fn=0,
        tn=0, ref_voxels=0, pred_voxels=0, ref_ml=0.0, pred_ml=0.0, hd_mm=hd95, hd95_mm=hd95,
        assd_mm=hd95, nsd=dice, nsd_tolerance_mm=1.0, ref_empty=ref_empty,
        pred_empty=pred_empty, distances_substituted=subst,
    )  # fmt: skip


def test_summarize_counts_undefined_and_substituted_cases() -> None:
    recs = [
        _rec("a", 0.9, 2.0),
        _rec("b", 0.7, 4.0),
        _rec("c", 0.0, 300.0, pred_empty=True, subst=True),  # missed: worst case, in mean
        _rec("d", math.nan, math.nan, ref_empty=True, pred_empty=True),  # both empty
    ]
    s = {m.metric: m for m in summarize(recs)}
    h = s["hd95_mm"]
    assert (h.n_cases, h.n_undefined, h.n_substituted, h.n_nan, h.n_used) == (4, 2, 1, 1, 3)
    vals = np.array([2.0, 4.0, 300.0])
    assert h.mean == pytest.approx(vals.mean()) and h.std == pytest.approx(vals.std())
    assert h.median == pytest.approx(4.0)
    assert h.p5 == pytest.approx(np.percentile(vals, 5))
    assert h.p95 == pytest.approx(np.percentile(vals, 95))
    assert "worst case (300 mm)" in h.treatment and "1 both empty NaN, excluded" in h.treatment
    d = s["dice"]
    assert (d.n_undefined, d.n_nan, d.n_used) == (1, 1, 3)
    assert d.mean == pytest.approx((0.9 + 0.7 + 0.0) / 3)
    assert "scored 0, in mean" in d.treatment
    assert (d.n_ref_empty, d.n_pred_empty, d.n_both_empty) == (1, 2, 1)


def test_summarize_nan_policy_excludes_and_counts() -> None:
    recs = [_rec("a", 0.8, 3.0), _rec("b", 0.0, math.nan, ref_empty=True)]
    h = {m.metric: m for m in summarize(recs)}["hd95_mm"]
    assert (h.n_undefined, h.n_substituted, h.n_nan, h.n_used) == (1, 0, 1, 1)
    assert h.mean == 3.0 and "one-sided empty NaN, excluded" in h.treatment


def test_summarize_all_nan_gives_nan_stats() -> None:
    h = {m.metric: m for m in summarize([_rec("a", math.nan, math.nan, True, True)])}["dice"]
    assert h.n_used == 0 and math.isnan(h.mean) and math.isnan(h.p95)


def test_both_empty_record_helper_matches_evaluate_pair() -> None:
    a = np.zeros((4, 5, 6), dtype=np.uint8)
    a[0, 0, 0] = 2
    (r,) = evaluate_pair(lm(a), lm(a), labels=[1], case="k")
    b = both_empty_record("k", "1", "label_1", (1,), a.size, 1.0, EmptyPolicy())
    da, db = r.as_dict(), b.as_dict()
    for k in da:
        if isinstance(da[k], float) and math.isnan(da[k]):
            assert math.isnan(db[k]), k
        else:
            assert da[k] == db[k], k


def test_weighted_percentile_rules() -> None:
    v = np.array([0.0, 1.0, 2.0, 3.0])
    assert weighted_percentile(v, np.ones(4), 50, border=True) == pytest.approx(1.5)
    # Area-weighted: first distance whose cumulative area fraction reaches q.
    assert weighted_percentile(v, np.array([1, 1, 1, 7.0]), 50, border=False) == 3.0
    assert math.isnan(weighted_percentile(np.array([]), np.array([]), 95, border=True))


def test_evaluate_arrays_matches_label_maps() -> None:
    ref = box((16, 16, 16), (3, 3, 3), (10, 10, 10))
    pred = box((16, 16, 16), (4, 3, 3), (11, 10, 10)).astype(bool)  # bool mask = label 1
    sp = (0.5, 1.0, 2.0)
    (a,) = evaluate_arrays(pred, ref, sp, tolerance_mm=0.5)
    (b,) = evaluate_pair(lm(pred.astype(np.uint8), sp), lm(ref, sp), tolerance_mm=0.5)
    assert a.hd_mm == pytest.approx(0.5) and a.as_dict() == b.as_dict()
    with pytest.raises(ValueError, match="3 values"):
        evaluate_arrays(pred, ref, (1.0, 1.0))
