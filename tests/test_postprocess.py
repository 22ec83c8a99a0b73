"""Tests of medseg.postprocess: components, hole filling and morphology in millimetres.

Independent references: scipy.ndimage (binary_dilation / binary_erosion with an explicitly
built ball, label, binary_fill_holes) and analytic answers (ball radii, box volumes).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from support.volumes import box, sphere

from medseg.errors import ConfigError
from medseg.postprocess import (
    closing,
    dilate_mask,
    erode_mask,
    fill_holes,
    keep_largest_component,
    opening,
    remove_small_components,
    structuring_element,
)

ANISO = (0.8, 0.47, 0.47)


def reference_ball(radius_mm: float, spacing) -> np.ndarray:
    """Independent construction of the mm ball by brute force over a generous cube."""
    n = [int(radius_mm / s) + 2 for s in spacing]
    pts = np.stack(np.meshgrid(*[np.arange(-k, k + 1) for k in n], indexing="ij"), axis=-1).astype(
        float
    )
    d = np.sqrt(((pts * np.asarray(spacing)) ** 2).sum(-1))
    ball = d <= radius_mm + 1e-9
    # trim to the smallest box holding the ball
    sl = ndimage.find_objects(ball.astype(np.uint8))[0]
    return ball[sl]


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), ANISO, (3.0, 0.7, 1.3)])
@pytest.mark.parametrize("radius", [0.5, 1.0, 2.0, 3.3])
def test_structuring_element_is_a_ball_in_mm(spacing, radius) -> None:
    se = structuring_element(radius, spacing)
    ref = reference_ball(radius, spacing)
    # same set of offsets (the element may be padded where floor(r/s) reaches further)
    c = [s // 2 for s in se.shape]
    offs = {tuple(int(v) - c[i] for i, v in enumerate(p)) for p in np.argwhere(se)}
    cr = [s // 2 for s in ref.shape]
    offs_ref = {tuple(int(v) - cr[i] for i, v in enumerate(p)) for p in np.argwhere(ref)}
    assert offs == offs_ref
    # extent along each axis is floor(r / spacing) voxels each side
    assert se.shape == tuple(2 * int(radius / s + 1e-9) + 1 for s in spacing)


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), ANISO, (2.0, 0.5, 1.0)])
@pytest.mark.parametrize("radius", [1.0, 2.4])
def test_dilation_and_erosion_equal_scipy_with_the_mm_ball(rng, spacing, radius) -> None:
    mask = ndimage.binary_opening(rng.random((30, 34, 28)) > 0.6)
    mask[0:5, 10:20, :] = True  # touches the image edge
    se = structuring_element(radius, spacing)
    np.testing.assert_array_equal(
        dilate_mask(mask, radius, spacing), ndimage.binary_dilation(mask, se)
    )
    # erosion: the outside of the image counts as foreground (not eaten from the edge)
    np.testing.assert_array_equal(
        erode_mask(mask, radius, spacing), ndimage.binary_erosion(mask, se, border_value=1)
    )


def test_anisotropic_radius_is_counted_in_mm() -> None:
    """A 2 mm dilation of one voxel on a 0.8×0.47×0.47 mm grid reaches ±2 voxels along the
    first axis and ±4 along the others (floor(2/0.8) = 2, floor(2/0.47) = 4)."""
    m = np.zeros((21, 21, 21), dtype=bool)
    m[10, 10, 10] = True
    d = dilate_mask(m, 2.0, ANISO)
    idx = np.argwhere(d)
    assert idx[:, 0].min() == 8 and idx[:, 0].max() == 12
    assert idx[:, 1].min() == 6 and idx[:, 1].max() == 14
    assert idx[:, 2].min() == 6 and idx[:, 2].max() == 14
    # every dilated voxel is within 2 mm, and every voxel within 2 mm is dilated
    g = np.indices(m.shape).reshape(3, -1).T
    dist = np.sqrt((((g - 10) * np.asarray(ANISO)) ** 2).sum(1)).reshape(m.shape)
    np.testing.assert_array_equal(d, dist <= 2.0 + 1e-9)


def test_opening_removes_thin_parts_and_closing_bridges_gaps() -> None:
    sp = (1.0, 0.5, 0.5)
    lab = np.zeros((30, 60, 60), dtype=np.uint8)
    lab |= sphere(lab.shape, (15, 20, 20), 8) * 1  # a ball: 8 vox = 8 mm along axis 0
    lab[15, 20:50, 28:30] = 1  # a 1-voxel thin spur
    opened = opening(lab, 2.0, sp)
    assert opened[15, 45, 29] == 0  # spur gone
    assert opened[15, 20, 20] == 1  # ball centre kept
    assert set(np.unique(opened)) <= {0, 1}
    # closing: two slabs 1 mm apart along axis 0 join with a 1 mm ball, not with 0.4 mm
    two = np.zeros((20, 10, 10), dtype=np.uint8)
    two[2:8, 2:8, 2:8] = 1
    two[9:15, 2:8, 2:8] = 1  # gap of one voxel (1 mm) at index 8
    assert closing(two, 1.0, (1.0, 1.0, 1.0))[8, 4, 4] == 1
    assert closing(two, 0.4, (1.0, 1.0, 1.0))[8, 4, 4] == 0
    # the same gap is 2 mm on a 2 mm grid: a 1 mm ball no longer bridges it
    assert closing(two, 1.0, (2.0, 1.0, 1.0))[8, 4, 4] == 0


def test_closing_does_not_overwrite_other_labels() -> None:
    lab = np.zeros((20, 10, 10), dtype=np.uint8)
    lab[2:8, 2:8, 2:8] = 1
    lab[9:15, 2:8, 2:8] = 1
    lab[8, 4, 4] = 2
    before = lab.copy()
    out = closing(lab, 1.5, (1.0, 1.0, 1.0))
    assert out[8, 4, 4] == 2 and out[8, 3, 3] == 1
    np.testing.assert_array_equal(lab, before)  # the input is not modified


def test_keep_largest_component_per_label_and_connectivity() -> None:
    lab = np.zeros((20, 20, 20), dtype=np.int16)
    lab[1:6, 1:6, 1:6] = 1  # 125 voxels
    lab[10:12, 10:12, 10:12] = 1  # 8 voxels
    lab[14:16, 1:4, 1:4] = 2
    lab[18, 18, 18] = 2
    lab[17, 17, 17] = 2  # diagonal neighbour of (18, 18, 18): joined only with 26
    out = keep_largest_component(lab)
    assert (out == 1).sum() == 125 and (out == 2).sum() == 18
    assert out.dtype == lab.dtype
    only1 = keep_largest_component(lab, values=[1])
    assert (only1 == 2).sum() == (lab == 2).sum()
    # agreement with scipy.ndimage.label (26-connectivity) per label
    for v in (1, 2):
        comp, _ = ndimage.label(lab == v, structure=np.ones((3, 3, 3)))
        sizes = np.bincount(comp.ravel())[1:]
        assert (out == v).sum() == sizes.max()


def test_remove_small_components_counts_millilitres() -> None:
    sp_ml = 0.8 * 0.47 * 0.47 / 1000.0
    lab = np.zeros((40, 40, 40), dtype=np.uint8)
    lab |= box(lab.shape, (0, 0, 0), (10, 10, 10))  # 1000 voxels = 0.1767 mL
    lab |= box(lab.shape, (20, 20, 20), (25, 25, 25))  # 125 voxels = 0.0221 mL
    lab[30:32, 30:32, 30:32] = 2  # 8 voxels
    out = remove_small_components(lab, 0.05, sp_ml)
    assert (out == 1).sum() == 1000 and (out == 2).sum() == 0
    # exactly the volume of the 125-voxel box is kept (>=)
    out = remove_small_components(lab, 125 * sp_ml, sp_ml)
    assert (out == 1).sum() == 1125
    out = remove_small_components(lab, 1.0, sp_ml, values=[2])
    assert (out == 1).sum() == 1125 and (out == 2).sum() == 0
    # 6-connectivity splits two diagonal voxels into two components of 1 voxel
    diag = np.zeros((5, 5, 5), dtype=np.uint8)
    diag[1, 1, 1] = diag[2, 2, 2] = 1
    assert remove_small_components(diag, 1.5, 1.0, connectivity=6).sum() == 0
    assert remove_small_components(diag, 1.5, 1.0, connectivity=26).sum() == 2


def test_fill_holes_is_3d_and_keeps_other_labels() -> None:
    lab = np.zeros((12, 12, 12), dtype=np.uint8)
    lab[2:10, 2:10, 2:10] = 1
    lab[4:8, 4:8, 4:8] = 0  # enclosed cavity
    lab[5, 5, 5] = 3  # another label inside it
    tube = np.zeros((12, 12, 12), dtype=np.uint8)
    tube[2:10, 2:10, :] = 1
    tube[4:8, 4:8, :] = 0  # open at both ends of axis 2: not a 3-D hole
    out = fill_holes(lab)
    assert (out[4:8, 4:8, 4:8] == 1).sum() == 63 and out[5, 5, 5] == 3
    ref = ndimage.binary_fill_holes(lab > 0)
    np.testing.assert_array_equal(out > 0, ref)
    np.testing.assert_array_equal(fill_holes(tube), tube)


def test_bad_parameters_raise_config_errors() -> None:
    lab = np.zeros((5, 5, 5), dtype=np.uint8)
    with pytest.raises(ConfigError, match="radius"):
        opening(lab, -1.0, (1, 1, 1))
    with pytest.raises(ConfigError, match="spacing"):
        closing(lab, 1.0, (1, 0, 1))
    with pytest.raises(ConfigError, match="connectivity"):
        keep_largest_component(lab, connectivity=4)
    with pytest.raises(ConfigError, match="min_volume_ml"):
        remove_small_components(lab, -1, 0.001)
    with pytest.raises(ConfigError, match="values"):
        fill_holes(lab, values=[0])
