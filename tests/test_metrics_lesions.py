"""Tests of the lesion-wise (BraTS 2023) and instance (panoptica) metrics.

Independent references:
* ``brats_reference`` below: a line-by-line re-implementation of the official BraTS 2023 code
  (``rachitsaluja/BraTS-2023-Metrics``, ``get_LesionWiseScores`` / ``get_LesionWiseResults``) on
  whole arrays, with cc3d, scipy and DeepMind's ``surface-distance`` package for HD95 (medseg's
  code crops, renumbers and uses its own surfel distances);
* the ``panoptica`` package for RQ / SQ / PQ;
* hand-made cases with answers worked out by hand.
Real masks: the MS lesion consensus masks on their anisotropic FLAIR grids (0.8 or 0.9 ×
0.47 × 0.47 mm), cropped, with perturbed predictions (shifted, eroded, lesions removed,
false positives added).
"""

from __future__ import annotations

import functools
import math
import warnings

import cc3d
import numpy as np
import pytest
from scipy import ndimage
from support.paths import shared_path
from support.volumes import label_map

from medseg.errors import ConfigError
from medseg.io import read_label_map
from medseg.metrics import (
    MISSED_HD95_MM,
    LesionWiseOptions,
    evaluate_objects,
    instance_scores,
    lesion_wise_scores,
    summarize_objects,
)

ANISO = (0.8, 0.46875, 0.46875)


# --- the official rules, written again on whole arrays ----------------------------------------


def brats_reference(pred, gt, spacing, dil_factor=3, thresh=50.0):
    """The official algorithm, step by step, on whole arrays (see the module docstring)."""
    import surface_distance

    sx, sy, sz = spacing
    pred = (np.asarray(pred) > 0).astype(np.uint8)
    gt = (np.asarray(gt) > 0).astype(np.uint8)
    struct = ndimage.generate_binary_structure(3, 2)
    gt_cc = cc3d.connected_components(gt, connectivity=26)
    pred_cc = cc3d.connected_components(pred, connectivity=26)
    gt_dil_cc = cc3d.connected_components(
        ndimage.binary_dilation(gt, structure=struct, iterations=dil_factor), connectivity=26
    )
    combined = np.zeros_like(gt_dil_cc)
    for comp in range(1, int(gt_dil_cc.max()) + 1):
        tmp = (gt_dil_cc == comp).astype(gt_dil_cc.dtype) * gt_cc
        np.place(tmp, tmp > 0, comp)
        combined += tmp
    tp, pairs = [], []
    for comp in range(1, int(combined.max()) + 1):
        gt_tmp = combined == comp
        gt_dil = ndimage.binary_dilation(gt_tmp, structure=struct, iterations=dil_factor)
        vol = gt_tmp.sum() * sx * sy * sz
        hit = np.unique(pred_cc * gt_dil)
        hit = hit[hit != 0]
        tp += list(hit)
        pred_tmp = np.isin(pred_cc, hit)
        dice = 2.0 * (pred_tmp & gt_tmp).sum() / (pred_tmp.sum() + gt_tmp.sum())
        if pred_tmp.any():
            sd = surface_distance.compute_surface_distances(gt_tmp, pred_tmp, (sx, sy, sz))
            hd = surface_distance.compute_robust_hausdorff(sd, 95)
        else:  # the package returns inf here (and its np.Inf fails on NumPy 2)
            hd = math.inf
        pairs.append((len(hit), vol, dice, 374.0 if math.isinf(hd) else hd))
    fp = np.unique(pred_cc[np.isin(pred_cc, [*tp, 0], invert=True)])
    kept = [p for p in pairs if p[1] > thresh]
    den = len(kept) + len(fp)
    with np.errstate(invalid="ignore", divide="ignore"):
        lw_dice = sum(p[2] for p in kept) / den if den else math.nan
        lw_hd = (sum(p[3] for p in kept) + len(fp) * 374) / den if den else math.nan
    return {
        "num_tp": sum(1 for p in kept if p[0]),
        "num_fn": sum(1 for p in kept if not p[0]),
        "num_fp": len(fp),
        "lesion_dice": 1.0 if math.isnan(lw_dice) else lw_dice,
        "lesion_hd95_mm": 0.0 if math.isnan(lw_hd) else lw_hd,
        "lesions": sorted((p[1], p[2], p[3]) for p in pairs),
    }


def assert_matches_reference(got, ref) -> None:
    assert (got.num_tp, got.num_fn, got.num_fp) == (ref["num_tp"], ref["num_fn"], ref["num_fp"])
    assert got.lesion_dice == pytest.approx(ref["lesion_dice"], abs=1e-12)
    assert got.lesion_hd95_mm == pytest.approx(ref["lesion_hd95_mm"], abs=1e-9)
    mine = sorted((x.volume_mm3, x.dice, x.hd95_mm) for x in got.lesions)
    assert len(mine) == len(ref["lesions"])
    for a, b in zip(mine, ref["lesions"], strict=True):
        assert a == pytest.approx(b, abs=1e-9)


# --- hand-made cases -------------------------------------------------------------------------


def test_merging_matching_false_positives_and_aggregates_by_hand() -> None:
    sp = (1.0, 1.0, 1.0)
    ref = np.zeros((40, 40, 40), dtype=np.uint8)
    ref[5:10, 5:10, 5:10] = 1  # lesion A, 125 mm³
    ref[12:17, 5:10, 5:10] = 1  # 2 voxels from A: merged with A by 3 dilations
    ref[30:35, 30:35, 30:35] = 1  # lesion B, 125 mm³, missed
    ref[30:33, 5:8, 30:33] = 1  # lesion C, 27 mm³ <= 50: left out
    pred = np.zeros_like(ref)
    pred[5:10, 5:10, 5:10] = 1  # covers the first part of A exactly
    pred[20:22, 20:22, 20:22] = 1  # touches nothing: a false positive
    pred[30:33, 5:8, 34:36] = 1  # touches only C (dilated): neither scored nor a FP
    s = lesion_wise_scores(pred, ref, sp)
    assert len(s.lesions) == 3 and s.num_small == 1
    a, b, c = sorted(s.lesions, key=lambda x: -x.volume_mm3)  # 250, 125, 27 mm³
    assert a.voxels == 250 and a.detected and a.dice == pytest.approx(2 * 125 / (125 + 250))
    assert not b.detected and b.dice == 0.0 and b.hd95_mm == MISSED_HD95_MM
    assert c.volume_mm3 == 27 and not c.counted and c.detected
    assert (s.num_tp, s.num_fn, s.num_fp) == (1, 1, 1)
    assert s.lesion_dice == pytest.approx(a.dice / 3)
    assert s.lesion_hd95_mm == pytest.approx((a.hd95_mm + 374.0 + 374.0) / 3)
    assert s.detection_f1 == pytest.approx(2 * 1 / (2 * 1 + 1 + 1))
    # without dilation the two parts of A are separate lesions, the second one missed
    s0 = lesion_wise_scores(pred, ref, sp, dilation=0)
    assert len(s0.lesions) == 4 and (s0.num_tp, s0.num_fn) == (1, 2)
    assert_matches_reference(s, brats_reference(pred, ref, sp))


def test_no_dilation_by_hand() -> None:
    """medseg reads ``dilation=0`` as no dilation (scipy's ``iterations=0`` would dilate until
    nothing changes; the official code never passes 0)."""
    sp = (1.0, 1.0, 1.0)
    ref = np.zeros((40, 40, 40), dtype=np.uint8)
    ref[5:10, 5:10, 5:10] = 1
    ref[12:17, 5:10, 5:10] = 1
    pred = np.zeros_like(ref)
    pred[5:10, 5:10, 5:10] = 1
    pred[18:20, 5:10, 5:10] = 1  # one voxel from the second lesion: not touching without dilation
    s = lesion_wise_scores(pred, ref, sp, dilation=0)
    assert (s.num_tp, s.num_fn, s.num_fp) == (1, 1, 1)
    assert s.lesion_dice == pytest.approx(1.0 / 3)
    # one dilation closes the 2-voxel gap (one lesion) but does not reach the component at
    # index 18 (the dilated lesion ends at 17); two dilations do
    s1 = lesion_wise_scores(pred, ref, sp, dilation=1)
    assert len(s1.lesions) == 1 and (s1.num_tp, s1.num_fn, s1.num_fp) == (1, 0, 1)
    s2 = lesion_wise_scores(pred, ref, sp, dilation=2)
    assert len(s2.lesions) == 1 and (s2.num_tp, s2.num_fn, s2.num_fp) == (1, 0, 0)
    assert s2.lesions[0].n_pred_components == 2
    for d, got in ((1, s1), (2, s2)):
        assert_matches_reference(got, brats_reference(pred, ref, sp, dil_factor=d))


def test_volume_threshold_is_in_mm3_on_anisotropic_grids() -> None:
    ref = np.zeros((30, 30, 30), dtype=np.uint8)
    ref[5:10, 5:10, 5:9] = 1  # 100 voxels
    pred = np.zeros_like(ref)
    iso = lesion_wise_scores(pred, ref, (1.0, 1.0, 1.0))  # 100 mm³ > 50: a missed lesion
    assert (iso.num_fn, iso.num_small, iso.lesion_dice, iso.lesion_hd95_mm) == (1, 0, 0.0, 374.0)
    aniso = lesion_wise_scores(pred, ref, ANISO)  # 100 × 0.176 = 17.6 mm³: left out
    assert aniso.lesions[0].volume_mm3 == pytest.approx(100 * np.prod(ANISO))
    assert (aniso.num_fn, aniso.num_small, aniso.lesion_dice, aniso.lesion_hd95_mm) == (
        0,
        1,
        1.0,
        0.0,
    )
    # exactly the threshold is left out (<=)
    at = lesion_wise_scores(pred, ref, (1.0, 1.0, 1.0), min_volume_mm3=100.0)
    assert at.num_small == 1


def test_empty_cases() -> None:
    e = np.zeros((10, 10, 10), dtype=np.uint8)
    s = lesion_wise_scores(e, e, (1, 1, 1))
    assert (s.lesion_dice, s.lesion_hd95_mm, s.detection_f1) == (1.0, 0.0, 1.0)
    blob = e.copy()
    blob[2:6, 2:6, 2:6] = 1
    fp_only = lesion_wise_scores(blob, e, (1, 1, 1))
    assert (fp_only.num_fp, fp_only.lesion_dice, fp_only.lesion_hd95_mm) == (1, 0.0, 374.0)
    assert fp_only.detection_f1 == 0.0
    missed = lesion_wise_scores(e, blob, (1, 1, 1))
    assert (missed.num_fn, missed.lesion_dice, missed.lesion_hd95_mm) == (1, 0.0, 374.0)


def test_bad_options() -> None:
    e = np.zeros((4, 4, 4), dtype=np.uint8)
    with pytest.raises(ConfigError, match="dilation"):
        lesion_wise_scores(e, e, (1, 1, 1), dilation=-1)
    with pytest.raises(ConfigError, match="minimum volume"):
        lesion_wise_scores(e, e, (1, 1, 1), min_volume_mm3=-5)
    with pytest.raises(ConfigError, match="connectivity"):
        LesionWiseOptions(connectivity=8)
    with pytest.raises(ConfigError, match="IoU threshold"):
        instance_scores(e, e, iou_threshold=0.0)


# --- instance metrics ------------------------------------------------------------------------


def panoptica_scores(pred, ref, threshold=0.5):
    from panoptica import (
        ConnectedComponentsInstanceApproximator,
        InputType,
        NaiveThresholdMatching,
        Panoptica_Evaluator,
    )
    from panoptica.metrics import Metric

    ev = Panoptica_Evaluator(
        expected_input=InputType.SEMANTIC,
        instance_approximator=ConnectedComponentsInstanceApproximator(),
        instance_matcher=NaiveThresholdMatching(matching_threshold=threshold),
        decision_metric=Metric.IOU,
        decision_threshold=threshold,
        instance_metrics=[Metric.IOU, Metric.DSC],
        global_metrics=[Metric.DSC],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = next(iter(ev.evaluate(pred.astype(np.uint8), ref.astype(np.uint8)).values()))
    return res


def assert_matches_panoptica(pred, ref, threshold=0.5) -> None:
    mine = instance_scores(pred, ref, iou_threshold=threshold)
    theirs = panoptica_scores(pred, ref, threshold)
    assert (mine.tp, mine.fp, mine.fn) == (theirs.tp, theirs.fp, theirs.fn)
    for a, b in (("rq", "rq"), ("sq", "sq"), ("sq_dice", "sq_dsc"), ("pq", "pq")):
        va, vb = getattr(mine, a), float(getattr(theirs, b))
        assert (math.isnan(va) and math.isnan(vb)) or va == pytest.approx(vb, abs=1e-12), a
    if mine.n_pred and mine.n_ref:
        assert mine.precision == pytest.approx(theirs.prec)
        assert mine.recall == pytest.approx(theirs.rec)


def test_instance_metrics_by_hand_and_against_panoptica() -> None:
    ref = np.zeros((30, 30, 30), dtype=np.uint8)
    ref[2:6, 2:6, 2:6] = 1  # matched exactly
    ref[10:14, 10:14, 10:14] = 1  # matched with IoU 27/37 (shifted by one along axis 0)
    ref[20:24, 20:24, 20:24] = 1  # missed
    pred = np.zeros_like(ref)
    pred[2:6, 2:6, 2:6] = 1
    pred[11:15, 10:14, 10:14] = 1
    pred[25:28, 2:5, 2:5] = 1  # false positive
    s = instance_scores(pred, ref)
    assert (s.n_ref, s.n_pred, s.tp, s.fp, s.fn) == (3, 3, 2, 1, 1)
    assert s.rq == pytest.approx(2 / (2 + 0.5 + 0.5))
    iou = 48 / 80
    assert s.sq == pytest.approx((1.0 + iou) / 2)
    assert s.pq == pytest.approx(s.sq * s.rq)
    assert_matches_panoptica(pred, ref)
    # at IoU 0.7 the shifted pair no longer matches
    assert instance_scores(pred, ref, iou_threshold=0.7).tp == 1
    assert_matches_panoptica(pred, ref, 0.7)


def test_instance_edge_cases_follow_panoptica() -> None:
    e = np.zeros((10, 10, 10), dtype=np.uint8)
    blob = e.copy()
    blob[2:5, 2:5, 2:5] = 1
    for p, r in ((e, blob), (blob, e), (e, e)):
        assert_matches_panoptica(p, r)
    assert math.isnan(instance_scores(e, e).rq)
    assert instance_scores(blob, e).rq == 0.0


# --- real MS lesion masks, perturbed ---------------------------------------------------------


def ms_crop(patient: str, shape=(64, 160, 160)):
    """A crop around the lesions of a consensus mask (cached; shared_path on every call, so
    each test using it is seen reading ../shared)."""
    path = shared_path(
        "ms_lesions_ljubljana", "consensus_gt_flair_space", patient, "consensus_gt.nii.gz"
    )
    return _ms_crop(path, tuple(shape))


@functools.lru_cache(maxsize=4)
def _ms_crop(path, shape):
    lm = read_label_map(path)
    r = lm.array > 0
    c = np.argwhere(r).mean(0).astype(int)
    sl = tuple(
        slice(max(int(ci) - n // 2, 0), max(int(ci) - n // 2, 0) + n)
        for ci, n in zip(c, shape, strict=True)
    )
    return r[sl].astype(np.uint8), lm.spacing


def perturbations(ref: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    cc, n = cc3d.connected_components(ref, connectivity=26, return_N=True)
    removed = ref.copy()
    removed[np.isin(cc, np.arange(1, n + 1, 3))] = 0  # every third lesion missed
    fps = ref.copy()
    free = ~ndimage.binary_dilation(ref > 0, iterations=6)
    for z, y, x in np.argwhere(free)[rng.choice(int(free.sum()), 4, replace=False)]:
        fps[z : z + 2, y : y + 3, x : x + 3] = 1  # four small false positives
    return {
        "shifted": np.roll(ref, 3, axis=1),
        "eroded": ndimage.binary_erosion(ref).astype(np.uint8),
        "removed+fp": np.maximum(removed, fps - ref),
        "dilated": ndimage.binary_dilation(ref, iterations=2).astype(np.uint8),
    }


@pytest.mark.realdata
@pytest.mark.parametrize("patient", ["patient07", "patient11"])
def test_lesion_wise_matches_the_official_rules_on_ms_masks(patient) -> None:
    ref, spacing = ms_crop(patient)
    assert cc3d.connected_components(ref, return_N=True)[1] >= 10
    for name, pred in perturbations(ref).items():
        got = lesion_wise_scores(pred, ref, spacing)
        try:
            assert_matches_reference(got, brats_reference(pred, ref, spacing))
        except AssertionError as exc:  # pragma: no cover - the message names the case
            raise AssertionError(f"{patient} {name}: {exc}") from exc
        assert got.num_small > 0  # 50 mm³ is 283 voxels on this grid: small lesions exist


@pytest.mark.realdata
@pytest.mark.parametrize("patient", ["patient07", "patient26"])
def test_instance_metrics_match_panoptica_on_ms_masks(patient) -> None:
    ref, _ = ms_crop(patient)
    for name, pred in perturbations(ref, seed=1).items():
        for t in (0.5, 0.3):
            try:
                assert_matches_panoptica(pred, ref, t)
            except AssertionError as exc:  # pragma: no cover
                raise AssertionError(f"{patient} {name} IoU {t}: {exc}") from exc


@pytest.mark.realdata
def test_evaluate_objects_crops_without_changing_results() -> None:
    """Per label of a two-label map (lesions split by a plane into labels 1 and 2), the
    per-label records equal the whole-array functions."""
    ref1, spacing = ms_crop("patient26")
    pred1 = perturbations(ref1, seed=2)["removed+fp"]
    ref = ref1.copy()
    pred = pred1.copy()
    half = ref.shape[2] // 2
    ref[:, :, half:] *= 2
    pred[:, :, half:] *= 2
    recs = evaluate_objects(label_map(pred, spacing), label_map(ref, spacing), case="c")
    assert [r.label for r in recs] == ["1", "2"]
    for r in recs:
        v = int(r.label)
        whole = lesion_wise_scores(pred == v, ref == v, spacing)
        assert r.lesion_wise.lesion_dice == pytest.approx(whole.lesion_dice, abs=1e-12)
        assert r.lesion_wise.lesion_hd95_mm == pytest.approx(whole.lesion_hd95_mm, abs=1e-9)
        assert (r.lesion_wise.num_tp, r.lesion_wise.num_fp) == (whole.num_tp, whole.num_fp)
        assert r.instances == instance_scores(pred == v, ref == v)
    summary = {s.metric: s for s in summarize_objects(recs) if s.label == "1"}
    assert summary["lesion_dice"].mean == pytest.approx(recs[0].lesion_wise.lesion_dice)
    assert summary["lesion_dice"].n_cases == 1
