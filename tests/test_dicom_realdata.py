"""DICOM reading checked against reference conversions of real third-party data (../shared).

References: dcm2niix / dicom2nifti NIfTI outputs and SimpleITK readings. Every comparison is
made in **world space**: the map from medseg voxel indices to reference voxel indices is
derived from the two affines, must be a signed axis permutation plus an integer shift, and the
voxel values are compared after that mapping (so array order and axis flips do not matter).
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from support.paths import shared_path

from medseg.errors import DicomSeriesError, MedsegError
from medseg.io.dicom import read_dicom, read_dicom_frames, scan_dicom_folder
from medseg.volume import Volume

pytestmark = pytest.mark.realdata

D2N = ("dicom", "dicom2nifti_edge_cases")


def assert_same_world(
    vol: Volume,
    ref: np.ndarray,
    ref_affine: np.ndarray,
    *,
    atol_mm: float = 1e-2,
    rtol: float = 0.0,
    atol: float = 0.0,
    scale: float = 1.0,
) -> None:
    """``vol`` and ``(ref, ref_affine)`` hold the same voxels at the same RAS+ positions."""
    m = np.linalg.inv(ref_affine) @ vol.affine  # medseg index -> reference index
    perm = np.rint(m[:3, :3])
    shift = np.rint(m[:3, 3])
    assert np.allclose(np.abs(perm).sum(0), 1) and np.allclose(np.abs(perm).sum(1), 1), m
    # geometry: medseg affine equals the reference affine composed with the index map
    np.testing.assert_allclose(
        vol.affine[:3],
        (ref_affine @ np.vstack([np.hstack([perm, shift[:, None]]), [0, 0, 0, 1]]))[:3],
        atol=atol_mm,
    )
    assert sorted(ref.shape) == sorted(vol.shape), (ref.shape, vol.shape)
    idx = np.indices(vol.shape).reshape(3, -1)
    ridx = (perm @ idx + shift[:, None]).astype(np.int64)
    for a in range(3):
        assert ridx[a].min() >= 0 and ridx[a].max() < ref.shape[a]
    ref_vals = ref[tuple(ridx)].astype(np.float64)
    ours = vol.array.reshape(-1, order="C").astype(np.float64) * scale
    # np.indices(...).reshape(3, -1) enumerates voxels in C order
    np.testing.assert_allclose(ours, ref_vals, rtol=rtol, atol=atol)


def _load(path: Path) -> tuple[np.ndarray, np.ndarray]:
    img = nib.load(path)
    return np.asarray(img.dataobj), img.affine


# --- dicom2nifti edge cases -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("case", "ref"),
    [
        ("generic/anatomical/001", "generic/anatomical/001_ground_truth.nii.gz"),
        ("generic/anatomical/001_implicit", "generic/anatomical/001_implicit_ground_truth.nii.gz"),
        (
            "generic/anatomical/002_non_isotropic",
            "generic/anatomical/002_non_isotropic_ground_truth.nii.gz",
        ),
        ("generic/compressed_j2k/001", "generic/compressed_j2k/001_ground_truth.nii.gz"),
        ("generic/compressed_jpeg/001", "generic/compressed_jpeg/001_ground_truth.nii.gz"),
        ("generic/compressed_jpegls/001", "generic/compressed_jpegls/001_ground_truth.nii.gz"),
        ("generic/compressed_rle/001", "generic/compressed_rle/001_ground_truth.nii.gz"),
        ("failing/slicecount/001", "failing/slicecount/001_ground_truth.nii.gz"),
    ],
)
def test_dicom2nifti_cases_match_ground_truth(case: str, ref: str) -> None:
    folder = shared_path(*D2N, *case.split("/"))
    vol = read_dicom(folder)
    arr, aff = _load(shared_path(*D2N, *ref.split("/")))
    # 002_non_isotropic: GT is float64 from a fractional slope; medseg keeps float32
    rtol = 1e-6 if np.issubdtype(arr.dtype, np.floating) else 0.0
    assert_same_world(vol, arr, aff, rtol=rtol)
    if case.startswith("generic/anatomical/001"):
        # the reoriented variant is the same data in another array order
        arr2, aff2 = _load(
            shared_path(*D2N, *(ref.replace(".nii.gz", "_reoriented.nii.gz")).split("/"))
        )
        assert_same_world(vol, arr2, aff2, rtol=rtol)


@pytest.mark.parametrize(
    ("case", "pattern"),
    [
        (
            "failing/sliceincrement/001",
            r"uneven slice spacing.*expected 5 mm.*10 mm between slices at 28.11 and 38.11",
        ),
        # 002 is tilted *and* misses a slice; the tilt is reported first
        ("failing/sliceincrement/002", r"gantry tilt: .*15\.50 degrees"),
        ("failing/gantrytilting/001", r"gantry tilt: .*14\.00 degrees"),
        ("failing/notavolume/001", r"duplicate slice positions"),
    ],
)
def test_dicom2nifti_failing_cases_refused(case: str, pattern: str) -> None:
    folder = shared_path(*D2N, *case.split("/"))
    scan = scan_dicom_folder(folder)
    assert len(scan.series) == 1
    assert scan.series[0].problem is not None
    with pytest.raises(DicomSeriesError, match=pattern) as ei:
        read_dicom(folder)
    assert str(folder) in str(ei.value)


def test_dicom2nifti_sliceorientation_reads_like_simpleitk() -> None:
    """Slightly oblique 2-slice MR: positions do run along the normal, so it is a volume."""
    folder = shared_path(*D2N, "failing", "sliceorientation", "001")
    vol = read_dicom(folder)
    arr, aff = _sitk_series(folder)
    assert_same_world(vol, arr, aff, atol_mm=1e-3)


# --- SimpleITK references ---------------------------------------------------------------------
def _sitk_series(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return _sitk_to_ras(reader.Execute())


def _sitk_to_ras(img: object) -> tuple[np.ndarray, np.ndarray]:
    import SimpleITK as sitk

    assert isinstance(img, sitk.Image)
    arr = sitk.GetArrayFromImage(img)
    arr = arr.transpose(tuple(range(arr.ndim))[::-1])  # ITK (k, j, i) -> (i, j, k)
    lps = np.eye(4)
    lps[:3, :3] = np.asarray(img.GetDirection()).reshape(3, 3) * np.asarray(img.GetSpacing())
    lps[:3, 3] = img.GetOrigin()
    return arr, np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps


def test_totalsegmentator_jpeg2000_ct_matches_simpleitk() -> None:
    folder = shared_path("totalsegmentator_example", "example_ct_dicom")
    vol = read_dicom(folder)
    arr, aff = _sitk_series(folder)
    assert vol.shape == (512, 512, 20) and vol.meta.units == "HU"
    assert_same_world(vol, arr, aff, atol_mm=1e-4)


# --- GE 4-D EPI: one UID, 10 volumes ----------------------------------------------------------
def test_ge_epi_split_into_10_volumes_matching_dcm2niix() -> None:
    folder = shared_path("dicom", "nih_ge_epi_series", "In", "mr_0004")
    scan = scan_dicom_folder(folder)
    assert len(scan.series) == 10
    assert len({s.series_uid for s in scan.series}) == 1
    assert all(s.n_slices == 15 and s.problem is None for s in scan.series)
    assert [s.key.rsplit("#", 1)[1] for s in scan.series] == [f"t{t}" for t in range(1, 11)]
    ref, aff = _load(
        shared_path("dicom", "nih_ge_epi_series", "Ref", "DCM2NIIX_regression_test_4.nii")
    )
    assert ref.shape == (64, 64, 15, 10)
    for t, s in enumerate(scan.series):
        vol = read_dicom(folder, series=s.index, scan=scan)
        assert vol.spacing == pytest.approx((3.75, 3.75, 5.0), abs=1e-4)
        assert_same_world(vol, ref[..., t], aff)
    with pytest.raises(DicomSeriesError, match="10 series"):
        read_dicom(folder, scan=scan)


# --- enhanced multi-frame ---------------------------------------------------------------------
def test_philips_enhanced_magnitude_and_fieldmap_split_and_match_dcm2niix() -> None:
    f = shared_path("dicom", "enhanced_multiframe", "In", "Philips", "IM_0027_fMAP.dcm")
    refdir = shared_path("dicom", "enhanced_multiframe", "Ref")
    scan = scan_dicom_folder(f)
    keys = sorted(s.key.split("#", 1)[1] for s in scan.series)
    assert keys == ["type-fieldmap", "type-m"]
    assert all(s.n_slices == 32 and s.shape == (64, 64, 32) for s in scan.series)
    with pytest.raises(DicomSeriesError, match="2 series"):
        read_dicom(f)
    by = {s.key.split("#", 1)[1]: s for s in scan.series}
    fmap = read_dicom(f, series=by["type-fieldmap"].key)
    assert fmap.meta.units == "Hz"
    arr, aff = _load(refdir / "Philips_WIP_B0_NS_801_e2_fieldmaphz.nii")
    # the reference stores int16 with NIfTI float32 scl_slope 0.24420166 (DICOM: 0.24420024):
    # up to 4095 * 1.4e-6 = 0.006 Hz apart
    assert_same_world(fmap, arr, aff, atol=0.01)
    # dcm2niix stores the magnitude as Philips "precise values" (private ScaleSlope): the
    # DICOM-standard rescaled values medseg returns differ by 1 / (RescaleSlope * ScaleSlope).
    mag = read_dicom(f, series=by["type-m"].key)
    arr, aff = _load(refdir / "Philips_WIP_B0_NS_801_e1.nii")
    side = json.loads((refdir / "Philips_WIP_B0_NS_801_e1.json").read_text())
    scale = 1.0 / (side["PhilipsRescaleSlope"] * side["PhilipsScaleSlope"])
    assert_same_world(mag, arr, aff, rtol=1e-4, scale=scale)


def test_siemens_xa10_enhanced_time_points_match_dcm2niix() -> None:
    folder = shared_path("dicom", "enhanced_multiframe", "In", "Siemens", "XA10")
    scan = scan_dicom_folder(folder)
    assert [s.n_slices for s in scan.series] == [6, 6, 6, 6]
    ref, aff = _load(
        shared_path("dicom", "enhanced_multiframe", "Ref", "Siemens_REST1_w_SMS_PF7-8_6.nii")
    )
    for t, s in enumerate(scan.series):
        assert s.key.endswith(f"#t{t + 1}")
        assert_same_world(read_dicom(folder, series=s.index, scan=scan), ref[..., t], aff)


@pytest.mark.parametrize("name", ["eCT_Supplemental.dcm"])
def test_enhanced_ct_matches_simpleitk(name: str) -> None:
    import SimpleITK as sitk

    f = shared_path("dicom", "pydicom_data_codecs", name)
    vol = read_dicom(f)
    arr, aff = _sitk_to_ras(sitk.ReadImage(str(f)))
    assert_same_world(vol, arr, aff, atol_mm=1e-3)


# --- transfer syntaxes and codecs -------------------------------------------------------------
def test_mosaic_frame_decodes_identically_in_all_9_transfer_syntaxes() -> None:
    import SimpleITK as sitk

    folder = shared_path("dicom", "transfer_syntaxes_siemens", "In")
    base = read_dicom_frames(folder / "1.dcm")
    assert base.shape == (1, 384, 384)
    sitk_base = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "1.dcm"))).reshape(base.shape)
    np.testing.assert_array_equal(base, sitk_base)
    for i in range(2, 10):
        np.testing.assert_array_equal(
            read_dicom_frames(folder / f"{i}.dcm"), base, err_msg=f"{i}.dcm"
        )


@pytest.mark.parametrize(
    ("orient", "ref", "axcodes"),
    [
        ("ax/axasc35", "ax_asc_35sl_6.nii", "LPS"),
        ("cor/corasc35", "cor_asc_35sl_16.nii", "LIP"),
        ("sag/sagasc35", "sag_asc_35sl_22.nii", "PIL"),
    ],
)
def test_siemens_mosaic_demosaicked_matches_dcm2niix(orient: str, ref: str, axcodes: str) -> None:
    """Axial / coronal / sagittal mosaics: 2 files = 2 volumes of 35 slices, same voxels and
    world geometry as dcm2niix (which stores them LAS / LSP / PSL)."""
    folder = shared_path("dicom", "siemens_mosaic_orientation", "In", *orient.split("/"))
    arr, aff = _load(shared_path("dicom", "siemens_mosaic_orientation", "Ref", ref))
    scan = scan_dicom_folder(folder)
    assert [s.n_slices for s in scan.series] == [35, 35]
    for t, s in enumerate(scan.series):
        assert s.key.endswith(f"#t{t + 1}") and s.problem is None
        vol = read_dicom(folder, series=s.index, scan=scan)
        assert vol.orientation == axcodes
        assert_same_world(vol, arr[..., t], aff, atol_mm=1e-3)
    with pytest.raises(DicomSeriesError, match="2 series"):
        read_dicom(folder, scan=scan)
    if orient.startswith("ax"):  # the stray NIfTI next to the DICOM files is skipped, named
        assert any(p.suffix == ".nii" and "stray" in r for p, r in scan.skipped)


@pytest.mark.parametrize("i", range(1, 10))
def test_mosaic_in_each_transfer_syntax_matches_dcm2niix(i: int) -> None:
    folder = shared_path("dicom", "transfer_syntaxes_siemens")
    vol = read_dicom(folder / "In" / f"{i}.dcm")
    arr, aff = _load(folder / "Ref" / f"{i}.nii")
    assert vol.shape == (64, 64, 35)
    assert_same_world(vol, arr, aff, atol_mm=1e-3)


def test_mosaic_copies_in_one_folder_refused() -> None:
    """The 9 files are one image re-encoded 9 times (same acquisition/instance numbers)."""
    scan = scan_dicom_folder(shared_path("dicom", "transfer_syntaxes_siemens", "In"))
    assert len(scan.series) == 1 and scan.series[0].problem is not None
    assert "copies of one image" in scan.series[0].problem


CODEC_FILES = [
    "693_J2KR.dcm",
    "693_UNCI.dcm",
    "693_UNCR.dcm",
    "JLSL_16_15_1_1F.dcm",
    "JPEG-LL.dcm",
    "JPGLosslessP14SV1_1s_1f_8b.dcm",
    "MR2_J2KI.dcm",
    "MR2_J2KR.dcm",
    "MR2_UNCR.dcm",
    "eCT_Supplemental.dcm",
    "emri_small.dcm",
    "emri_small_RLE.dcm",
    "emri_small_big_endian.dcm",
    "emri_small_jpeg_2k_lossless.dcm",
    "emri_small_jpeg_ls_lossless.dcm",
]


@pytest.mark.parametrize("name", CODEC_FILES)
def test_codec_files_decode_like_simpleitk(name: str) -> None:
    import SimpleITK as sitk

    f = shared_path("dicom", "pydicom_data_codecs", name)
    ours = read_dicom_frames(f).astype(np.float64)
    ref = sitk.GetArrayFromImage(sitk.ReadImage(str(f)))  # (frames, rows, cols), rescaled
    slope, icpt = _first_rescale(f)
    np.testing.assert_allclose(ours.reshape(ref.shape) * slope + icpt, ref, rtol=1e-6)


def _first_rescale(f: Path) -> tuple[float, float]:
    """The rescale SimpleITK applies: top-level, else the first frame's / shared group's."""
    import pydicom

    ds = pydicom.dcmread(f, stop_before_pixels=True)
    holders = [ds]
    for seq in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        if seq in ds and "PixelValueTransformationSequence" in ds[seq][0]:
            holders.append(ds[seq][0].PixelValueTransformationSequence[0])
    for h in holders:
        if "RescaleSlope" in h:
            return float(h.RescaleSlope), float(h.RescaleIntercept)
    return 1.0, 0.0


@pytest.mark.parametrize("stem", ["693", "MR2"])
def test_codec_variants_read_as_the_same_volume(stem: str) -> None:
    folder = shared_path("dicom", "pydicom_data_codecs")
    # *_J2KR (JPEG 2000 lossless) and *_UNCR (uncompressed) hold the same image
    lossless = sorted(folder.glob(f"{stem}_*R.dcm"))
    assert len(lossless) == 2
    vols = [read_dicom(p) for p in lossless]
    for v in vols[1:]:
        np.testing.assert_array_equal(v.array, vols[0].array)
        np.testing.assert_allclose(v.affine, vols[0].affine)


def test_dicom_seg_objects_skipped_with_reason() -> None:
    scan = scan_dicom_folder(shared_path("dicom", "pydicom_data_codecs"))
    reasons = {p.name: r for p, r in scan.skipped}
    for name in ("liver.dcm", "liver_deflate.dcm", "liver_j2k.dcm", "liver_rle.dcm"):
        assert "DICOM-SEG" in reasons[name]


# --- pydicom test files: trap and DICOMDIR tree ----------------------------------------------
def test_pydicom_root_duplicate_position_trap_reported() -> None:
    folder = shared_path("dicom", "pydicom_test_files")
    scan = scan_dicom_folder(folder)
    trap = [s for s in scan.series if any(p.name.startswith("MR_small") for p in s.files)]
    assert len(trap) == 1 and trap[0].n_slices == 6
    assert "duplicate slice positions" in (trap[0].problem or "")
    with pytest.raises(DicomSeriesError, match="duplicate slice positions"):
        read_dicom(folder, series=trap[0].index, scan=scan)
    for name in ("MR_small.dcm", "MR_small_jpeg_ls_lossless.dcm", "CT_small.dcm"):
        single = read_dicom(folder / name)  # each file alone is a one-slice volume
        assert single.shape[2] == 1


def test_dicomdir_tree_walked_and_directories_skipped() -> None:
    folder = shared_path("dicom", "pydicom_test_files", "dicomdirtests")
    scan = scan_dicom_folder(folder)
    reasons = {p.name: r for p, r in scan.skipped}
    assert "DICOMDIR" in reasons["DICOMDIR"] and "DICOMDIR" in reasons["DICOMDIR-reordered"]
    ct5 = [s for s in scan.series if s.files[0].parent.name == "CT5N"]
    assert len(ct5) == 1 and ct5[0].n_slices == 5 and ct5[0].spacing is not None
    assert ct5[0].spacing[2] == pytest.approx(2.5, abs=1e-3)
    arr, aff = _sitk_series(ct5[0].files[0].parent)
    assert_same_world(read_dicom(folder, series=ct5[0].index, scan=scan), arr, aff, atol_mm=1e-3)


# --- no traceback anywhere --------------------------------------------------------------------
def _all_folders() -> list[Path]:
    """Every folder under shared/data/dicom, at any depth (each is scanned as a root)."""
    root = shared_path("dicom")
    return sorted(p for p in root.rglob("*") if p.is_dir())


def test_every_folder_scans_and_every_readable_series_reads() -> None:
    n_read = 0
    for folder in _all_folders():
        scan = scan_dicom_folder(folder)
        for s in scan.series:
            if s.problem is None:
                vol = read_dicom(folder, series=s.index, scan=scan)
                assert vol.shape == s.shape
                n_read += 1
            else:
                with pytest.raises(MedsegError):
                    read_dicom(folder, series=s.index, scan=scan)
    assert n_read > 30
