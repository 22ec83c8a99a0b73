"""Volume / LabelMap geometry: known affines, orientation codes, grid checks, label dtypes."""

from __future__ import annotations

import numpy as np
import pytest

from medseg.errors import GeometryMismatchError, InvalidVolumeError
from medseg.volume import LabelMap, Volume, affine_from_geometry, orientation_code


def test_geometry_properties_from_spacing_origin_direction() -> None:
    d = np.array([[-1.0, 0, 0], [0, -1.0, 0], [0, 0, 1.0]])  # LPS-pointing axes in RAS+
    v = Volume.from_geometry(np.zeros((4, 5, 6)), (0.5, 0.7, 2.0), (10.0, -20.0, 30.0), d)
    assert v.spacing == pytest.approx((0.5, 0.7, 2.0))
    assert v.origin == pytest.approx((10.0, -20.0, 30.0))
    np.testing.assert_allclose(v.direction, d)
    assert v.orientation == "LPS"
    assert v.voxel_volume_ml == pytest.approx(0.5 * 0.7 * 2.0 / 1000)
    # voxel (1, 2, 3) sits at origin + direction @ (ijk * spacing)
    np.testing.assert_allclose(v.voxel_to_world([1, 2, 3]), [10 - 0.5, -20 - 1.4, 30 + 6.0])
    np.testing.assert_allclose(v.world_to_voxel(v.voxel_to_world([1, 2, 3])), [1, 2, 3])
    # LPS affine negates x and y rows
    np.testing.assert_allclose(v.affine_lps()[:2], -v.affine[:2])


@pytest.mark.parametrize(
    ("perm_signs", "code"),
    [
        ((0, 1, 2, 1, 1, 1), "RAS"),
        ((0, 1, 2, -1, -1, 1), "LPS"),
        ((0, 2, 1, 1, 1, -1), "RSP"),  # axis 1 -> +z (S), axis 2 -> -y (P)
        ((2, 0, 1, 1, 1, 1), "SRA"),
        ((1, 2, 0, -1, -1, -1), "PIL"),
    ],
)
def test_orientation_code(perm_signs: tuple[int, ...], code: str) -> None:
    a, b, c, sa, sb, sc = perm_signs
    d = np.zeros((3, 3))
    d[a, 0], d[b, 1], d[c, 2] = sa, sb, sc
    assert orientation_code(affine_from_geometry((1, 1, 1), (0, 0, 0), d)) == code


def test_orientation_code_oblique_picks_dominant_axis() -> None:
    t = np.deg2rad(20)
    rot = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
    assert orientation_code(affine_from_geometry((1, 1, 1), (0, 0, 0), rot)) == "RAS"


def test_check_same_grid_names_both_sources() -> None:
    a = Volume(np.zeros((4, 4, 4)), np.eye(4), source="img.nii.gz")
    b = Volume(np.zeros((4, 4, 5)), np.eye(4), source="lab.nii.gz")
    with pytest.raises(GeometryMismatchError, match=r"lab\.nii\.gz.*\(4, 4, 5\).*img\.nii\.gz"):
        a.check_same_grid(b)
    shifted = np.eye(4)
    shifted[0, 3] = 0.01
    c = Volume(np.zeros((4, 4, 4)), shifted, source="moved.nii.gz")
    assert not a.same_grid(c)
    with pytest.raises(GeometryMismatchError, match=r"moved\.nii\.gz: affine differs"):
        a.check_same_grid(c)
    shifted[0, 3] = 1e-6
    assert a.same_grid(Volume(np.zeros((4, 4, 4)), shifted))


def test_volume_refuses_bad_rank_and_singular_affine() -> None:
    with pytest.raises(InvalidVolumeError, match="3-D"):
        Volume(np.zeros((4, 4)), np.eye(4), source="x.nii")
    aff = np.eye(4)
    aff[2, 2] = 0
    with pytest.raises(InvalidVolumeError, match="singular"):
        Volume(np.zeros((2, 2, 2)), aff, source="x.nii")


def test_check_finite_reports_count_and_first_index() -> None:
    arr = np.zeros((3, 3, 3), np.float32)
    arr[1, 2, 0] = np.nan
    arr[2, 2, 2] = np.inf
    with pytest.raises(
        InvalidVolumeError, match=r"bad\.nii: 2 NaN or infinite voxel\(s\).*\(1, 2, 0\)"
    ):
        Volume(arr, np.eye(4), source="bad.nii").check_finite()


def test_labelmap_accepts_integral_float_and_refuses_fractional() -> None:
    lab = LabelMap(np.array([0.0, 1.0, 3.0]).reshape(1, 1, 3), np.eye(4), label_names={1: "a"})
    assert lab.dtype == np.uint8
    assert lab.labels_present() == [1, 3]
    assert lab.name_of(1) == "a" and lab.name_of(3) == "label_3"
    big = LabelMap(np.array([0.0, 1000.0]).reshape(1, 1, 2), np.eye(4))
    assert big.dtype == np.int16
    with pytest.raises(
        InvalidVolumeError, match=r"m\.nii\.gz: label map stored as float32 has non-integral"
    ):
        LabelMap(np.array([0.0, 0.5], np.float32).reshape(1, 1, 2), np.eye(4), source="m.nii.gz")


def test_with_array_keeps_geometry_and_checks_shape() -> None:
    v = Volume.from_geometry(np.zeros((2, 3, 4)), (1, 2, 3), (5, 6, 7))
    w = v.with_array(np.ones((2, 3, 4)))
    np.testing.assert_array_equal(w.affine, v.affine)
    with pytest.raises(GeometryMismatchError):
        v.with_array(np.ones((3, 3, 4)))
