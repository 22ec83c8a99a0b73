"""DICOM SEG on real data: a real JPEG 2000 CT series with a TotalSegmentator segmentation,
an enhanced multi-frame CT as source, and a third-party SEG read by medseg and by dcmqi."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.uid import CTImageStorage, generate_uid
from support.paths import SAMPLE, shared_path
from support.tools import (
    assert_dciodvfy_clean,
    assert_mask_at_world,
    dcmqi_segments,
    map_onto_grid,
)

from medseg.io import read_label_map
from medseg.io.dicom import read_dicom
from medseg.io.segmentation import write_segmentation
from medseg.volume import LabelMap

pytestmark = pytest.mark.realdata


def _with_uids(src: Path, dst: Path) -> Path:
    """Copy the shipped CT series adding the Study/Series/SOP UIDs its anonymisation removed
    (every PACS series has them); pixel data (JPEG 2000) and geometry are untouched."""
    dst.mkdir(parents=True)
    study, series = generate_uid(), generate_uid()
    for f in sorted(src.iterdir()):
        ds = pydicom.dcmread(f)
        sop = generate_uid()
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = sop
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.save_as(dst / f.name, enforce_file_format=True)
    return dst


def test_real_ct_totalsegmentator_seg_via_dcmqi(tmp_path: Path) -> None:
    folder = shared_path("totalsegmentator_example")
    ct_dir = _with_uids(SAMPLE / "ct_dicom", tmp_path / "ct")
    ct = read_dicom(ct_dir)
    ts = nib.load(str(folder / "example_seg_dicom.nii.gz"))  # stored LAS, on the same voxels
    names = {
        int(k): v
        for k, v in json.loads((folder / "label_map_total_and_total_mr.json").read_text())[
            "total"
        ].items()
    }
    ts_arr = np.asanyarray(ts.dataobj)
    arr = map_onto_grid(ts_arr, np.asarray(ts.affine), ct.shape, ct.affine)
    seg = LabelMap(arr, ct.affine, "example_seg_dicom.nii.gz", label_names=names)
    present = seg.labels_present()
    assert len(present) == 31 and int(np.count_nonzero(arr)) == 739420

    dcm = write_segmentation(seg, tmp_path / "out" / "ct_seg.dcm", source=ct_dir)
    assert dcm.labels == tuple(present) and len(dcm.empty_labels) == len(names) - 31
    assert_dciodvfy_clean(dcm.path)
    segments = dcmqi_segments(dcm.path, tmp_path / "dcmqi")
    assert len(segments) == 31
    by_name = {v: k for k, v in names.items()}
    for s in segments:
        value = by_name[str(s["label"])]
        # same world positions as the TotalSegmentator file itself (LAS grid)
        assert_mask_at_world(ts_arr == value, np.asarray(ts.affine), s["mask"], s["affine"])  # type: ignore[arg-type]
    back = read_label_map(dcm.path)
    for value in present[:5]:
        assert_mask_at_world(seg.array == value, seg.affine, back.array == value, back.affine)
    assert back.label_names[present[0]] == names[present[0]]

    lm = write_segmentation(seg, tmp_path / "out" / "ct_lm.dcm", source=ct_dir, encoding="labelmap")
    back = read_label_map(lm.path)
    assert back.same_grid(seg) and np.array_equal(back.array, seg.array)


def test_enhanced_multiframe_ct_as_source(tmp_path: Path) -> None:
    src = shared_path("dicom", "pydicom_data_codecs", "eCT_Supplemental.dcm")
    ct = read_dicom(src)
    assert ct.shape == (512, 512, 2)
    arr = np.zeros(ct.shape, np.uint8)
    arr[100:200, 150:260, 0] = 1
    arr[300:320, 40:90, :] = 2
    seg = LabelMap(arr, ct.affine, None, label_names={1: "liver", 2: "lesion"})
    w = write_segmentation(seg, tmp_path / "seg.dcm", source=src)
    out = pydicom.dcmread(w.path)
    src_ds = pydicom.dcmread(src, stop_before_pixels=True)
    ref = set()
    for item in out.PerFrameFunctionalGroupsSequence:
        source_item = item.DerivationImageSequence[0].SourceImageSequence[0]
        frames = source_item.ReferencedFrameNumber
        frames = frames if isinstance(frames, list | pydicom.multival.MultiValue) else [frames]
        ref |= {(str(source_item.ReferencedSOPInstanceUID), int(f)) for f in frames}
    assert {uid for uid, _ in ref} == {str(src_ds.SOPInstanceUID)}
    assert {n for _, n in ref} == {1, 2}
    assert_dciodvfy_clean(w.path)
    back = read_label_map(w.path)
    for v in (1, 2):
        assert_mask_at_world(seg.array == v, seg.affine, back.array == v, back.affine)


def test_third_party_seg_read_like_dcmqi(tmp_path: Path) -> None:
    path = shared_path("dicom", "pydicom_data_codecs", "liver.dcm")
    seg = read_label_map(path)
    assert seg.label_names == {1: "Liver"} and seg.labels_present() == [1]
    (segment,) = dcmqi_segments(path, tmp_path / "dcmqi")
    assert segment["label"] == "Liver"
    assert_mask_at_world(seg.array == 1, seg.affine, segment["mask"], segment["affine"])  # type: ignore[arg-type]
