"""DICOM series reading on tiny synthetic series with known geometry and values.

Every series here is written by :func:`write_series` with known ImagePositionPatient,
ImageOrientationPatient, PixelSpacing, rescale and pixel values, so the expected affine and
voxels are computed independently of the reader.
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    RLELossless,
    generate_uid,
)
from support.dicom import AXIAL, LPS_TO_RAS, expected_affine, oblique_iop, write_series
from support.paths import SAMPLE

from medseg.errors import DicomSeriesError, InputError
from medseg.io import read_volume
from medseg.io.dicom import (
    is_dicom_file,
    read_dicom,
    read_dicom_frames,
    scan_dicom_folder,
)


def _check_voxels(
    vol_array: np.ndarray, frames: list[np.ndarray], slope: float, icpt: float
) -> None:
    assert vol_array.shape == (frames[0].shape[1], frames[0].shape[0], len(frames))
    for k, fr in enumerate(frames):
        np.testing.assert_array_equal(vol_array[:, :, k], (fr.astype(np.float64) * slope + icpt).T)


# --- geometry and sorting ----------------------------------------------------------------------
def test_axial_geometry_exact_and_sorted_by_position(tmp_path: Path) -> None:
    frames, pos = write_series(tmp_path / "s", n=6, step=2.5)
    vol = read_dicom(tmp_path / "s")
    exp = expected_affine(AXIAL, pos[0], (0.5, 0.7), 2.5)
    np.testing.assert_allclose(vol.affine, exp, atol=1e-6)
    assert vol.orientation == "LPS"
    assert vol.spacing == pytest.approx((0.7, 0.5, 2.5))
    _check_voxels(vol.array, frames, 1.0, -1024.0)


def test_oblique_geometry_and_descending_positions(tmp_path: Path) -> None:
    iop = oblique_iop(23.0)
    normal = np.cross(iop[:3], iop[3:])
    origin = np.array([5.0, -7.5, 12.25])
    # positions written in *decreasing* order along the normal: the reader must sort them
    positions = [origin - k * 1.25 * normal for k in range(5)]
    frames, _ = write_series(tmp_path / "s", iop=iop, positions=positions)
    vol = read_dicom(tmp_path / "s")
    exp = expected_affine(iop, positions[-1], (0.5, 0.7), 1.25)
    np.testing.assert_allclose(vol.affine, exp, atol=1e-5)
    _check_voxels(vol.array, frames[::-1], 1.0, -1024.0)
    # voxel (i, j, k) centre is IPP_k + i*dc*row + j*dr*col (LPS), then RAS = (-x, -y, z)
    i, j, k = 3, 4, 2
    lps = positions[4 - k] + i * 0.7 * np.array(iop[:3]) + j * 0.5 * np.array(iop[3:])
    np.testing.assert_allclose(vol.voxel_to_world([i, j, k]), lps * [-1, -1, 1], atol=1e-5)


def test_single_file_is_one_slice_volume_with_recorded_spacing_source(tmp_path: Path) -> None:
    frames, _ = write_series(tmp_path / "s", n=1)
    f = next((tmp_path / "s").iterdir())
    vol = read_dicom(f)
    assert vol.shape == (7, 6, 1)
    assert vol.spacing[2] == pytest.approx(9.9)
    assert vol.meta.extra["slice_spacing_source"] == "SliceThickness"
    _check_voxels(vol.array, frames, 1.0, -1024.0)


# --- rescale and dtype ----------------------------------------------------------------------------
def test_rescale_integral_intercept_gives_int16_hu(tmp_path: Path) -> None:
    frames, _ = write_series(tmp_path / "s", intercept=-1024.0)
    vol = read_dicom(tmp_path / "s")
    assert vol.dtype == np.int16
    assert vol.meta.rescale_intercept == -1024.0 and vol.meta.units == "HU"
    assert vol.meta.modality == "CT" and vol.meta.series_description == "synthetic CT"
    _check_voxels(vol.array, frames, 1.0, -1024.0)


def test_rescale_too_wide_for_int16_gives_int32(tmp_path: Path) -> None:
    frames, _ = write_series(tmp_path / "s", intercept=32000.0)
    vol = read_dicom(tmp_path / "s")
    assert vol.dtype == np.int32
    _check_voxels(vol.array, frames, 1.0, 32000.0)


def test_rescale_zero_intercept_keeps_stored_type(tmp_path: Path) -> None:
    frames, _ = write_series(tmp_path / "s", intercept=0.0, dtype=np.uint16)
    vol = read_dicom(tmp_path / "s")
    assert vol.dtype == np.uint16
    _check_voxels(vol.array, frames, 1.0, 0.0)


def test_rescale_fractional_slope_gives_float32(tmp_path: Path) -> None:
    frames, _ = write_series(tmp_path / "s", slope=0.25, intercept=-3.5, dtype=np.int16)
    vol = read_dicom(tmp_path / "s")
    assert vol.dtype == np.float32
    assert vol.meta.rescale_slope == 0.25
    _check_voxels(vol.array, frames, 0.25, -3.5)


def test_per_slice_rescale_applied_per_slice(tmp_path: Path) -> None:
    slopes = [1.0, 2.0, 0.5, 1.0]
    per = [{"RescaleSlope": str(s), "RescaleIntercept": "0"} for s in slopes]
    frames, _ = write_series(tmp_path / "s", n=4, per_slice=per, shuffle=False)
    vol = read_dicom(tmp_path / "s")
    assert vol.dtype == np.float32 and vol.meta.rescale_slope is None
    for k, s in enumerate(slopes):
        np.testing.assert_allclose(vol.array[:, :, k], frames[k].T * s)


# --- refusals -------------------------------------------------------------------------------------
def test_missing_slice_refused_with_positions(tmp_path: Path) -> None:
    pos = [np.array([0.0, 0.0, z]) for z in (10.0, 12.0, 14.0, 18.0, 20.0)]
    write_series(tmp_path / "s", positions=pos)
    with pytest.raises(DicomSeriesError) as ei:
        read_dicom(tmp_path / "s")
    msg = str(ei.value)
    assert str(tmp_path / "s") in msg
    assert "expected 2 mm" in msg and "4 mm between slices at 14 and 18" in msg


def test_uneven_spacing_refused(tmp_path: Path) -> None:
    pos = [np.array([0.0, 0.0, z]) for z in (0.0, 1.0, 2.0, 3.1, 4.0, 5.0)]
    write_series(tmp_path / "s", positions=pos)
    info = scan_dicom_folder(tmp_path / "s").series[0]
    assert info.problem is not None and "uneven slice spacing" in info.problem
    with pytest.raises(DicomSeriesError, match="uneven slice spacing"):
        read_dicom(tmp_path / "s")


def test_duplicate_positions_refused(tmp_path: Path) -> None:
    pos = [np.array([0.0, 0.0, z]) for z in (0.0, 2.0, 2.0, 4.0)]
    write_series(tmp_path / "s", positions=pos)
    with pytest.raises(DicomSeriesError, match="duplicate slice positions"):
        read_dicom(tmp_path / "s")


def test_gantry_tilt_refused_with_angle(tmp_path: Path) -> None:
    tilt = 12.5
    c = np.cos(np.deg2rad(tilt))
    s = np.sin(np.deg2rad(tilt))
    iop = (1.0, 0.0, 0.0, 0.0, c, -s)
    pos = [np.array([0.0, 0.0, 3.0 * k]) for k in range(4)]  # table moves along z, not normal
    write_series(tmp_path / "s", iop=iop, positions=pos)
    with pytest.raises(DicomSeriesError, match=f"gantry tilt.*{tilt:.2f} degrees"):
        read_dicom(tmp_path / "s")


def test_truncated_file_names_the_file(tmp_path: Path) -> None:
    write_series(tmp_path / "s", n=4, rows=16, cols=16)
    victim = sorted((tmp_path / "s").iterdir())[2]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) - 100])
    with pytest.raises(InputError) as ei:
        read_dicom(tmp_path / "s")
    assert victim.name in str(ei.value) and "expected" in str(ei.value)


def test_corrupt_header_names_the_file(tmp_path: Path) -> None:
    write_series(tmp_path / "s", n=4)
    victim = sorted((tmp_path / "s").iterdir())[1]
    victim.write_bytes(victim.read_bytes()[:200])
    scan = scan_dicom_folder(tmp_path / "s")
    assert [p for p, _ in scan.unreadable] == [victim]
    with pytest.raises(InputError) as ei:
        read_dicom(tmp_path / "s")
    assert victim.name in str(ei.value)


# --- several series / splits ------------------------------------------------------------------
def test_two_series_listed_and_selectable(tmp_path: Path) -> None:
    fa, _ = write_series(tmp_path, n=3, series_number=2, description="first", prefix="a", seed=1)
    fb, _ = write_series(tmp_path, n=4, series_number=5, description="second", prefix="b", seed=2)
    with pytest.raises(DicomSeriesError) as ei:
        read_dicom(tmp_path)
    msg = str(ei.value)
    assert "2 series" in msg and "'first'" in msg and "'second'" in msg and "4 slices" in msg
    scan = scan_dicom_folder(tmp_path)
    assert [s.description for s in scan.series] == ["first", "second"]
    _check_voxels(read_dicom(tmp_path, series=0).array, fa, 1.0, -1024.0)
    _check_voxels(read_dicom(tmp_path, series=scan.series[1].key).array, fb, 1.0, -1024.0)
    with pytest.raises(DicomSeriesError, match="out of range"):
        read_dicom(tmp_path, series=7)


def test_echoes_split_not_stacked(tmp_path: Path) -> None:
    uid = generate_uid()
    f1, _ = write_series(tmp_path, series_uid=uid, extra={"EchoNumbers": 1}, prefix="e1", seed=1)
    f2, _ = write_series(tmp_path, series_uid=uid, extra={"EchoNumbers": 2}, prefix="e2", seed=2)
    scan = scan_dicom_folder(tmp_path)
    assert [s.key for s in scan.series] == [f"{uid}#echo1", f"{uid}#echo2"]
    assert all(s.n_slices == 5 and s.problem is None for s in scan.series)
    _check_voxels(read_dicom(tmp_path, series=f"{uid}#echo1").array, f1, 1.0, -1024.0)
    _check_voxels(read_dicom(tmp_path, series=f"{uid}#echo2").array, f2, 1.0, -1024.0)


def test_repeated_positions_without_tags_split_into_time_points(tmp_path: Path) -> None:
    """GE-style fMRI: one UID, positions repeated per volume, only InstanceNumber orders them."""
    uid = generate_uid()
    pos = [np.array([0.0, 0.0, 4.0 * k]) for k in range(3)]
    per_t = []
    for t in range(4):
        per = [{"InstanceNumber": t * 3 + k + 1} for k in range(3)]
        fr, _ = write_series(
            tmp_path,
            positions=pos,
            series_uid=uid,
            per_slice=per,
            prefix=f"t{t}_",
            seed=10 + t,
            shuffle=False,
        )
        per_t.append(fr)
    scan = scan_dicom_folder(tmp_path)
    assert [s.key for s in scan.series] == [f"{uid}#t{t + 1}" for t in range(4)]
    for t in range(4):
        _check_voxels(read_dicom(tmp_path, series=t, scan=scan).array, per_t[t], 1.0, -1024.0)


def test_orientations_split(tmp_path: Path) -> None:
    uid = generate_uid()
    write_series(tmp_path, series_uid=uid, prefix="ax")
    write_series(tmp_path, series_uid=uid, iop=(0, 1, 0, 0, 0, -1), prefix="sag")
    keys = [s.key for s in scan_dicom_folder(tmp_path).series]
    assert keys == [f"{uid}#orient1", f"{uid}#orient2"]


def test_non_dicom_files_skipped_and_reported(tmp_path: Path) -> None:
    write_series(tmp_path / "s", n=3)
    (tmp_path / "s" / "notes.txt").write_text("hello")
    (tmp_path / "s" / "stray.nii").write_bytes(b"\x00" * 400)
    scan = scan_dicom_folder(tmp_path / "s")
    reasons = {p.name: r for p, r in scan.skipped}
    assert set(reasons) == {"notes.txt", "stray.nii"}
    assert "not a DICOM file" in reasons["notes.txt"] and "stray .nii" in reasons["stray.nii"]
    assert scan.series[0].n_slices == 3 and scan.series[0].problem is None


def test_no_patient_identity_in_records_or_errors(tmp_path: Path) -> None:
    pos = [np.array([0.0, 0.0, z]) for z in (0.0, 1.0, 5.0)]
    write_series(tmp_path / "bad", positions=pos)
    write_series(tmp_path / "ok")
    texts = [
        repr(scan_dicom_folder(tmp_path / "bad").series),
        repr(scan_dicom_folder(tmp_path / "ok")),
    ]
    with pytest.raises(DicomSeriesError) as ei:
        read_dicom(tmp_path / "bad")
    texts.append(str(ei.value))
    vol = read_dicom(tmp_path / "ok")
    texts.append(repr(vol.meta.as_dict()))
    for secret in ("Secret", "PID-SECRET", "19010101"):
        assert not any(secret in t for t in texts)


# --- pixels: fast path vs decoders ------------------------------------------------------------
def test_is_dicom_file(tmp_path: Path) -> None:
    write_series(tmp_path / "s", n=1)
    (tmp_path / "x.dcm").write_bytes(b"\x00" * 128 + b"DICX")
    assert is_dicom_file(next((tmp_path / "s").iterdir()))
    assert not is_dicom_file(tmp_path / "x.dcm")
    assert not is_dicom_file(tmp_path / "missing.dcm")


def test_implicit_vr_and_signed_storage(tmp_path: Path) -> None:
    frames, _ = write_series(
        tmp_path / "s", dtype=np.int16, intercept=0.0, transfer_syntax=ImplicitVRLittleEndian
    )
    vol = read_dicom(tmp_path / "s")
    assert vol.dtype == np.int16
    _check_voxels(vol.array, frames, 1.0, 0.0)


@pytest.mark.parametrize("parallel", [False, True])
def test_rle_compressed_series_decodes_serial_and_parallel(tmp_path: Path, parallel: bool) -> None:
    frames, _ = write_series(tmp_path / "s", n=10, rows=8, cols=9, transfer_syntax=RLELossless)
    assert (
        pydicom.dcmread(next((tmp_path / "s").iterdir())).file_meta.TransferSyntaxUID == RLELossless
    )
    vol = read_dicom(tmp_path / "s", parallel=parallel)
    assert vol.dtype == np.int16
    _check_voxels(vol.array, frames, 1.0, -1024.0)


def test_read_dicom_frames_raw_values(tmp_path: Path) -> None:
    frames, _ = write_series(tmp_path / "s", n=1)
    raw = read_dicom_frames(next((tmp_path / "s").iterdir()))
    np.testing.assert_array_equal(raw, frames[0][None])


def test_peak_memory_at_most_1_5x_volume(tmp_path: Path) -> None:
    write_series(tmp_path / "s", n=24, rows=96, cols=96, shuffle=False)
    scan = scan_dicom_folder(tmp_path / "s")
    tracemalloc.start()
    try:
        vol = read_dicom(tmp_path / "s", scan=scan)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak <= 1.5 * vol.array.nbytes, (peak, vol.array.nbytes)


def test_read_volume_dispatches_folders_to_dicom(tmp_path: Path) -> None:
    frames, _ = write_series(tmp_path / "s", n=3)
    _check_voxels(read_volume(tmp_path / "s").array, frames, 1.0, -1024.0)


# --- shipped sample ---------------------------------------------------------------------------
def test_shipped_jpeg2000_ct_matches_simpleitk() -> None:
    import SimpleITK as sitk

    folder = SAMPLE / "ct_dicom"
    vol = read_dicom(folder)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    img = reader.Execute()
    ref = sitk.GetArrayFromImage(img).transpose(2, 1, 0)  # ITK (k, j, i) -> (i, j, k)
    assert vol.shape == (512, 512, 20) and vol.dtype == np.int16
    np.testing.assert_array_equal(vol.array, ref)
    lps = np.eye(4)
    lps[:3, :3] = np.asarray(img.GetDirection()).reshape(3, 3) * np.asarray(img.GetSpacing())
    lps[:3, 3] = img.GetOrigin()
    np.testing.assert_allclose(vol.affine_lps(), lps, atol=1e-4)
    assert vol.meta.units == "HU" and vol.meta.rescale_intercept == -1024.0


# --- enhanced multi-frame and tagged time points -----------------------------------------------
def write_enhanced(
    path: Path, n_slices: int = 4, rows: int = 5, cols: int = 6, seed: int = 3
) -> dict[str, list[np.ndarray]]:
    """One Enhanced MR file holding a magnitude and a field-map volume (frames interleaved
    and shuffled); per-frame position, type and rescale; shared orientation and spacing."""
    from pydicom.sequence import Sequence as Seq
    from pydicom.uid import EnhancedMRImageStorage

    rng = np.random.default_rng(seed)
    kinds = {"M": (1.0, 0.0), "FIELD_MAP": (0.5, -100.0)}
    stored = {
        t: [rng.integers(0, 4000, (rows, cols)).astype(np.uint16) for _ in range(n_slices)]
        for t in kinds
    }
    order = [(t, k) for k in range(n_slices) for t in kinds]
    order = [order[i] for i in rng.permutation(len(order))]
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = EnhancedMRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = EnhancedMRImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "MR"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "T1", "MIXED"]
    ds.Rows, ds.Columns = rows, cols
    ds.NumberOfFrames = len(order)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    shared = Dataset()
    po, pm = Dataset(), Dataset()
    po.ImageOrientationPatient = ["0", "1", "0", "0", "0", "-1"]  # sagittal
    pm.PixelSpacing = ["1.5", "2.0"]
    pm.SliceThickness = "3"
    shared.PlaneOrientationSequence = Seq([po])
    shared.PixelMeasuresSequence = Seq([pm])
    ds.SharedFunctionalGroupsSequence = Seq([shared])
    per = []
    for t, k in order:
        fg = Dataset()
        pp, ft, pv, fc = Dataset(), Dataset(), Dataset(), Dataset()
        pp.ImagePositionPatient = [f"{-30.0 + 3.0 * k}", "10", "20"]
        ft.FrameType = ["ORIGINAL", "PRIMARY", "T1", t]
        pv.RescaleSlope, pv.RescaleIntercept = str(kinds[t][0]), str(kinds[t][1])
        pv.RescaleType = "US"
        fc.StackID, fc.InStackPositionNumber, fc.TemporalPositionIndex = "1", k + 1, 1
        fg.PlanePositionSequence = Seq([pp])
        fg.MRImageFrameTypeSequence = Seq([ft])
        fg.PixelValueTransformationSequence = Seq([pv])
        fg.FrameContentSequence = Seq([fc])
        per.append(fg)
    ds.PerFrameFunctionalGroupsSequence = Seq(per)
    ds.PixelData = b"".join(stored[t][k].tobytes() for t, k in order)
    ds.save_as(path, enforce_file_format=True)
    return {t: [stored[t][k] * kinds[t][0] + kinds[t][1] for k in range(n_slices)] for t in kinds}


def test_enhanced_multiframe_split_by_frame_type_sorted_and_rescaled(tmp_path: Path) -> None:
    f = tmp_path / "enh.dcm"
    expected = write_enhanced(f)
    scan = scan_dicom_folder(f)
    by = {s.key.split("#", 1)[1]: s for s in scan.series}
    assert set(by) == {"type-m", "type-fieldmap"}
    with pytest.raises(DicomSeriesError, match="2 series"):
        read_dicom(f)
    for key, t in (("type-m", "M"), ("type-fieldmap", "FIELD_MAP")):
        vol = read_dicom(f, series=by[key].key, scan=scan)
        assert vol.shape == (6, 5, 4)
        # normal = row x column = (-1, 0, 0) (LPS): slices sorted by decreasing x
        for k in range(4):
            np.testing.assert_allclose(vol.array[:, :, k], expected[t][3 - k].T)
        iop = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
        exp = expected_affine(iop, (-21.0, 10.0, 20.0), (1.5, 2.0), 3.0)
        np.testing.assert_allclose(vol.affine, exp, atol=1e-6)
        assert vol.orientation == "PIR"
    assert read_dicom(f, series=by["type-m"].key).dtype == np.uint16  # slope 1, intercept 0
    assert read_dicom(f, series=by["type-fieldmap"].key).dtype == np.float32


def test_time_points_split_by_temporal_tag_not_instance_order(tmp_path: Path) -> None:
    """Repeated positions with TemporalPositionIdentifier: the tag decides, even when
    InstanceNumbers are scrambled across time points."""
    uid = generate_uid()
    pos = [np.array([0.0, 0.0, 2.0 * k]) for k in range(3)]
    per_t = []
    for t in range(3):
        per = [
            {"TemporalPositionIdentifier": t + 1, "InstanceNumber": 100 - 10 * k - t}
            for k in range(3)
        ]
        fr, _ = write_series(
            tmp_path,
            positions=pos,
            series_uid=uid,
            per_slice=per,
            prefix=f"t{t}_",
            seed=20 + t,
            shuffle=False,
        )
        per_t.append(fr)
    scan = scan_dicom_folder(tmp_path)
    assert [s.key for s in scan.series] == [f"{uid}#t{t + 1}" for t in range(3)]
    for t in range(3):
        _check_voxels(read_dicom(tmp_path, series=t, scan=scan).array, per_t[t], 1.0, -1024.0)


def test_same_position_only_is_not_split_into_one_slice_volumes(tmp_path: Path) -> None:
    pos = [np.array([0.0, 0.0, 5.0])] * 3
    per = [{"AcquisitionNumber": a} for a in (1, 2, 3)]
    write_series(tmp_path / "s", positions=pos, per_slice=per)
    scan = scan_dicom_folder(tmp_path / "s")
    assert len(scan.series) == 1 and "duplicate slice positions" in (scan.series[0].problem or "")


def test_repeated_reads_reuse_scan_until_a_file_changes(tmp_path: Path) -> None:
    frames, _ = write_series(tmp_path / "s", n=4, rows=16, cols=16, shuffle=False)
    _check_voxels(read_dicom(tmp_path / "s").array, frames, 1.0, -1024.0)
    _check_voxels(read_dicom(tmp_path / "s").array, frames, 1.0, -1024.0)
    victim = sorted((tmp_path / "s").iterdir())[3]
    victim.write_bytes(victim.read_bytes()[:-50])  # changed size: the scan must be redone
    with pytest.raises(InputError, match=victim.name):
        read_dicom(tmp_path / "s")


def test_orientation_jitter_does_not_split_a_series(tmp_path: Path) -> None:
    """IOP values 1e-6 apart (across a 1e-4 rounding boundary) are one image plane."""
    per = [
        {"ImageOrientationPatient": ["1", "0", f"{0.00005 + (-1) ** k * 1e-6:.8f}", "0", "1", "0"]}
        for k in range(5)
    ]
    frames, _ = write_series(tmp_path / "s", per_slice=per, shuffle=False)
    scan = scan_dicom_folder(tmp_path / "s")
    assert len(scan.series) == 1 and scan.series[0].problem is None
    _check_voxels(read_dicom(tmp_path / "s").array, frames, 1.0, -1024.0)


def test_per_slice_trigger_times_do_not_split_distinct_positions(tmp_path: Path) -> None:
    per = [{"TriggerTime": str(10.0 * k), "EchoTime": str(5.0 + k)} for k in range(5)]
    write_series(tmp_path / "s", per_slice=per)
    scan = scan_dicom_folder(tmp_path / "s")
    assert [s.n_slices for s in scan.series] == [5]


def test_deflated_series_decodes(tmp_path: Path) -> None:
    frames, _ = write_series(tmp_path / "s", n=3, transfer_syntax=DeflatedExplicitVRLittleEndian)
    f = next((tmp_path / "s").iterdir())
    assert pydicom.dcmread(f).file_meta.TransferSyntaxUID == DeflatedExplicitVRLittleEndian
    vol = read_dicom(tmp_path / "s")
    assert vol.meta.extra["transfer_syntax"] == "Deflated Explicit VR Little Endian"
    _check_voxels(vol.array, frames, 1.0, -1024.0)


# --- Siemens mosaic ----------------------------------------------------------------------------
def _csa2(tags: dict[str, tuple[str, list[str]]]) -> bytes:
    """A minimal Siemens CSA2 ("SV10") header holding ``{name: (vr, items)}``."""
    import struct

    out = b"SV10\x04\x03\x02\x01" + struct.pack("<2I", len(tags), 77)
    for name, (vr, items) in tags.items():
        out += struct.pack("<64si4s3i", name.encode(), len(items), vr.encode(), 0, len(items), 77)
        for it in items:
            b = it.encode() + b"\x00"
            out += struct.pack("<4i", len(b), len(b), 77, len(b)) + b + b"\x00" * (-len(b) % 4)
    return out


@pytest.mark.parametrize("normal_sign", [1.0, -1.0])
def test_synthetic_mosaic_demosaicked_with_csa_geometry(tmp_path: Path, normal_sign: float) -> None:
    """5 slices of 4x3 tiled 3x3 in a 12x9 frame; slice direction from the CSA normal."""
    n, tr, tc, tiles = 5, 4, 3, 3
    rng = np.random.default_rng(5)
    slices = [rng.integers(0, 3000, (tr, tc)).astype(np.uint16) for _ in range(n)]
    mosaic = np.zeros((tr * tiles, tc * tiles), dtype=np.uint16)
    for s, sl in enumerate(slices):
        mosaic[
            (s // tiles) * tr : (s // tiles + 1) * tr, (s % tiles) * tc : (s % tiles + 1) * tc
        ] = sl
    write_series(
        tmp_path / "m",
        n=1,
        rows=12,
        cols=9,
        intercept=0.0,
        extra={
            "ImageType": ["ORIGINAL", "PRIMARY", "M", "MOSAIC"],
            "SpacingBetweenSlices": "3.5",
        },
    )
    f = next((tmp_path / "m").iterdir())
    ds = pydicom.dcmread(f)
    ds.add_new((0x0029, 0x0010), "LO", "SIEMENS CSA HEADER")
    csa = _csa2(
        {
            "NumberOfImagesInMosaic": ("US", [str(n)]),
            "SliceNormalVector": ("FD", ["0.0", "0.0", str(normal_sign)]),
        }
    )
    ds.add_new((0x0029, 0x1010), "OB", csa)
    ds.PixelData = mosaic.tobytes()
    ds.save_as(f, enforce_file_format=True)

    info = scan_dicom_folder(tmp_path / "m").series[0]
    assert info.problem is None and info.n_slices == n and info.shape == (tc, tr, n)
    vol = read_dicom(f)
    for s in range(n):
        np.testing.assert_array_equal(vol.array[:, :, s], slices[s].T)
    ipp = np.array([float(v) for v in ds.ImagePositionPatient])
    # first slice centre: mosaic corner shifted by half the unused tiles
    origin = (
        ipp
        + np.array([1.0, 0, 0]) * 0.7 * (9 - tc) / 2
        + np.array([0, 1.0, 0]) * 0.5 * (12 - tr) / 2
    )
    lps = np.eye(4)
    lps[:3, :3] = np.diag([0.7, 0.5, 3.5 * normal_sign])
    lps[:3, 3] = origin
    np.testing.assert_allclose(vol.affine, LPS_TO_RAS @ lps, atol=1e-6)
    assert vol.meta.extra["slice_spacing_source"] == "SpacingBetweenSlices (mosaic)"


def test_slice_shifted_in_plane_refused(tmp_path: Path) -> None:
    """Evenly spaced along the normal, but one slice moved 2 mm sideways: not one grid."""
    pos = [np.array([0.0, 0.0, 2.0 * k]) for k in range(5)]
    pos[2] = pos[2] + np.array([2.0, 0.0, 0.0])
    write_series(tmp_path / "s", positions=pos)
    with pytest.raises(DicomSeriesError, match=r"not on one line.*shifted 2 mm in-plane"):
        read_dicom(tmp_path / "s")


@pytest.mark.parametrize("ts", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_frame_header_values_match_what_was_written(tmp_path: Path, ts: str) -> None:
    from medseg.io.dicom.headers import read_frame_headers

    iop = oblique_iop(11.0)
    _, pos = write_series(
        tmp_path / "s",
        n=1,
        iop=iop,
        slope=0.5,
        intercept=-7.0,
        dtype=np.int16,
        extra={"ImageType": ["DERIVED", "SECONDARY"], "EchoNumbers": 2, "EchoTime": "4.5"},
        transfer_syntax=ts,
        shuffle=False,
    )
    f = next((tmp_path / "s").iterdir())
    (h,) = read_frame_headers(f)  # type: ignore[misc]
    assert (h.rows, h.cols, h.bits_allocated, h.pixel_representation) == (6, 7, 16, 1)
    assert h.image_type == ("DERIVED", "SECONDARY")
    assert (h.echo_number, h.echo_time, h.instance_number) == (2, 4.5, 1)
    assert (h.slope, h.intercept, h.modality, h.series_number) == (0.5, -7.0, "CT", 3)
    np.testing.assert_allclose(h.ipp, pos[0], atol=1e-6)
    np.testing.assert_allclose(h.iop, iop, atol=1e-8)
    assert h.pixel_spacing == (0.5, 0.7) and h.slice_thickness == 9.9
    assert h.description == "synthetic CT" and h.transfer_syntax_uid == ts


def test_series_selection_by_uid_and_errors(tmp_path: Path) -> None:
    uid = generate_uid()
    write_series(tmp_path / "a", series_uid=uid, n=3)
    assert read_dicom(tmp_path / "a", series=uid).shape == (7, 6, 3)
    assert read_dicom(tmp_path / "a", series="0").shape == (7, 6, 3)  # digits = index
    with pytest.raises(DicomSeriesError, match="not found"):
        read_dicom(tmp_path / "a", series="1.2.3.nope")
    # one UID split in two: the bare UID is ambiguous, the keys are not
    write_series(tmp_path / "b", series_uid=uid, extra={"EchoNumbers": 1}, prefix="e1")
    write_series(tmp_path / "b", series_uid=uid, extra={"EchoNumbers": 2}, prefix="e2")
    with pytest.raises(DicomSeriesError, match="matches several volumes"):
        read_dicom(tmp_path / "b", series=uid)


def test_folder_without_images_and_non_image_file(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images")
    with pytest.raises(DicomSeriesError, match="no DICOM image series found"):
        read_dicom(tmp_path / "empty")
    with pytest.raises(InputError, match="no such file"):
        read_dicom(tmp_path / "missing")
    # a DICOM file that is not an image (a basic directory object) is named as such
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.1.3.10"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.FileSetID = "TEST"
    ds.save_as(tmp_path / "DICOMDIR", enforce_file_format=True)
    with pytest.raises(DicomSeriesError, match="DICOMDIR"):
        read_dicom(tmp_path / "DICOMDIR")


def test_direct_encapsulated_decode_matches_pydicom_full_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Single-frame compressed files decode from the offset the header scan found, without a
    second header parse, to exactly the values of a full pydicom read."""
    from medseg.io.dicom import headers, pixels, read_dicom

    files = sorted((SAMPLE / "ct_dicom").glob("*.dcm"))
    for path in files[:3]:
        recs = headers.read_frame_headers(path)
        assert not isinstance(recs, str)
        (h,) = recs
        assert h.encapsulated_offset is not None
        np.testing.assert_array_equal(pixels.decode_encapsulated(h), pixels.decode_file(path))

    def no_full_read(*args: object, **kwargs: object) -> None:
        raise AssertionError("decode_file used for a single-frame compressed file")

    monkeypatch.setattr(pixels, "decode_file", no_full_read)
    vol = read_dicom(SAMPLE / "ct_dicom", parallel=False)
    assert vol.shape == (512, 512, 20)
