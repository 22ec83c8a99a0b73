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


# --- NIfTI headers that must be refused or reported --------------------------------------------
def _set_dims(path: Path, dims: tuple[int, int, int]) -> None:
    """Rewrite dim[1..3] of an uncompressed NIfTI-1 header in place (bytes 42-47)."""
    import struct

    raw = bytearray(path.read_bytes())
    raw[42:48] = struct.pack("<hhh", *dims)
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_header_claiming_huge_dimensions_refused_before_allocating(
    tmp_path: Path, suffix: str
) -> None:
    import tracemalloc

    raw = tmp_path / "huge.nii"
    nib.save(nib.Nifti1Image(np.ones((8, 8, 8), np.float32), np.eye(4)), raw)
    _set_dims(raw, (30000, 30000, 30000))
    path = raw if suffix == ".nii" else tmp_path / "huge.nii.gz"
    if suffix == ".nii.gz":
        path.write_bytes(gzip.compress(raw.read_bytes()))
    tracemalloc.start()
    try:
        with pytest.raises(InputError, match=r"huge\.nii(\.gz)?: .*shape \(30000, 30000, 30000\)"):
            read_volume(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 50e6


def test_gzip_voxel_data_shorter_than_the_header_says(tmp_path: Path) -> None:
    raw = tmp_path / "v.nii"
    nib.save(nib.Nifti1Image(np.ones((8, 8, 8), np.float32), np.eye(4)), raw)
    _set_dims(raw, (8, 8, 9))  # one slice more than the file holds
    path = tmp_path / "v.nii.gz"
    path.write_bytes(gzip.compress(raw.read_bytes()))
    with pytest.raises(InputError, match=r"v\.nii\.gz: truncated or corrupt: .*decompresses to"):
        read_volume(path)


def test_multi_member_gzip_is_read(tmp_path: Path) -> None:
    """Concatenated gzip members (BGZF-style): the ISIZE trailer is only the last member's,
    so the size is confirmed by streaming; the file is valid and must be read."""
    arr = np.arange(8 * 8 * 8, dtype=np.float32).reshape(8, 8, 8)
    raw = tmp_path / "v.nii"
    nib.save(nib.Nifti1Image(arr, np.eye(4)), raw)
    data = raw.read_bytes()
    path = tmp_path / "v.nii.gz"
    path.write_bytes(b"".join(gzip.compress(data[i : i + 700]) for i in range(0, len(data), 700)))
    np.testing.assert_array_equal(read_volume(path).array, arr)


def test_zero_length_axis_says_so(tmp_path: Path) -> None:
    nib.save(nib.Nifti1Image(np.zeros((0, 4, 4), np.float32), np.eye(4)), tmp_path / "z.nii")
    with pytest.raises(InvalidVolumeError, match=r"shape \(0, 4, 4\): axis 0 has length 0"):
        read_volume(tmp_path / "z.nii")
    with pytest.raises(InvalidVolumeError, match="zero-length axis"):
        Volume(np.zeros((3, 0, 2)), np.eye(4))


def _no_forms(path: Path, pixdim: tuple[float, float, float]) -> None:
    import struct

    img = nib.Nifti1Image(np.zeros((3, 3, 3), np.int16), None)
    img.set_sform(None, code=0)
    img.set_qform(None, code=0)
    nib.save(img, path)
    raw = bytearray(path.read_bytes())
    raw[80:92] = struct.pack("<fff", *pixdim)  # pixdim[1..3], bypassing nibabel's fixes
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("pixdim", [(0.0, 1.0, 1.0), (-1.0, 1.0, 1.0)])
def test_no_forms_and_bad_pixdim_refused(tmp_path: Path, pixdim: tuple[float, ...]) -> None:
    _no_forms(tmp_path / "p.nii", pixdim)  # type: ignore[arg-type]
    with pytest.raises(InvalidVolumeError, match=r"p\.nii: no sform or qform, and pixdim"):
        read_volume(tmp_path / "p.nii")


def test_geometry_assumptions_are_recorded_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _no_forms(tmp_path / "pix.nii", (0.5, 0.5, 2.0))
    vol = read_volume(tmp_path / "pix.nii")
    assert vol.spacing == pytest.approx((0.5, 0.5, 2.0))
    (note,) = vol.meta.extra["warnings"]
    assert note.startswith(f"{tmp_path / 'pix.nii'}: no sform or qform") and note in caplog.text

    img = nib.Nifti1Image(np.zeros((3, 3, 3), np.int16), np.eye(4))
    shifted = np.eye(4)
    shifted[:3, 3] = [0.0, 0.0, 5.0]
    img.set_sform(np.eye(4), code=1)
    img.set_qform(shifted, code=1)
    nib.save(img, tmp_path / "two.nii")
    vol = read_volume(tmp_path / "two.nii")
    (note,) = vol.meta.extra["warnings"]
    assert "sform (code 1) and qform (code 1) disagree by up to 5 mm" in note
    np.testing.assert_allclose(vol.affine, np.eye(4))  # the sform, as nibabel


def test_complex_voxels_refused(tmp_path: Path) -> None:
    nib.save(nib.Nifti1Image(np.zeros((2, 2, 2), np.complex64), np.eye(4)), tmp_path / "c.nii")
    with pytest.raises(InvalidVolumeError, match=r"c\.nii: complex-valued voxels \(complex64\)"):
        read_volume(tmp_path / "c.nii")
    with pytest.raises(InvalidVolumeError, match="complex-valued"):
        Volume(np.zeros((2, 2, 2), np.complex64), np.eye(4))


def test_negative_labels_refused_by_label_map(tmp_path: Path) -> None:
    from medseg.volume import LabelMap

    nib.save(nib.Nifti1Image(-np.ones((2, 2, 2), np.int16), np.eye(4)), tmp_path / "n.nii")
    with pytest.raises(InvalidVolumeError, match=r"n\.nii: label map has negative values"):
        read_label_map(tmp_path / "n.nii")
    with pytest.raises(InvalidVolumeError, match="negative values"):
        LabelMap(np.full((2, 2, 2), -2.0, np.float32), np.eye(4))


# --- what is written, checked with nibabel (independent of medseg's reader) --------------------
@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_written_nifti_header_read_by_nibabel(tmp_path: Path, suffix: str) -> None:
    aff = _oblique_affine().astype(np.float32).astype(np.float64)
    arr = np.arange(7 * 6 * 5, dtype=np.int16).reshape(7, 6, 5)
    write_volume(Volume(arr, aff), tmp_path / f"w{suffix}")
    img = nib.load(tmp_path / f"w{suffix}")
    hdr = img.header
    assert int(hdr["sform_code"]) == 1 and int(hdr["qform_code"]) == 1  # scanner coordinates
    assert hdr.get_xyzt_units()[0] == "mm"
    np.testing.assert_allclose(hdr.get_sform(), aff, atol=1e-5)
    np.testing.assert_allclose(hdr.get_qform(), aff, atol=1e-4)
    assert img.get_data_dtype() == np.int16
    np.testing.assert_array_equal(np.asanyarray(img.dataobj), arr)
    assert tuple(float(z) for z in hdr.get_zooms()) == pytest.approx((0.8, 0.47, 2.5), abs=1e-5)
