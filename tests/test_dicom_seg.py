"""DICOM SEG writing and reading against independent references.

* highdicom reads the SEG back: every segment's pixels sit at the world positions of the
  label's voxels, computed from the synthetic series' own geometry (``expected_affine``, not
  medseg's reader); references (study, series, instances, frame of reference) match the source;
* dcmqi's ``segimage2itkimage`` converts the SEG back: same labels at the same world positions
  as the NIfTI output of the same label map;
* ``dciodvfy`` (dicom3tools) finds no error (its warnings are reported);
* medseg's own reader (``read_label_map`` on a SEG file) gives the label values and names back.
"""

from __future__ import annotations

import logging
from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest
from support.dicom import AXIAL, LPS_TO_RAS, expected_affine, oblique_iop, write_series
from support.paths import SAMPLE
from support.tools import (
    assert_dciodvfy_clean,
    assert_mask_at_world,
    assert_same_points,
    dciodvfy,
    dcmqi_segments,
    world_points,
)

from medseg.errors import InputError
from medseg.io import detect_format, read_label_map, read_volume
from medseg.io.dicom import read_dicom, scan_dicom_folder
from medseg.io.segmentation import write_segmentation
from medseg.volume import LabelMap

SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
CORONAL = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)
IOPS = {"axial": AXIAL, "oblique": oblique_iop(), "sagittal": SAGITTAL, "coronal": CORONAL}
NAMES = {1: "liver", 2: "kidney_left", 3: "spleen", 7: "lesion"}
PS, STEP, ORIGIN = (0.5, 0.7), 2.0, (-10.0, 20.0, 30.0)


def _series(folder: Path, iop: tuple[float, ...] = AXIAL, n: int = 6) -> np.ndarray:
    """Write a synthetic CT series; return its LPS affine (from the writer's parameters)."""
    write_series(
        folder,
        n=n,
        rows=8,
        cols=9,
        iop=iop,
        origin=ORIGIN,
        pixel_spacing=PS,
        step=STEP,
        frame_of_reference_uid="1.2.826.0.1.3680043.8.498.1",
    )
    return LPS_TO_RAS @ expected_affine(iop, ORIGIN, PS, STEP)  # back to LPS


def _labels(shape: tuple[int, int, int]) -> np.ndarray:
    arr = np.zeros(shape, np.uint8)
    arr[2:5, 2:6, 1:3] = 1
    arr[5:8, 1:3, 4] = 3
    arr[0, 7, 5] = 7  # label 2 (kidney_left) stays empty
    return arr


def _seg_on(folder: Path) -> LabelMap:
    vol = read_dicom(folder)
    return LabelMap(_labels(vol.shape), vol.affine, "pred.nii.gz", label_names=NAMES)


def _highdicom_points(path: Path) -> dict[str, np.ndarray]:
    """LPS positions of every segment pixel, by Segment Label, from highdicom alone."""
    seg = hd.seg.segread(path)
    shared = seg.SharedFunctionalGroupsSequence[0]
    iop = np.array(shared.PlaneOrientationSequence[0].ImageOrientationPatient, float)
    dr, dc = (float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing)
    labels = {int(s.SegmentNumber): str(s.SegmentLabel) for s in seg.SegmentSequence}
    pixels = seg.pixel_array.reshape(-1, seg.Rows, seg.Columns)
    out: dict[str, list[np.ndarray]] = {name: [] for n, name in labels.items() if n}
    for f, item in enumerate(seg.PerFrameFunctionalGroupsSequence):
        ipp = np.array(item.PlanePositionSequence[0].ImagePositionPatient, float)
        if seg.SegmentationType == "BINARY":
            number = int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
            values = {labels[number]: 1}
        else:  # LABELMAP: pixel values are segment numbers
            values = {labels[int(v)]: int(v) for v in np.unique(pixels[f]) if v}
        for name, v in values.items():
            rc = np.argwhere(pixels[f] == v)
            out[name].append(ipp + rc[:, 1:2] * dc * iop[:3] + rc[:, 0:1] * dr * iop[3:])
    return {k: np.concatenate(v) if v else np.zeros((0, 3)) for k, v in out.items()}


@pytest.mark.parametrize("orientation", ["axial", "oblique", "sagittal", "coronal"])
def test_binary_seg_pixels_at_the_labels_world_positions(tmp_path: Path, orientation: str) -> None:
    lps = _series(tmp_path / "ct", IOPS[orientation])
    seg = _seg_on(tmp_path / "ct")
    w = write_segmentation(seg, tmp_path / "out" / "seg.dcm", source=tmp_path / "ct")
    assert w.format == "dicom-seg" and w.labels == (1, 3, 7) and w.empty_labels == (2,)
    points = _highdicom_points(w.path)
    assert sorted(points) == ["lesion", "liver", "spleen"]
    for value in (1, 3, 7):
        assert_same_points(points[NAMES[value]], world_points(seg.array == value, lps))
    assert_dciodvfy_clean(w.path)


def test_seg_references_its_source_and_copies_patient_study(tmp_path: Path, caplog) -> None:
    _series(tmp_path / "ct", oblique_iop())
    seg = _seg_on(tmp_path / "ct")
    with caplog.at_level(logging.DEBUG):
        w = write_segmentation(seg, tmp_path / "seg.dcm", source=tmp_path / "ct")
    src = {}
    for f in (tmp_path / "ct").iterdir():
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        src[str(ds.SOPInstanceUID)] = ds
    first = next(iter(src.values()))
    out = pydicom.dcmread(w.path)
    assert out.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4" and out.Modality == "SEG"
    assert out.StudyInstanceUID == first.StudyInstanceUID
    assert out.FrameOfReferenceUID == first.FrameOfReferenceUID
    assert out.SeriesInstanceUID != first.SeriesInstanceUID
    assert (out.PatientName, out.PatientID) == (first.PatientName, first.PatientID)
    (ref,) = out.ReferencedSeriesSequence
    assert ref.SeriesInstanceUID == first.SeriesInstanceUID
    assert {str(i.ReferencedSOPInstanceUID) for i in ref.ReferencedInstanceSequence} <= set(src)
    for item in out.PerFrameFunctionalGroupsSequence:  # each frame derives from its slice
        uid = item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        ipp = item.PlanePositionSequence[0].ImagePositionPatient
        np.testing.assert_allclose(
            np.array(ipp, float), np.array(src[str(uid)].ImagePositionPatient, float), atol=1e-4
        )
    descs = {int(s.SegmentNumber): s for s in out.SegmentSequence}
    assert [str(s.SegmentLabel) for s in descs.values()] == ["liver", "spleen", "lesion"]
    assert descs[2].SegmentedPropertyTypeCodeSequence[0].CodeValue == "78961009"  # spleen
    assert descs[3].SegmentedPropertyCategoryCodeSequence[0].CodeValue == "49755003"
    assert "RecommendedDisplayCIELabValue" in descs[1]
    assert str(descs[1].SegmentAlgorithmType) == "AUTOMATIC"
    text = caplog.text + repr(w)
    assert "Secret" not in text and "SECRET" not in text


def test_dcmqi_reads_the_same_labels_at_the_same_world_positions(tmp_path: Path) -> None:
    _series(tmp_path / "ct", oblique_iop())
    seg = _seg_on(tmp_path / "ct")
    dcm = write_segmentation(seg, tmp_path / "out" / "seg.dcm", source=tmp_path / "ct")
    nii = write_segmentation(seg, tmp_path / "out" / "seg.nii.gz")
    img = nib.load(str(nii.path))
    ref, ref_aff = np.asanyarray(img.dataobj), np.asarray(img.affine)
    segments = dcmqi_segments(dcm.path, tmp_path / "dcmqi")
    assert sorted(s["label"] for s in segments) == ["lesion", "liver", "spleen"]
    by_name = {v: k for k, v in NAMES.items()}
    for s in segments:
        value = by_name[str(s["label"])]
        assert s["description"] == f"label value {value}"
        assert_mask_at_world(ref == value, ref_aff, s["mask"], s["affine"])  # type: ignore[arg-type]
    spleen = next(s for s in segments if s["label"] == "spleen")["attributes"]
    assert spleen["SegmentedPropertyTypeCodeSequence"]["CodeValue"] == "78961009"


def test_lateral_modifier_and_label_values_survive_a_round_trip(tmp_path: Path) -> None:
    _series(tmp_path / "ct")
    vol = read_dicom(tmp_path / "ct")
    arr = np.zeros(vol.shape, np.uint8)
    arr[1:3, 1:3, 0:2] = 12
    arr[5:7, 4:6, 3:5] = 40
    seg = LabelMap(arr, vol.affine, None, label_names={12: "kidney_left", 40: "Right kidney"})
    w = write_segmentation(seg, tmp_path / "seg.dcm", source=tmp_path / "ct")
    ds = pydicom.dcmread(w.path)
    mods = [
        s.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence[0]
        for s in ds.SegmentSequence
    ]
    assert [m.CodeMeaning for m in mods] == ["Left", "Right"]
    assert [int(s.SegmentNumber) for s in ds.SegmentSequence] == [1, 2]
    back = read_label_map(w.path)
    assert back.label_names == {12: "kidney_left", 40: "Right kidney"}
    for v in (12, 40):
        assert_mask_at_world(seg.array == v, seg.affine, back.array == v, back.affine)
    assert_dciodvfy_clean(w.path)


@pytest.mark.parametrize("encoding", ["binary", "labelmap"])
def test_medseg_reads_its_seg_back_through_read_label_map(tmp_path: Path, encoding: str) -> None:
    _series(tmp_path / "ct", SAGITTAL)
    seg = _seg_on(tmp_path / "ct")
    w = write_segmentation(seg, tmp_path / "seg.dcm", source=tmp_path / "ct", encoding=encoding)
    assert detect_format(w.path) == "dicom-seg"
    back = read_label_map(w.path)
    assert isinstance(read_volume(w.path), LabelMap)
    assert back.label_names == {1: "liver", 3: "spleen", 7: "lesion"}
    assert back.orientation == seg.orientation  # slice axis along the normal, as read_dicom
    for v in (1, 3, 7):
        assert_mask_at_world(seg.array == v, seg.affine, back.array == v, back.affine)
    assert back.meta.extra["segmentation_type"] == encoding.upper()


def test_labelmap_encoding_read_by_highdicom(tmp_path: Path) -> None:
    lps = _series(tmp_path / "ct", oblique_iop())
    seg = _seg_on(tmp_path / "ct")
    w = write_segmentation(seg, tmp_path / "seg.dcm", source=tmp_path / "ct", encoding="labelmap")
    ds = pydicom.dcmread(w.path, stop_before_pixels=True)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.7"
    assert ds.SegmentationType == "LABELMAP"
    assert [int(s.SegmentNumber) for s in ds.SegmentSequence] == [0, 1, 3, 7]  # = label values
    points = _highdicom_points(w.path)
    for value in (1, 3, 7):
        assert_same_points(points[NAMES[value]], world_points(seg.array == value, lps))
    errors, _ = dciodvfy(w.path)
    # Debian's dicom3tools predates Supplement 243: it does not know the Label Map
    # Segmentation IOD and applies the BINARY rule that segment numbers run 1, 2, 3 (a label
    # map's segment numbers are its pixel values, background 0). Those two complaints are all
    # it may say; highdicom's read-back above checks the content.
    old_validator = ("Information Object Not found", "SegmentNumber not monotonically")
    assert all(any(k in e for k in old_validator) for e in errors), errors


def test_folder_scan_still_skips_a_seg_beside_its_series(tmp_path: Path) -> None:
    _series(tmp_path / "ct")
    seg = _seg_on(tmp_path / "ct")
    w = write_segmentation(seg, tmp_path / "ct" / "seg.dcm", source=tmp_path / "ct")
    scan = scan_dicom_folder(tmp_path / "ct")
    assert len(scan.series) == 1 and scan.series[0].n_slices == 6
    assert [p.name for p, why in scan.skipped if "DICOM-SEG" in why] == ["seg.dcm"]
    assert read_dicom(tmp_path / "ct").shape == seg.shape
    assert read_label_map(w.path).label_names[1] == "liver"


# --- refusals ----------------------------------------------------------------------------------
def test_label_map_off_the_source_grid_is_refused(tmp_path: Path) -> None:
    _series(tmp_path / "ct")
    seg = _seg_on(tmp_path / "ct")
    shifted = LabelMap(seg.array, seg.affine @ np.diag([1, 1, -1, 1.0]), "pred.nii.gz")
    with pytest.raises(InputError, match=r"pred\.nii\.gz: label map affine differs"):
        write_segmentation(shifted, tmp_path / "a.dcm", source=tmp_path / "ct")
    smaller = LabelMap(seg.array[:, :, :5], seg.affine, "pred.nii.gz")
    with pytest.raises(InputError, match=r"shape \(9, 8, 5\) differs"):
        write_segmentation(smaller, tmp_path / "b.dcm", source=tmp_path / "ct")
    empty = LabelMap(np.zeros(seg.shape, np.uint8), seg.affine, "pred.nii.gz")
    with pytest.raises(InputError, match="no non-zero voxel"):
        write_segmentation(empty, tmp_path / "c.dcm", source=tmp_path / "ct")
    assert not list(tmp_path.glob("*.dcm"))


def test_source_without_uids_or_frame_of_reference_is_refused(tmp_path: Path) -> None:
    vol = read_dicom(SAMPLE / "ct_dicom")  # shipped sample: UIDs removed by anonymisation
    seg = LabelMap(np.ones(vol.shape, np.uint8), vol.affine)
    with pytest.raises(InputError, match="lacks StudyInstanceUID, SOPInstanceUID"):
        write_segmentation(seg, tmp_path / "a.dcm", source=SAMPLE / "ct_dicom")
    write_series(tmp_path / "nofor", n=3, rows=4, cols=5)  # no FrameOfReferenceUID
    vol = read_dicom(tmp_path / "nofor")
    seg = LabelMap(np.ones(vol.shape, np.uint8), vol.affine)
    with pytest.raises(InputError, match="FrameOfReferenceUID"):
        write_segmentation(seg, tmp_path / "b.dcm", source=tmp_path / "nofor")


def test_fractional_and_overlapping_segs_are_refused(tmp_path: Path) -> None:
    _series(tmp_path / "ct", n=3)
    srcs = sorted(
        (pydicom.dcmread(f) for f in (tmp_path / "ct").iterdir()),
        key=lambda d: float(d.ImagePositionPatient[2]),
    )
    for ds in srcs:  # Type 2 attributes highdicom copies
        ds.PatientSex = ds.AccessionNumber = ds.StudyID = ds.StudyDate = ds.StudyTime = ""
        ds.ReferringPhysicianName = ""
    from pydicom.sr.codedict import codes

    def desc(n: int) -> hd.seg.SegmentDescription:
        return hd.seg.SegmentDescription(
            n, f"s{n}", codes.SCT.Tissue, codes.SCT.Tissue, "AUTOMATIC",
            hd.AlgorithmIdentificationSequence("x", codes.DCM.ArtificialIntelligence, "1"),
        )  # fmt: skip

    stack = np.zeros((3, 8, 9, 2), np.uint8)
    stack[1, 2:4, 2:4, :] = 1  # both segments on the same pixels
    common = dict(
        source_images=srcs, segment_descriptions=[desc(1), desc(2)], series_instance_uid=hd.UID(),
        series_number=1, sop_instance_uid=hd.UID(), instance_number=1, manufacturer="t",
        manufacturer_model_name="t", software_versions="1", device_serial_number="1",
    )  # fmt: skip
    hd.seg.Segmentation(pixel_array=stack, segmentation_type="BINARY", **common).save_as(
        tmp_path / "overlap.dcm"
    )
    with pytest.raises(InputError, match="overlapping segments are refused"):
        read_label_map(tmp_path / "overlap.dcm")
    frac = hd.seg.Segmentation(
        pixel_array=stack.astype(np.float32) * 0.5, segmentation_type="FRACTIONAL", **common
    )
    frac.save_as(tmp_path / "frac.dcm")
    with pytest.raises(InputError, match="FRACTIONAL"):
        read_label_map(tmp_path / "frac.dcm")
