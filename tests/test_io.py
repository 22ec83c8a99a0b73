"""NIfTI and ITK-format reading/writing: exact geometry round trips and clear bad-input errors."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from support.paths import SAMPLE

from medseg.errors import (
    InputError,
    InvalidVolumeError,
    OutputError,
    OutputExistsError,
    UnsupportedFormatError,
)
from medseg.io import read_label_map, read_volume, write_volume
from medseg.volume import Volume


def _oblique_affine() -> np.ndarray:
    t = np.deg2rad(17.0)
    rot = np.array([[np.cos(t), 0, np.sin(t)], [0, 1, 0], [-np.sin(t), 0, np.cos(t)]])
    aff = np.eye(4)
    aff[:3, :3] = rot @ np.diag([0.8, 0.47, 2.5]) @ np.diag([-1, 1, 1])
    aff[:3, 3] = [101.25, -37.5, 12.125]
    return aff


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz", ".nrrd", ".mha", ".mhd"])
@pytest.mark.parametrize("dtype", [np.int16, np.uint8, np.float32, np.float64, np.int32])
def test_round_trip_keeps_voxels_and_geometry(tmp_path: Path, suffix: str, dtype: type) -> None:
    rng = np.random.default_rng(1)
    arr = (rng.random((7, 6, 5)) * 100).astype(dtype)
    aff = _oblique_affine().astype(np.float32).astype(np.float64)  # representable in NIfTI-1
    vol = Volume(arr, aff, source="mem")
    out = write_volume(vol, tmp_path / f"v{suffix}")
    back = read_volume(out)
    assert back.dtype == arr.dtype
    np.testing.assert_array_equal(back.array, arr)
    np.testing.assert_allclose(back.affine, aff, atol=1e-5, rtol=0)
    assert back.orientation == vol.orientation
    assert sorted(p.name for p in tmp_path.iterdir() if ".part" in p.name) == []


def test_sample_nifti_round_trip_is_exact(tmp_path: Path) -> None:
    src = read_volume(SAMPLE / "spleen_ct.nii.gz")
    back = read_volume(write_volume(src, tmp_path / "ct.nii.gz"))
    np.testing.assert_array_equal(back.array, src.array)
    np.testing.assert_allclose(back.affine, src.affine, atol=1e-5, rtol=0)
    assert src.spacing == pytest.approx((0.79492, 0.79492, 5.0), abs=1e-4)
    assert src.orientation == "RAS"


def test_nifti_to_itk_world_geometry_matches_simpleitk(tmp_path: Path) -> None:
    """An LPS-oriented volume written as NRRD is read by SimpleITK with the LPS geometry."""
    import SimpleITK as sitk

    aff = np.diag([-0.5, -0.5, 2.0, 1.0])  # LPS-pointing axes
    aff[:3, 3] = [10.0, 20.0, -5.0]
    vol = Volume(np.arange(24, dtype=np.int16).reshape(2, 3, 4), aff)
    path = write_volume(vol, tmp_path / "v.nrrd")
    img = sitk.ReadImage(str(path))
    assert img.GetSize() == (2, 3, 4)
    assert img.GetSpacing() == pytest.approx((0.5, 0.5, 2.0))
    assert img.GetOrigin() == pytest.approx((-10.0, -20.0, -5.0))  # RAS -> LPS
    assert img.GetDirection() == pytest.approx((1, 0, 0, 0, 1, 0, 0, 0, 1))
    # voxel (i, j, k) of medseg is ITK index (i, j, k)
    assert img.GetPixel(1, 2, 3) == vol.array[1, 2, 3]


def test_scl_slope_inter_applied(tmp_path: Path) -> None:
    img = nib.Nifti1Image(np.arange(8, dtype=np.int16).reshape(2, 2, 2), np.eye(4))
    img.header.set_slope_inter(2.0, -1024.0)
    nib.save(img, tmp_path / "s.nii.gz")
    v = read_volume(tmp_path / "s.nii.gz")
    assert v.array[1, 1, 1] == pytest.approx(7 * 2.0 - 1024.0)
    assert v.meta.rescale_slope == 2.0 and v.meta.rescale_intercept == -1024.0


def test_qform_used_when_sform_absent(tmp_path: Path) -> None:
    aff = np.diag([-2.0, 3.0, 4.0, 1.0])
    aff[:3, 3] = [5, 6, 7]
    img = nib.Nifti1Image(np.zeros((2, 2, 2), np.float32), None)
    img.set_qform(aff, code=1)
    img.set_sform(None, code=0)
    nib.save(img, tmp_path / "q.nii")
    np.testing.assert_allclose(read_volume(tmp_path / "q.nii").affine, aff, atol=1e-6)


def test_four_d_refused_unless_channel_given(tmp_path: Path) -> None:
    data = np.stack([np.full((3, 3, 3), c, np.float32) for c in range(3)], axis=-1)
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "m.nii.gz")
    with pytest.raises(InvalidVolumeError, match=r"m\.nii\.gz: 4-D image with 3 volumes"):
        read_volume(tmp_path / "m.nii.gz")
    assert read_volume(tmp_path / "m.nii.gz", channel=2).array.max() == 2
    with pytest.raises(InvalidVolumeError, match="channel 3 out of range"):
        read_volume(tmp_path / "m.nii.gz", channel=3)


def test_truncated_nifti_gives_one_clear_error(tmp_path: Path) -> None:
    good = (SAMPLE / "cord_t2w.nii.gz").read_bytes()
    bad = tmp_path / "trunc.nii.gz"
    bad.write_bytes(good[: len(good) // 2])
    with pytest.raises(InputError, match=r"trunc\.nii\.gz: truncated or corrupt"):
        read_volume(bad)


def test_corrupt_header_gives_one_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "garbage.nii.gz"
    bad.write_bytes(gzip.compress(b"not a nifti header" * 3))
    with pytest.raises(InputError, match=r"garbage\.nii\.gz: "):
        read_volume(bad)
    notgz = tmp_path / "plain.nii.gz"
    notgz.write_bytes(b"\x00" * 10)
    with pytest.raises(InputError, match=r"plain\.nii\.gz"):
        read_volume(notgz)


def test_nan_voxels_refused_with_file_name(tmp_path: Path) -> None:
    arr = np.zeros((3, 3, 3), np.float32)
    arr[0, 1, 2] = np.nan
    nib.save(nib.Nifti1Image(arr, np.eye(4)), tmp_path / "nan.nii.gz")
    with pytest.raises(InvalidVolumeError, match=r"nan\.nii\.gz: 1 NaN or infinite"):
        read_volume(tmp_path / "nan.nii.gz")
    assert np.isnan(read_volume(tmp_path / "nan.nii.gz", check_finite=False).array).sum() == 1


def test_unsupported_and_missing_inputs(tmp_path: Path) -> None:
    (tmp_path / "scan.png").write_bytes(b"\x89PNG....")
    with pytest.raises(UnsupportedFormatError, match=r"scan\.png: unsupported format '\.png'"):
        read_volume(tmp_path / "scan.png")
    with pytest.raises(InputError, match=r"nope\.nii\.gz: no such file"):
        read_volume(tmp_path / "nope.nii.gz")
    vol = Volume(np.zeros((2, 2, 2)), np.eye(4))
    with pytest.raises(UnsupportedFormatError, match="cannot write"):
        write_volume(vol, tmp_path / "out.png")


def test_no_overwrite_without_flag_and_atomic_replace(tmp_path: Path) -> None:
    vol = Volume(np.zeros((2, 2, 2), np.int16), np.eye(4))
    out = write_volume(vol, tmp_path / "a.nii.gz")
    before = out.read_bytes()
    with pytest.raises(OutputExistsError, match=r"a\.nii\.gz: output exists"):
        write_volume(vol.with_array(np.ones((2, 2, 2), np.int16)), out)
    assert out.read_bytes() == before
    write_volume(vol.with_array(np.ones((2, 2, 2), np.int16)), out, overwrite=True)
    assert read_volume(out).array.sum() == 8
    assert [p.name for p in tmp_path.iterdir()] == ["a.nii.gz"]


def test_failed_write_leaves_no_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(img: object, filename: str) -> None:
        Path(filename).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(nib, "save", boom)
    with pytest.raises(OutputError, match=r"x\.nii\.gz: cannot write: disk full"):
        write_volume(Volume(np.zeros((2, 2, 2)), np.eye(4)), tmp_path / "x.nii.gz")
    assert list(tmp_path.iterdir()) == []


def test_label_map_float_storage_and_grid_check() -> None:
    lab = read_label_map(SAMPLE / "cord_t2w_label.nii.gz")  # stored as float32 0/1
    assert lab.dtype == np.uint8 and lab.labels_present() == [1]
    img = read_volume(SAMPLE / "cord_t2w.nii.gz")
    img.check_same_grid(lab)
    ct = read_volume(SAMPLE / "spleen_ct.nii.gz")
    from medseg.errors import GeometryMismatchError

    with pytest.raises(GeometryMismatchError, match=r"cord_t2w_label\.nii\.gz: shape .*spleen_ct"):
        ct.check_same_grid(lab)


def test_fractional_label_map_refused(tmp_path: Path) -> None:
    arr = np.zeros((2, 2, 2), np.float32)
    arr[0, 0, 0] = 0.5
    nib.save(nib.Nifti1Image(arr, np.eye(4)), tmp_path / "soft.nii.gz")
    with pytest.raises(InvalidVolumeError, match=r"soft\.nii\.gz: label map stored as float32"):
        read_label_map(tmp_path / "soft.nii.gz")
