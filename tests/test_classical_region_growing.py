"""Tests of region growing from world-coordinate seeds.

References: SimpleITK's ``ConfidenceConnected`` (on a 1 mm grid, where medseg's mm box equals
ITK's voxel radius), connected regions known by construction, seeds placed through an
independently written LPS/oblique affine. Real data: a seed inside the spleen of the shipped
CT grows a region that stays inside the reference dilated by 5 mm; confidence-connected growing
from inside a BraTS tumour stays inside the dilated whole tumour.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from support.cases import brats_case, deepest_voxel, dice, spleen_ct
from support.volumes import sphere, volume

from medseg.classical import PostOptions, confidence_connected, connected_threshold, segment
from medseg.errors import ConfigError
from medseg.postprocess import dilate_mask
from medseg.volume import Volume


def two_blobs(rng):
    """Two bright balls (value ~100) joined only through a diagonal (corner) contact."""
    img = rng.normal(0.0, 5.0, (40, 40, 40)).astype(np.float32)
    a = sphere(img.shape, (12, 12, 12), 6).astype(bool)
    b = sphere(img.shape, (28, 28, 28), 6).astype(bool)
    img[a | b] += 100.0
    # a chain of voxels touching only by corners, from one ball to the other
    for k in range(14, 27):
        img[k, k, k] = 100.0
    return img, a, b


def test_connected_threshold_grows_only_the_connected_region(rng) -> None:
    img, a, b = two_blobs(rng)
    vol = volume(img, (1.0, 1.0, 1.0), origin=(-20, 5, 7))
    seed = vol.voxel_to_world([12, 12, 12])
    six = connected_threshold(vol, [seed], lower=60).array.astype(bool)
    assert six[a].all() and not six[b].any()  # faces only: the corner chain does not join
    full = connected_threshold(vol, [seed], lower=60, connectivity=26).array.astype(bool)
    assert full[a].all() and full[b].all()
    both = connected_threshold(vol, [seed, vol.voxel_to_world([28, 28, 28])], lower=60)
    assert both.array[a].all() and both.array[b].all()
    assert both.label_names == {1: "region"} and np.array_equal(both.affine, vol.affine)


def test_seeds_are_world_coordinates_on_any_affine(rng) -> None:
    """An LPS-ordered, anisotropic, oblique grid: the seed is given in RAS+ mm."""
    img, a, _ = two_blobs(rng)
    t = np.deg2rad(20)
    rot = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
    direction = np.diag([-1.0, -1.0, 1.0]) @ rot  # LPS, rotated 20° about z
    vol = Volume.from_geometry(img, (0.7, 0.9, 2.5), (100.0, -40.0, 12.0), direction)
    # the world position of voxel (12, 12, 12), computed here from the geometry
    world = np.array([100.0, -40.0, 12.0]) + direction @ (np.array([12, 12, 12]) * [0.7, 0.9, 2.5])
    lab = connected_threshold(vol, [tuple(world)], lower=60)
    assert lab.meta.extra["seeds_voxel"] == [[12, 12, 12]]
    np.testing.assert_array_equal(lab.array.astype(bool), a)


def test_confidence_connected_equals_simpleitk_on_a_1mm_grid(rng) -> None:
    img = rng.normal(0, 10, (40, 40, 40)).astype(np.float32)
    r = np.sqrt(((np.indices(img.shape) - 20) ** 2).sum(0))
    img[r < 10] += 100
    img[r < 5] += 30  # an inner core, so the statistics matter
    vol = volume(img, (1.0, 1.0, 1.0))
    sitk_img = sitk.GetImageFromArray(np.transpose(img, (2, 1, 0)))
    for iterations in (0, 1, 4):
        for radius in (1, 2):
            mine = confidence_connected(
                vol, [vol.voxel_to_world([20, 24, 20])], multiplier=2.5,
                iterations=iterations, radius_mm=radius,
            )  # fmt: skip
            ref = sitk.ConfidenceConnected(
                sitk_img, seedList=[(20, 24, 20)], numberOfIterations=iterations,
                multiplier=2.5, initialNeighborhoodRadius=radius, replaceValue=1,
            )  # fmt: skip
            np.testing.assert_array_equal(
                mine.array, np.transpose(sitk.GetArrayFromImage(ref), (2, 1, 0))
            )


def test_confidence_neighbourhood_is_in_mm(rng) -> None:
    """On a 0.5×1×2 mm grid a 2 mm box is ±4, ±2 and ±1 voxels: its mean is the mean there."""
    img = rng.normal(50, 10, (30, 30, 30)).astype(np.float32)
    vol = volume(img, (0.5, 1.0, 2.0))
    lab = confidence_connected(vol, [vol.voxel_to_world([15, 15, 15])], radius_mm=2, iterations=0)
    box = img[11:20, 13:18, 14:17].astype(np.float64)
    assert lab.meta.extra["mean"] == pytest.approx(box.mean())
    assert lab.meta.extra["std"] == pytest.approx(box.std(ddof=1))


def test_bad_parameters(rng) -> None:
    img, _, _ = two_blobs(rng)
    vol = volume(img, (1.0, 1.0, 1.0))
    inside = vol.voxel_to_world([12, 12, 12])
    with pytest.raises(ConfigError, match=r"seed \(500, 0, 0\) mm lies outside .*extent"):
        connected_threshold(vol, [(500.0, 0.0, 0.0)], lower=60)
    with pytest.raises(ConfigError, match="outside the window"):
        connected_threshold(vol, [vol.voxel_to_world([0, 0, 0])], lower=60)
    with pytest.raises(ConfigError, match="above upper"):
        connected_threshold(vol, [inside], lower=200, upper=100)
    with pytest.raises(ConfigError, match="at least one seed"):
        connected_threshold(vol, [], lower=60)
    with pytest.raises(ConfigError, match="6 or 26"):
        connected_threshold(vol, [inside], lower=60, connectivity=18)
    with pytest.raises(ConfigError, match="multiplier"):
        confidence_connected(vol, [inside], multiplier=0)
    with pytest.raises(ConfigError, match="iterations"):
        confidence_connected(vol, [inside], iterations=-1)
    with pytest.raises(ConfigError, match="one voxel"):
        confidence_connected(vol, [inside], radius_mm=0.2)


# --- real CT and MR ----------------------------------------------------------------------------


def test_region_growing_from_a_seed_inside_the_spleen_stays_inside_it() -> None:
    ct, ref = spleen_ct()
    spleen = ref["spleen"]
    seed = tuple(ct.voxel_to_world(deepest_voxel(spleen, ct.spacing)))
    near = dilate_mask(spleen, 5.0, ct.spacing)
    grown = segment(
        ct, "connected-threshold", seeds_mm=[seed], lower=60, upper=160, smooth_mm=1.5,
        post=PostOptions(opening_mm=3.0, keep_largest=True),
    ).array > 0  # fmt: skip
    assert (grown & near).sum() / grown.sum() > 0.97
    assert dice(grown, spleen) > 0.9
    conf = segment(
        ct, "confidence-connected", seeds_mm=[seed], multiplier=2.5, iterations=2,
        radius_mm=5.0, smooth_mm=1.5,
    )  # fmt: skip
    c = conf.array > 0
    assert (c & near).sum() / c.sum() > 0.97 and dice(c, spleen) > 0.8
    assert 40 < conf.meta.extra["lower"] < conf.meta.extra["upper"] < 200  # soft tissue HU


@pytest.mark.realdata
def test_confidence_connected_inside_a_brats_tumour_stays_inside_it() -> None:
    flair, ref = brats_case()
    wt = ref["whole_tumour"]
    seed = tuple(flair.voxel_to_world(deepest_voxel(wt, flair.spacing)))
    lab = segment(
        flair, "confidence-connected", seeds_mm=[seed], multiplier=2.5, iterations=2,
        radius_mm=3.0, smooth_mm=1.0, post=PostOptions(fill_holes=True),
    ).array > 0  # fmt: skip
    near = dilate_mask(wt, 10.0, flair.spacing)
    assert (lab & near).sum() / lab.sum() > 0.99
    assert dice(lab, wt) > 0.75
