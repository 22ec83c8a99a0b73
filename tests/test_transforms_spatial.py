"""Reorientation, cropping and resampling primitives."""

from __future__ import annotations

import numpy as np
import pytest

from medseg.transforms.spatial import (
    Reorientation,
    crop,
    nonzero_box,
    resample_labels_onehot,
    resample_to_shape,
    target_shape,
    uncrop,
)
from medseg.volume import affine_from_geometry, orientation_code

LPS = np.diag([-1.0, -1.0, 1.0])
PSL = np.array([[0.0, 0.0, -1.0], [-1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # axes -> P, S, L


def _oblique() -> np.ndarray:
    a = np.deg2rad(20)
    rot = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    return rot @ LPS


@pytest.mark.parametrize("direction", [np.eye(3), LPS, PSL, _oblique()])
def test_reorientation_reaches_ras_and_inverts_exactly(
    direction: np.ndarray, rng: np.random.Generator
) -> None:
    spacing = (0.8, 1.5, 3.0)
    aff = affine_from_geometry(spacing, (10.0, -20.0, 5.0), direction)
    arr = rng.normal(size=(2, 5, 6, 7)).astype(np.float32)
    reo = Reorientation.from_affine(aff)
    canon = reo.apply(arr)
    assert canon.shape[1:] == reo.shape(arr.shape[1:])
    np.testing.assert_array_equal(reo.invert(canon), arr)
    caff = reo.affine(aff, arr.shape[1:])
    assert orientation_code(caff) == "RAS"
    np.testing.assert_allclose(np.linalg.norm(caff[:3, :3], axis=0), reo.spacing(spacing))
    # The same world point is found at corresponding voxels in both arrays.
    ijk = np.array([1, 4, 2])
    world = aff[:3, :3] @ ijk + aff[:3, 3]
    cijk = np.rint(np.linalg.solve(caff[:3, :3], world - caff[:3, 3])).astype(int)
    assert canon[(1, *cijk)] == arr[(1, *ijk)]


def test_nonzero_box_crop_uncrop() -> None:
    a = np.zeros((2, 10, 9, 8), np.float32)
    a[0, 2:5, 3, 1] = 1
    a[1, 6, 7, 6] = -2
    box = nonzero_box(a)
    assert box == ((2, 7), (3, 8), (1, 7))
    c = crop(a, box)
    assert c.shape == (2, 5, 5, 6)
    np.testing.assert_array_equal(uncrop(c, box, (10, 9, 8)), a)
    assert nonzero_box(np.zeros((3, 4, 5))) == ((0, 3), (0, 4), (0, 5))
    filled = uncrop(c, box, (10, 9, 8), fill=np.array([1.0, 0.0], np.float32))
    assert filled[0, 0, 0, 0] == 1 and filled[1, 0, 0, 0] == 0


def test_target_shape_keeps_field_of_view() -> None:
    assert target_shape((100, 100, 20), (0.8, 0.8, 5.0), (1.6, 1.6, 2.5)) == (50, 50, 40)
    assert target_shape((3, 3, 1), (1, 1, 1), (10, 10, 10)) == (1, 1, 1)


def test_resample_exact_shape_and_linear_ramp() -> None:
    x = np.arange(20, dtype=np.float32)
    ramp = np.broadcast_to(x[:, None, None], (20, 6, 5)).copy()
    up = resample_to_shape(ramp, (40, 6, 5), order=1)
    assert up.shape == (40, 6, 5)
    # Half-voxel aligned: output voxel o samples input (o + 0.5) / 2 - 0.5.
    o = np.arange(40)
    expect = np.clip((o + 0.5) / 2 - 0.5, 0, 19)
    np.testing.assert_allclose(up[:, 2, 2], expect, atol=1e-5)
    back = resample_to_shape(up, (20, 6, 5), order=1)
    np.testing.assert_allclose(back[1:-1], ramp[1:-1], atol=1e-5)
    for shape in [(7, 13, 3), (33, 2, 9)]:
        assert resample_to_shape(np.ones((2, 11, 5, 6), np.float32), shape, 3).shape == (2, *shape)


def test_label_resampling_keeps_values(rng: np.random.Generator) -> None:
    lab = np.zeros((20, 20, 10), np.uint8)
    lab[5:15, 5:15, 2:8] = 3
    lab[8:11, 8:11, 4:6] = 1
    near = resample_to_shape(lab, (40, 40, 20), order=0)
    assert near.dtype == np.uint8 and set(np.unique(near)) == {0, 1, 3}
    assert (near == 3).sum() == 8 * ((lab == 3).sum())
    onehot = resample_labels_onehot(lab, (40, 40, 20), [0, 1, 3])
    assert set(np.unique(onehot)) == {0, 1, 3}
    assert abs(int((onehot == 1).sum()) - 8 * int((lab == 1).sum())) <= 8 * 9
