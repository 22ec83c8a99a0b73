"""Cross-checks of medseg.metrics against independent implementations.

* MONAI (``compute_hausdorff_distance`` with ``spacing`` and ``percentile=95`` / plain,
  ``compute_average_surface_distance(symmetric=True)``, ``compute_surface_dice``,
  ``compute_dice``): same definition as medseg's default border-voxel surfaces → equal to 1e-4.
* DeepMind ``surface-distance`` (area-weighted surfels): equal to medseg ``surface="surfels"``.

Synthetic seeded volumes run always; the ``realdata`` tier uses ../shared/data.
"""

from __future__ import annotations

import warnings

import monai.metrics as monai_metrics
import numpy as np
import pytest
import surface_distance as sd
import torch
from scipy import ndimage
from support.paths import shared_path

from medseg.io import read_label_map
from medseg.metrics import LabelRecord, evaluate_pair
from medseg.volume import LabelMap

ATOL_MM = 1e-4
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def monai_values(pred: np.ndarray, ref: np.ndarray, spacing, tol: float) -> dict[str, float]:
    p = torch.as_tensor(pred[None, None].astype(np.float32))
    g = torch.as_tensor(ref[None, None].astype(np.float32))
    sp = [float(s) for s in spacing]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kw = {"include_background": True, "spacing": sp}
        return {
            "hd95_mm": float(monai_metrics.compute_hausdorff_distance(p, g, percentile=95, **kw)),
            "hd_mm": float(monai_metrics.compute_hausdorff_distance(p, g, **kw)),
            "assd_mm": float(
                monai_metrics.compute_average_surface_distance(p, g, symmetric=True, **kw)
            ),
            "nsd": float(monai_metrics.compute_surface_dice(p, g, [tol], **kw)),
            "dice": float(monai_metrics.compute_dice(p, g, include_background=True)),
        }


def deepmind_values(pred: np.ndarray, ref: np.ndarray, spacing, tol: float) -> dict[str, float]:
    s = sd.compute_surface_distances(ref.astype(bool), pred.astype(bool), list(spacing))
    a_g, a_p = s["surfel_areas_gt"], s["surfel_areas_pred"]
    assd = (np.sum(s["distances_gt_to_pred"] * a_g) + np.sum(s["distances_pred_to_gt"] * a_p)) / (
        np.sum(a_g) + np.sum(a_p)
    )
    return {
        "hd95_mm": float(sd.compute_robust_hausdorff(s, 95)),
        "hd_mm": float(sd.compute_robust_hausdorff(s, 100)),
        "assd_mm": float(assd),
        "nsd": float(sd.compute_surface_dice_at_tolerance(s, tol)),
        "dice": float(sd.compute_dice_coefficient(ref.astype(bool), pred.astype(bool))),
    }


def assert_match(rec: LabelRecord, expected: dict[str, float], what: str) -> None:
    for k, v in expected.items():
        assert getattr(rec, k) == pytest.approx(v, abs=ATOL_MM, rel=1e-6), (what, rec.label, k)


def blobs(rng: np.random.Generator, shape, n_labels: int) -> np.ndarray:
    out = np.zeros(shape, dtype=np.uint8)
    for v in range(1, n_labels + 1):
        seeds = rng.random(shape) > 0.995
        out[ndimage.binary_dilation(seeds, iterations=int(rng.integers(1, 4)))] = v
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.8, 0.47, 0.47), (0.7, 1.3, 5.0)])
def test_border_metrics_equal_monai_on_synthetic(seed: int, spacing) -> None:
    rng = np.random.default_rng(seed)
    shape = (28, 24, 18)
    ref = blobs(rng, shape, 3)
    pred = blobs(rng, shape, 3)
    pred[ref == 2] = 2  # overlap for one label
    aff = np.diag([*spacing, 1.0])
    recs = evaluate_pair(LabelMap(pred, aff), LabelMap(ref, aff), tolerance_mm=1.5)
    assert recs
    for r in recs:
        if r.undefined:
            continue
        v = int(r.label)
        assert_match(r, monai_values(pred == v, ref == v, spacing, 1.5), "monai")


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.7, 1.3, 5.0)])
def test_surfel_metrics_equal_deepmind_surface_distance(seed: int, spacing) -> None:
    rng = np.random.default_rng(seed)
    shape = (26, 22, 16)
    ref = blobs(rng, shape, 2)
    pred = blobs(rng, shape, 2)
    aff = np.diag([*spacing, 1.0])
    recs = evaluate_pair(
        LabelMap(pred, aff), LabelMap(ref, aff), tolerance_mm=2.0, surface="surfels"
    )
    for r in recs:
        if r.undefined:
            continue
        v = int(r.label)
        assert r.surface == "surfels"
        assert_match(r, deepmind_values(pred == v, ref == v, spacing, 2.0), "deepmind")


def test_surfels_differ_from_border_voxels_as_documented() -> None:
    ref = np.zeros((30, 30, 30), dtype=np.uint8)
    ref[5:20, 5:20, 5:20] = 1
    pred = np.roll(ref, 3, axis=0)
    (b,) = evaluate_pair(LabelMap(pred, np.eye(4)), LabelMap(ref, np.eye(4)))
    (s,) = evaluate_pair(LabelMap(pred, np.eye(4)), LabelMap(ref, np.eye(4)), surface="surfels")
    assert b.dice == s.dice
    assert b.hd_mm == pytest.approx(3.0) and s.hd_mm == pytest.approx(3.0)
    assert b.assd_mm != pytest.approx(s.assd_mm)  # different surfaces, different means


# --- real data -------------------------------------------------------------------------------


@pytest.mark.realdata
def test_totalsegmentator_117_label_pair_equals_monai() -> None:
    d = shared_path("totalsegmentator_example")
    ref = read_label_map(d / "example_seg.nii.gz")
    pred = read_label_map(d / "example_seg_fast.nii.gz")
    recs = evaluate_pair(pred, ref, tolerance_mm=3.0)
    assert len(recs) >= 40
    n = 0
    for r in recs:
        if r.undefined:
            continue
        v = int(r.label)
        assert_match(r, monai_values(pred.array == v, ref.array == v, ref.spacing, 3.0), "monai")
        n += 1
    assert n >= 35


@pytest.mark.realdata
def test_totalsegmentator_surfels_equal_deepmind_on_some_labels() -> None:
    d = shared_path("totalsegmentator_example")
    ref = read_label_map(d / "example_seg.nii.gz")
    pred = read_label_map(d / "example_seg_fast.nii.gz")
    labels = [1, 5, 18, 27]  # spleen, liver, small bowel, lumbar vertebra
    recs = evaluate_pair(pred, ref, labels=labels, tolerance_mm=3.0, surface="surfels")
    for r in recs:
        if r.undefined:
            continue
        v = int(r.label)
        exp = deepmind_values(pred.array == v, ref.array == v, ref.spacing, 3.0)
        assert_match(r, exp, "deepmind")


@pytest.mark.realdata
def test_brats_float_labels_and_tumour_regions_equal_monai() -> None:
    path = shared_path("brats2015_deepmedic", "test", "brats_2013_pat0001_1", "OTMultiClass.nii.gz")
    ref = read_label_map(path)  # stored as float32: accepted, converted to integers
    assert np.issubdtype(ref.dtype, np.integer)
    # A plausible "prediction": labels shifted by one voxel along two axes, oedema eroded.
    arr = np.roll(ref.array, (1, -1), axis=(0, 2))
    oedema = ndimage.binary_erosion(arr == 2, iterations=2)
    arr = np.where((arr == 2) & ~oedema, 0, arr).astype(ref.dtype)
    pred = ref.with_array(arr, source="perturbed.nii.gz")
    regions = {"whole_tumour": [1, 2, 3, 4], "tumour_core": [1, 3, 4], "enhancing": [4]}
    recs = evaluate_pair(pred, ref, regions=regions, tolerance_mm=1.0)
    assert [r.label for r in recs] == ["1", "2", "3", "4", "1+2+3+4", "1+3+4", "4"]
    for r in recs:
        p = np.isin(pred.array, r.labels)
        g = np.isin(ref.array, r.labels)
        assert_match(r, monai_values(p, g, ref.spacing, 1.0), "monai")


@pytest.mark.realdata
def test_ms_lesions_anisotropic_grid_equals_monai_and_deepmind() -> None:
    path = shared_path("ms_lesions_ljubljana", "consensus_gt_flair_space", "patient07")
    ref = read_label_map(path / "consensus_gt.nii.gz")
    assert ref.spacing[0] == pytest.approx(0.8) and ref.spacing[1] == pytest.approx(0.46875)
    arr = np.roll(ref.array, (1, 2, -1), axis=(0, 1, 2))
    pred = ref.with_array(arr, source="shifted.nii.gz")
    (r,) = evaluate_pair(pred, ref, labels=[1], tolerance_mm=1.0)
    assert_match(r, monai_values(arr == 1, ref.array == 1, ref.spacing, 1.0), "monai")
    (s,) = evaluate_pair(pred, ref, labels=[1], tolerance_mm=1.0, surface="surfels")
    assert_match(s, deepmind_values(arr == 1, ref.array == 1, ref.spacing, 1.0), "deepmind")


@pytest.mark.slow
@pytest.mark.realdata
def test_upsampled_totalsegmentator_pair_equals_monai_for_every_method() -> None:
    d = shared_path("totalsegmentator_example")
    ref = read_label_map(d / "example_seg.nii.gz")
    pred = read_label_map(d / "example_seg_fast.nii.gz")
    zoom = [b / s for b, s in zip((256, 256, 100), ref.shape, strict=True)]
    sp = [s * n / b for s, n, b in zip(ref.spacing, ref.shape, (256, 256, 100), strict=True)]
    aff = np.diag([*sp, 1.0])
    big_ref = LabelMap(ndimage.zoom(ref.array, zoom, order=0), aff)
    big_pred = LabelMap(ndimage.zoom(pred.array, zoom, order=0), aff)
    by_method = {m: evaluate_pair(big_pred, big_ref, method=m) for m in ("edt", "kdtree")}
    for r_edt, r_kd in zip(by_method["edt"], by_method["kdtree"], strict=True):
        for k in ("hd_mm", "hd95_mm", "assd_mm", "nsd"):
            a, b = getattr(r_edt, k), getattr(r_kd, k)
            assert (np.isnan(a) and np.isnan(b)) or a == pytest.approx(b, abs=1e-9), k
    for r in by_method["kdtree"]:
        if r.undefined:
            continue
        v = int(r.label)
        exp = monai_values(big_pred.array == v, big_ref.array == v, sp, 1.0)
        assert_match(r, exp, "monai")
