"""DICOM SEG geometry and validity on synthetic series with known geometry.

* The volume of every segment read back from the SEG by two independent readers (dcmqi's
  ``segimage2itkimage`` and highdicom's ``get_volume``) equals the volume of the same label
  in the NIfTI written from the same label map, for one-slice, two-slice, anisotropic and
  oblique series; the SEG's Pixel Measures are the source's (PixelSpacing, SliceThickness as
  recorded, SpacingBetweenSlices the distance between slice centres).
* Values medseg generates are valid for their VR: a huge source Series Number, control
  characters and backslashes in the source's Series Description and in label names give a
  SEG that ``dciodvfy`` accepts without error.
"""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest
from support.dicom import AXIAL, oblique_iop, write_series
from support.tools import assert_dciodvfy_clean, assert_mask_at_world, dcmqi_segments

from medseg.errors import ConfigError
from medseg.io import read_label_map
from medseg.io.dicom import read_dicom
from medseg.io.dicom.strings import dicom_text
from medseg.io.segmentation import write_segmentation
from medseg.volume import LabelMap

FOR_UID = "1.2.826.0.1.3680043.8.498.1"

#: name -> (write_series keywords, expected slice spacing in mm)
SERIES: dict[str, tuple[dict[str, object], float]] = {
    "one_slice_thickness": ({"n": 1, "extra": {"SliceThickness": "1.25"}}, 1.25),
    "one_slice_spacing_tag": (
        {"n": 1, "extra": {"SliceThickness": "3", "SpacingBetweenSlices": "2.5"}},
        2.5,
    ),
    "one_slice_negative_spacing_tag": (
        {"n": 1, "extra": {"SliceThickness": "3", "SpacingBetweenSlices": "-2.5"}},
        2.5,
    ),
    "two_slices": ({"n": 2, "step": 1.7}, 1.7),
    "anisotropic": ({"n": 5, "pixel_spacing": (0.45, 1.9), "step": 4.4}, 4.4),
    "oblique": ({"n": 4, "iop": oblique_iop(31.0), "step": 2.2}, 2.2),
    "oblique_one_slice": ({"n": 1, "iop": oblique_iop(), "extra": {"SliceThickness": "0.8"}}, 0.8),
}


def _labels(shape: tuple[int, int, int]) -> np.ndarray:
    arr = np.zeros(shape, np.uint8)
    arr[1:5, 2:6, :] = 1
    arr[6:8, 1:3, shape[2] - 1] = 2
    return arr


def _voxel_ml(affine: np.ndarray) -> float:
    return float(abs(np.linalg.det(affine[:3, :3]))) / 1000.0


@pytest.mark.parametrize("name", sorted(SERIES))
def test_seg_volumes_equal_the_nifti_prediction(tmp_path: Path, name: str) -> None:
    kwargs, spacing = SERIES[name]
    write_series(tmp_path / "ct", rows=8, cols=9, frame_of_reference_uid=FOR_UID, **kwargs)  # type: ignore[arg-type]
    vol = read_dicom(tmp_path / "ct")
    assert vol.spacing[2] == pytest.approx(spacing)
    seg = LabelMap(
        _labels(vol.shape), vol.affine, "pred.nii.gz", label_names={1: "liver", 2: "spleen"}
    )
    dcm = write_segmentation(seg, tmp_path / "out" / "pred.dcm", source=tmp_path / "ct")
    nii = write_segmentation(seg, tmp_path / "out" / "pred.nii.gz")
    img = nib.load(str(nii.path))
    ref, ref_aff = np.asanyarray(img.dataobj), np.asarray(img.affine)
    expected = {v: int((ref == v).sum()) * _voxel_ml(ref_aff) for v in (1, 2)}

    # the source's pixel measures, exactly
    src = pydicom.dcmread(next((tmp_path / "ct").iterdir()), stop_before_pixels=True)
    measures = pydicom.dcmread(dcm.path).SharedFunctionalGroupsSequence[0]
    measures = measures.PixelMeasuresSequence[0]
    assert [float(v) for v in measures.PixelSpacing] == [float(v) for v in src.PixelSpacing]
    assert float(measures.SliceThickness) == float(src.SliceThickness)
    assert float(measures.SpacingBetweenSlices) == pytest.approx(spacing, abs=1e-6)

    # dcmqi: per-segment masks with their own grids
    by_label = {"liver": 1, "spleen": 2}
    for s in dcmqi_segments(dcm.path, tmp_path / "dcmqi"):
        value = by_label[str(s["label"])]
        mask, aff = s["mask"], s["affine"]
        assert int(mask.sum()) * _voxel_ml(aff) == pytest.approx(expected[value], rel=1e-6)  # type: ignore[union-attr, arg-type]
        assert_mask_at_world(ref == value, ref_aff, mask, aff)  # type: ignore[arg-type]

    # highdicom: the SEG as one volume
    hd_vol = hd.seg.segread(dcm.path).get_volume(
        combine_segments=True, relabel=False, allow_missing_positions=True
    )
    for value in (1, 2):
        got = int((np.asarray(hd_vol.array) == value).sum()) * _voxel_ml(np.asarray(hd_vol.affine))
        assert got == pytest.approx(expected[value], rel=1e-6)
    assert_dciodvfy_clean(dcm.path)


def test_source_without_slice_thickness_gets_the_slice_spacing(tmp_path: Path) -> None:
    write_series(tmp_path / "ct", n=3, rows=6, cols=7, step=2.5, frame_of_reference_uid=FOR_UID)
    for f in (tmp_path / "ct").iterdir():  # SliceThickness is Type 2: may be absent or empty
        ds = pydicom.dcmread(f)
        del ds.SliceThickness
        ds.save_as(f)
    vol = read_dicom(tmp_path / "ct")
    arr = np.zeros(vol.shape, np.uint8)
    arr[1:3, 1:3, 0:2] = 1
    w = write_segmentation(LabelMap(arr, vol.affine), tmp_path / "seg.dcm", source=tmp_path / "ct")
    measures = pydicom.dcmread(w.path).SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    assert float(measures.SliceThickness) == pytest.approx(2.5)
    assert float(measures.SpacingBetweenSlices) == pytest.approx(2.5)
    assert_dciodvfy_clean(w.path)


# --- validity of generated values ------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "vr", "expected"),
    [
        ("CT\x00abdomen", "LO", "CT abdomen"),
        ("a\\b\tc\x1b\x7f\x85d  ", "LO", "a/b c d"),
        ("x" * 70, "LO", "x" * 64),
        ("\x00\x01", "LO", ""),
        ("Über 2 × 3", "LO", "Über 2 × 3"),
        ("medseg-v1.2", "CS", "MEDSEG_V1_2"),
        ("a" * 20, "SH", "a" * 16),
    ],
)
def test_dicom_text_fits_its_vr(value: str, vr: str, expected: str) -> None:
    assert dicom_text(value, vr) == expected


def test_huge_series_number_and_control_characters_give_a_valid_seg(tmp_path: Path) -> None:
    write_series(
        tmp_path / "ct",
        n=3,
        rows=6,
        cols=7,
        iop=AXIAL,
        series_number=2_147_483_000,  # legal IS; + 1000 is not
        description="CT\x00 abdomen\\venous\x07",
        frame_of_reference_uid=FOR_UID,
    )
    vol = read_dicom(tmp_path / "ct")
    arr = np.zeros(vol.shape, np.uint8)
    arr[1:3, 1:3, :] = 1
    arr[4:6, 3:5, 1] = 2
    names = {1: "liver\x00left\\x", 2: "s" * 80}
    w = write_segmentation(
        LabelMap(arr, vol.affine, None, label_names=names),
        tmp_path / "seg.dcm",
        source=tmp_path / "ct",
    )
    assert_dciodvfy_clean(w.path)
    ds = pydicom.dcmread(w.path)
    assert 1 <= int(ds.SeriesNumber) <= 2**31 - 1
    for text in (ds.SeriesDescription, ds.ContentDescription):
        assert text == "medseg segmentation of CT abdomen/venous"
    labels = [str(s.SegmentLabel) for s in ds.SegmentSequence]
    assert labels == ["liver left/x", "s" * 64]
    assert not any(ch in "".join(labels) for ch in "\x00\\")


@pytest.mark.parametrize("number", [0, -3, 2**31, True])
def test_series_number_outside_is_range_is_refused(tmp_path: Path, number: int) -> None:
    write_series(tmp_path / "ct", n=2, rows=4, cols=5, frame_of_reference_uid=FOR_UID)
    vol = read_dicom(tmp_path / "ct")
    seg = LabelMap(np.ones(vol.shape, np.uint8), vol.affine)
    with pytest.raises(
        ConfigError, match=r"^series_number: expected an integer in 1\.\.2147483647"
    ):
        write_segmentation(seg, tmp_path / "seg.dcm", source=tmp_path / "ct", series_number=number)
    assert not (tmp_path / "seg.dcm").exists()


@pytest.mark.parametrize(
    ("charset", "expected_charset", "expected_labels"),
    [
        (None, "ISO_IR 192", ["Läsion", "肝臓 liver"]),  # default repertoire widened to UTF-8
        ("ISO_IR 100", "ISO_IR 100", ["Läsion", "?? liver"]),  # Latin-1 kept: CJK cannot
    ],
)
def test_non_ascii_names_fit_the_character_set(
    tmp_path: Path, charset: str | None, expected_charset: str, expected_labels: list[str]
) -> None:
    extra = {"SpecificCharacterSet": charset} if charset else {}
    write_series(tmp_path / "ct", n=2, rows=4, cols=5, frame_of_reference_uid=FOR_UID, extra=extra)
    vol = read_dicom(tmp_path / "ct")
    arr = np.zeros(vol.shape, np.uint8)
    arr[0:2, 0:2, :] = 1
    arr[3, 3, 1] = 2
    seg = LabelMap(arr, vol.affine, None, label_names={1: "Läsion", 2: "肝臓 liver"})
    w = write_segmentation(seg, tmp_path / "seg.dcm", source=tmp_path / "ct")
    assert_dciodvfy_clean(w.path)
    ds = pydicom.dcmread(w.path)
    assert ds.SpecificCharacterSet == expected_charset
    assert [str(s.SegmentLabel) for s in ds.SegmentSequence] == expected_labels


def test_labelmap_encoding_of_one_slice_keeps_the_slice_spacing(tmp_path: Path) -> None:
    write_series(
        tmp_path / "ct",
        n=1,
        rows=8,
        cols=9,
        extra={"SliceThickness": "1.25"},
        frame_of_reference_uid=FOR_UID,
    )
    vol = read_dicom(tmp_path / "ct")
    seg = LabelMap(_labels(vol.shape), vol.affine, None, label_names={1: "liver", 2: "spleen"})
    w = write_segmentation(seg, tmp_path / "lm.dcm", source=tmp_path / "ct", encoding="labelmap")
    hd_vol = hd.seg.segread(w.path).get_volume(
        combine_segments=True, relabel=False, allow_missing_positions=True
    )
    assert _voxel_ml(np.asarray(hd_vol.affine)) == pytest.approx(_voxel_ml(vol.affine))
    back = read_label_map(w.path)
    assert back.same_grid(seg) and np.array_equal(back.array, seg.array)
