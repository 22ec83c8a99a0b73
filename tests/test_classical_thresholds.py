"""Tests of the threshold methods (window, Otsu, multi-Otsu) and the shared options.

Known answers: two- and three-level images whose classes are known by construction, an
impulse blurred by a Gaussian of known width in mm on an anisotropic grid. Real data: Otsu on
the shipped spleen CT separates air from soft tissue; bone > 300 HU on TotalSegmentator's CT
lies in its bones; Otsu on an MS FLAIR separates brain from background; the brightest
multi-Otsu class of a BraTS FLAIR inside the brain overlaps the whole tumour.
"""

from __future__ import annotations

import numpy as np
import pytest
from support.cases import brats_case, dice, ms_flair, spleen_ct, totalseg_ct
from support.volumes import volume

from medseg.classical import PostOptions, multi_otsu, otsu, segment, smooth, threshold
from medseg.errors import ConfigError, GeometryMismatchError
from medseg.postprocess import dilate_mask

ANISO = (0.8, 0.47, 0.47)


def levels(rng, values=(0.0, 100.0), shape=(20, 24, 16), noise=5.0):
    """An image of slabs with the given mean values along axis 0, plus Gaussian noise."""
    truth = np.zeros(shape, dtype=np.uint8)
    n = len(values)
    for c in range(n):
        truth[c * shape[0] // n : (c + 1) * shape[0] // n] = c
    img = np.asarray(values)[truth] + rng.normal(0, noise, shape)
    return img.astype(np.float32), truth


def test_threshold_window_and_output_grid(rng) -> None:
    img, _ = levels(rng, (0.0, 100.0, 300.0))
    vol = volume(img, ANISO, origin=(10, -5, 3))
    lab = threshold(vol, lower=200)
    assert lab.shape == vol.shape and np.array_equal(lab.affine, vol.affine)
    assert lab.label_names == {1: "foreground"} and lab.array.dtype == np.uint8
    np.testing.assert_array_equal(lab.array, img >= 200)
    band = threshold(vol, 50, 150).array
    np.testing.assert_array_equal(band, (img >= 50) & (img <= 150))
    np.testing.assert_array_equal(threshold(vol, upper=50).array, img <= 50)
    mask = np.zeros(img.shape, bool)
    mask[:, :12] = True
    np.testing.assert_array_equal(threshold(vol, lower=200, mask=mask).array, (img >= 200) & mask)


def test_otsu_and_multi_otsu_recover_known_classes(rng) -> None:
    img, truth = levels(rng, (0.0, 100.0))
    lab = otsu(volume(img))
    (t,) = lab.meta.extra["thresholds"]
    # separated modes: any threshold in the gap maximises the between-class variance;
    # skimage returns a bin centre, so within half a bin (< 1 here) of it
    assert img[truth == 0].max() - 1 < t < img[truth == 1].min()
    np.testing.assert_array_equal(lab.array, img > t)
    assert (lab.array == truth).mean() > 0.999
    img3, truth3 = levels(rng, (0.0, 100.0, 250.0))
    m = multi_otsu(volume(img3), classes=3)
    assert m.label_names == {1: "class_1", 2: "class_2"}
    assert (m.array == truth3).mean() > 0.999
    t1, t2 = m.meta.extra["thresholds"]
    assert img3[truth3 == 0].max() - 1 < t1 < img3[truth3 == 1].min()
    assert img3[truth3 == 1].max() - 1 < t2 < img3[truth3 == 2].min()
    # the labels count the thresholds below the value, as for Otsu (> t)
    np.testing.assert_array_equal(m.array, (img3 > t1).astype(int) + (img3 > t2))


def test_otsu_histogram_comes_from_the_mask(rng) -> None:
    img, truth = levels(rng, (0.0, 100.0, 250.0))
    mask = truth > 0  # only the two bright classes
    lab = otsu(volume(img), mask=mask)
    (t,) = lab.meta.extra["thresholds"]
    assert img[truth == 1].max() - 1 < t < img[truth == 2].min()
    assert not lab.array[~mask].any()


def test_smoothing_sigma_is_in_mm_on_anisotropic_grids() -> None:
    imp = np.zeros((41, 61, 61), dtype=np.float32)
    imp[20, 30, 30] = 1000.0
    out = smooth(volume(imp, ANISO), 2.0).array
    assert out.sum() == pytest.approx(1000.0, rel=1e-3)
    # second moment along each axis, in mm², equals sigma² = 4 whatever the spacing
    for axis, sp in enumerate(ANISO):
        prof = out.sum(axis=tuple(a for a in range(3) if a != axis))
        x = (np.arange(prof.size) - prof.size // 2) * sp
        var = float((prof * x**2).sum() / prof.sum())
        assert var == pytest.approx(4.0, rel=0.03)
    v = volume(imp, ANISO)
    assert smooth(v, 0.0) is v


def test_segment_runs_smoothing_method_and_post_processing(rng) -> None:
    img, _ = levels(rng, (0.0, 100.0))
    vol = volume(img, (1.0, 1.0, 1.0))
    direct = threshold(smooth(vol, 1.0), lower=50)
    via = segment(vol, "threshold", lower=50, smooth_mm=1.0)
    np.testing.assert_array_equal(via.array, direct.array)
    post = segment(vol, "threshold", lower=50, post=PostOptions(keep_largest=True))
    assert post.meta.extra["postprocess"]["keep_largest"] is True
    assert post.meta.extra["method"] == "threshold"
    with pytest.raises(ConfigError, match="expected one of"):
        segment(vol, "magic")
    with pytest.raises(ConfigError, match="classes"):
        segment(vol, "threshold", lower=1, classes=3)


def test_bad_parameters(rng) -> None:
    img, _ = levels(rng)
    vol = volume(img)
    with pytest.raises(ConfigError, match="lower 100 is above upper 10"):
        threshold(vol, 100, 10)
    with pytest.raises(ConfigError, match="lower bound, an upper bound or both"):
        threshold(vol)
    with pytest.raises(ConfigError, match=r"classes: expected an integer in \[2, 255\]"):
        multi_otsu(vol, classes=1)
    with pytest.raises(ConfigError, match="single intensity"):
        otsu(volume(np.ones((4, 4, 4), np.float32)))
    with pytest.raises(ConfigError, match="empty"):
        otsu(vol, mask=np.zeros(img.shape, bool))
    with pytest.raises(GeometryMismatchError, match="does not match"):
        otsu(vol, mask=np.ones((2, 2, 2), bool))
    with pytest.raises(ConfigError, match="smooth_mm"):
        smooth(vol, -1.0)
    with pytest.raises(ConfigError, match="opening_mm"):
        PostOptions(opening_mm=-2)
    nan = img.copy()
    nan[0, 0, 0] = np.nan
    with pytest.raises(Exception, match="NaN"):
        otsu(volume(nan))


# --- real CT and MR ----------------------------------------------------------------------------


def test_otsu_on_the_spleen_ct_separates_air_from_soft_tissue() -> None:
    ct, ref = spleen_ct()
    lab = otsu(ct)
    (t,) = lab.meta.extra["thresholds"]
    assert -900 < t < -100  # between air (~ -1000 HU) and fat/soft tissue
    a = ct.array
    assert lab.array[ref["spleen"]].all()  # every spleen voxel is tissue
    assert not lab.array[a < -900].any() and lab.array[a > -100].all()
    m = multi_otsu(ct, classes=3)
    t1, t2 = m.meta.extra["thresholds"]
    assert t1 < -200 < t2 < 50  # air | fat | soft tissue
    assert (m.array[ref["spleen"]] == 2).mean() > 0.95


@pytest.mark.realdata
def test_bone_threshold_on_totalsegmentator_ct_lies_in_its_bones() -> None:
    for small in (True, False):
        ct, ref = totalseg_ct(small)
        bone = threshold(ct, lower=300).array > 0
        assert bone.sum() > 500
        # > 95 % of the voxels above 300 HU are in TotalSegmentator's bones (3 mm grid,
        # 1 voxel of slack for partial volume), and they reach most vertebrae
        near = dilate_mask(ref["bone"], 3.0, ct.spacing)
        assert (bone & near).sum() / bone.sum() > 0.95
        hit = [k for k in ref if k.startswith("vertebrae_") and (bone & ref[k]).any()]
        assert len(hit) >= 3


@pytest.mark.realdata
def test_otsu_on_ms_flair_separates_brain_from_background() -> None:
    flair, ref = ms_flair("patient19")
    lab = otsu(flair)
    brain = ref["brain"]
    assert not lab.array[~brain].any()
    assert lab.array[brain].mean() > 0.8
    assert lab.array[ref["lesions"]].mean() > 0.99  # lesions are bright in FLAIR


@pytest.mark.realdata
def test_multi_otsu_brightest_flair_class_overlaps_the_tumour() -> None:
    flair, ref = brats_case()
    m = multi_otsu(flair, classes=3, mask=ref["brain"])
    assert dice(m.array == 2, ref["whole_tumour"]) > 0.8
    assert not m.array[~ref["brain"]].any()


@pytest.mark.realdata
def test_flair_window_on_brats_finds_the_tumour() -> None:
    """FLAIR here is z-scored inside the brain: oedema and tumour lie above 1.5 (the normal
    brain's 99th percentile), the constant background below the brain."""
    flair, ref = brats_case()
    assert dice(threshold(flair, lower=1.5, mask=ref["brain"]).array > 0, ref["whole_tumour"]) > 0.8
    background = float(flair.array[~ref["brain"]].max())
    assert dice(threshold(flair, lower=background + 1e-3).array > 0, ref["brain"]) > 0.99
