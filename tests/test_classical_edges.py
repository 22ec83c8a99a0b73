"""Tests of the edge methods (3-D Sobel magnitude, 3-D Canny) and their filled regions.

Known answers: a ramp of c units/mm has Sobel magnitude c on any grid; a step of height H
blurred by a Gaussian of sigma mm has a largest gradient H / (sigma·sqrt(2π)) per mm, so Canny
finds it with an upper threshold just below that value and not just above, whatever the
spacing; on a 1 mm grid medseg's Canny is SimpleITK's; a ball's edges filled give the ball.
Real data: Canny edges of the spleen CT lie where air meets tissue; Canny edges of a BraTS
FLAIR, closed and filled, give the brain mask.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk
from support.cases import brats_case, dice, spleen_ct
from support.volumes import sphere, volume

from medseg.classical import canny_edges, gradient_magnitude, segment, sobel_edges
from medseg.errors import ConfigError
from medseg.postprocess import dilate_mask, erode_mask

GRIDS = [(1.0, 1.0, 1.0), (0.8, 0.47, 0.47), (2.0, 0.7, 1.3)]


@pytest.mark.parametrize("spacing", GRIDS)
def test_sobel_magnitude_is_per_mm(spacing) -> None:
    g = np.indices((20, 22, 24)).astype(np.float64) * np.asarray(spacing)[:, None, None, None]
    ramp = 3.0 * g[0] - 4.0 * g[2]  # gradient (3, 0, -4) units/mm: magnitude 5
    mag = gradient_magnitude(volume(ramp.astype(np.float32), spacing)).array
    np.testing.assert_allclose(mag[1:-1, 1:-1, 1:-1], 5.0, rtol=1e-5)


def step(spacing, height=100.0, length_mm=60.0):
    n = round(length_mm / spacing[0])
    x = (np.arange(n) - n / 2 + 0.5) * spacing[0]
    img = np.zeros((n, 16, 16), np.float32)
    img[x > 0] = height
    return volume(img, spacing), x


@pytest.mark.parametrize("spacing", GRIDS)
def test_canny_thresholds_are_gradients_per_mm(spacing) -> None:
    sigma, height = 2.0, 100.0
    vol, x = step(spacing, height)
    gmax = height / (sigma * math.sqrt(2 * math.pi))
    below = canny_edges(vol, 0.4 * gmax, 0.95 * gmax, sigma_mm=sigma).array
    above = canny_edges(vol, 0.4 * gmax, 1.05 * gmax, sigma_mm=sigma).array
    assert not above.any()
    idx = np.unique(np.nonzero(below)[0])
    assert len(idx) == 1 and abs(x[idx[0]]) <= spacing[0] / 2 + 1e-6  # one plane at the step
    assert below.sum() == 16 * 16 and below.dtype == np.uint8


def test_canny_equals_simpleitk_on_a_1mm_grid(rng) -> None:
    img = (sphere((30, 30, 30), (15, 15, 15), 8) * 100.0 + rng.normal(0, 5, (30, 30, 30))).astype(
        np.float32
    )
    mine = canny_edges(volume(img), 5.0, 15.0, sigma_mm=1.5).array
    ref = sitk.CannyEdgeDetection(
        sitk.GetImageFromArray(np.transpose(img, (2, 1, 0))),
        lowerThreshold=5.0,
        upperThreshold=15.0,
        variance=[1.5**2] * 3,
        maximumError=[0.01] * 3,
    )
    np.testing.assert_array_equal(mine, np.transpose(sitk.GetArrayFromImage(ref), (2, 1, 0)))


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (1.5, 0.6, 0.8)])
def test_filled_edges_give_the_ball(rng, spacing) -> None:
    shape = tuple(round(40 / s) for s in spacing)
    g = np.indices(shape).astype(float) * np.asarray(spacing)[:, None, None, None]
    ball = ((g - 20.0) ** 2).sum(0) <= 12.0**2
    img = (ball * 100.0 + rng.normal(0, 3, shape)).astype(np.float32)
    vol = volume(img, spacing)
    canny = canny_edges(vol, 5.0, 15.0, sigma_mm=1.0, region=True, closing_mm=1.0)
    assert canny.label_names == {1: "region"}
    assert dice(canny.array > 0, ball) > 0.94  # thin edges: the ball within about a voxel
    sobel = sobel_edges(vol, 10.0, 20.0, region=True).array > 0
    assert sobel[ball].all() and dice(sobel, ball) > 0.8  # thick edges: the ball plus a band
    # Sobel edges hug the surface: every edge voxel is within 2 voxels of the ball's surface
    edges = sobel_edges(vol, 10.0).array > 0
    r = 2.0 * max(spacing)
    shell = dilate_mask(ball, r, spacing) & ~erode_mask(ball, r, spacing)
    assert edges.any() and not (edges & ~shell).any()


def test_bad_parameters() -> None:
    vol, _ = step((1.0, 1.0, 1.0))
    with pytest.raises(ConfigError, match="low"):
        sobel_edges(vol, -1.0)
    with pytest.raises(ConfigError, match="must be finite and >= low"):
        canny_edges(vol, 10.0, 5.0)
    with pytest.raises(ConfigError, match="sigma_mm"):
        canny_edges(vol, 1.0, 2.0, sigma_mm=0.0)
    with pytest.raises(ConfigError, match="closing_mm"):
        sobel_edges(vol, 1.0, region=True, closing_mm=-1)


# --- real CT and MR ----------------------------------------------------------------------------


def test_canny_edges_of_the_spleen_ct_lie_between_air_and_tissue() -> None:
    ct, _ = spleen_ct()
    edges = canny_edges(ct, 200.0, 300.0, sigma_mm=1.0).array > 0  # strong edges, HU/mm
    assert edges.sum() > 1000
    air, tissue = ct.array < -500, ct.array > -200
    # an edge voxel has both air and tissue within 5 mm (one slice): where they meet
    near_air = dilate_mask(air, 5.0, ct.spacing)
    near_tissue = dilate_mask(tissue, 5.0, ct.spacing)
    assert (edges & near_air & near_tissue).sum() / edges.sum() > 0.95
    # and the air/tissue boundary inside the image is found: most tissue voxels next to air
    # (not on the image's outer faces, where no edge can be detected) are near an edge
    boundary = tissue & dilate_mask(air, 1.0, ct.spacing)
    boundary[[0, -1]] = boundary[:, [0, -1]] = boundary[:, :, [0, -1]] = False
    assert dilate_mask(edges, 3.0, ct.spacing)[boundary].mean() > 0.8
    # the Sobel magnitude at the body outline is in the hundreds of HU/mm
    mag = gradient_magnitude(ct).array
    assert np.median(mag[edges]) > 100


@pytest.mark.realdata
def test_canny_region_of_a_brats_flair_is_the_brain() -> None:
    flair, ref = brats_case()
    lab = segment(flair, "canny", low=0.3, high=0.8, sigma_mm=1.0, region=True, closing_mm=4.0)
    assert dice(lab.array > 0, ref["brain"]) > 0.95
