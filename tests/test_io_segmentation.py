"""Segmentation writers (NIfTI, 3D Slicer .seg.nrrd), label tables and terminology codes.

Independent references: nibabel reads the NIfTI intent and extension, pynrrd reads the NRRD
header (Slicer's fields and the LPS geometry), pydicom's copy of the DICOM content-mapping
resource checks every SNOMED code, world coordinates are computed from the affines alone.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from support.tools import assert_mask_at_world
from support.volumes import box

from medseg.errors import ConfigError, InputError, OutputExistsError, UnsupportedFormatError
from medseg.io import read_label_map, write_volume
from medseg.io.labels import build_label_table, read_label_table, write_label_table
from medseg.io.segmentation import format_from_path, write_segmentation
from medseg.io.terminology import GENERIC, known_codes, terminology_for
from medseg.volume import LabelMap, affine_from_geometry

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _geometries() -> dict[str, np.ndarray]:
    """RAS, LPS (DICOM-like), oblique and axis-permuted (sagittal-stored) grids."""
    t = np.deg2rad(23.0)
    rot = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
    perm = np.array([[0, 0, 1.0], [1.0, 0, 0], [0, -1.0, 0]])  # i->A, j->S... stored sagittal
    return {
        "ras": affine_from_geometry((0.8, 0.9, 2.5), (10.0, -20.0, 30.0)),
        "lps": affine_from_geometry((0.8, 0.9, 2.5), (10.0, 20.0, -30.0), np.diag([-1, -1, 1.0])),
        "oblique": affine_from_geometry((0.7, 0.6, 1.5), (-3.0, 4.0, 5.0), rot),
        "permuted": affine_from_geometry((1.2, 0.5, 0.7), (1.0, 2.0, 3.0), perm),
    }


def _label_map(affine: np.ndarray) -> LabelMap:
    arr = box((9, 8, 7), (1, 1, 1), (4, 5, 3), 1)
    arr[5:8, 2:7, 3:6] = 3
    arr[0, 0, 6] = 7
    names = {1: "spleen", 2: "kidney_left", 3: "Liver", 7: "my structure"}
    return LabelMap(arr, affine, "mem", label_names=names)


# --- terminology and label tables ------------------------------------------------------------
def test_every_coded_structure_is_a_real_snomed_concept() -> None:
    """Each SCT code value of the table is in pydicom's DICOM content-mapping concepts, and
    the categories are members of CID 7150 (Segmentation Property Categories)."""
    from pydicom.sr._cid_dict import cid_concepts
    from pydicom.sr._concepts_dict import concepts

    sct_values = {v for entries in concepts["SCT"].values() for v in entries}
    category_values = {v for name in cid_concepts[7150]["SCT"] for v in concepts["SCT"][name]}
    for name, (category, typ) in known_codes().items():
        assert typ.value in sct_values, (name, typ)
        assert category.value in category_values, (name, category)
    for code in ("7771000", "24028007", GENERIC.type.value):
        assert code in sct_values


@pytest.mark.parametrize(
    ("name", "value", "modifier"),
    [
        ("spleen", "78961009", None),
        ("Left Atrium", "82471001", None),
        ("left_atrium", "82471001", None),
        ("kidney_left", "64033007", "7771000"),
        ("Right kidney", "64033007", "24028007"),
        ("lungs", "39607008", None),
        ("peritumoral oedema", "79654002", None),
        ("enhancing tumour", "108369006", None),
        ("lesion", "52988006", None),
    ],
)
def test_terminology_matching(name: str, value: str, modifier: str | None) -> None:
    t = terminology_for(name)
    assert t != GENERIC and t.type.value == value
    assert (t.modifier.value if t.modifier else None) == modifier


def test_unknown_names_get_the_documented_generic_code() -> None:
    for name in ("lung_upper_lobe_left", "vertebrae_T12", "label_9"):
        assert terminology_for(name) == GENERIC


def test_label_table_covers_names_and_present_values(tmp_path: Path) -> None:
    table = build_label_table({0: "bg", 1: "spleen", 4: "x"}, values=[2, 4], colors={4: (1, 2, 3)})
    assert [(i.value, i.name) for i in table] == [(1, "spleen"), (2, "label_2"), (4, "x")]
    assert table[2].color == (1, 2, 3)
    assert len({i.color for i in table}) == 3
    p = write_label_table(table, tmp_path / "labels.json")
    assert read_label_table(p) == table
    assert write_label_table(table, p) == p  # identical content: left alone
    with pytest.raises(OutputExistsError):
        write_label_table(table[:1], p)
    write_label_table(table[:1], p, overwrite=True)
    assert len(read_label_table(p)) == 1
    with pytest.raises(ConfigError, match=r"0\.\.255"):
        build_label_table({1: "a"}, colors={1: (0, 0, 300)})


# --- NIfTI -------------------------------------------------------------------------------------
def test_nifti_output_carries_label_intent_and_table(tmp_path: Path) -> None:
    seg = _label_map(_geometries()["oblique"])
    w = write_segmentation(seg, tmp_path / "out" / "case.nii.gz")
    assert w.format == "nii.gz" and w.labels == (1, 2, 3, 7) and w.empty_labels == (2,)
    img = nib.load(str(w.path))
    assert img.header.get_intent()[0] == "label"
    (ext,) = [e for e in img.header.extensions if e.get_code() == 6]
    doc = json.loads(ext.get_content().decode())
    assert {r["value"]: r["name"] for r in doc["labels"]} == {
        1: "spleen",
        2: "kidney_left",
        3: "Liver",
        7: "my structure",
    }
    assert np.array_equal(np.asanyarray(img.dataobj), seg.array)
    side = json.loads((tmp_path / "out" / "labels.json").read_text())
    assert side["labels"] == doc["labels"]
    assert side["background"] == {"value": 0, "name": "background"}
    assert read_label_map(w.path).label_names == seg.label_names


@pytest.mark.parametrize("geometry", ["ras", "lps", "oblique", "permuted"])
@pytest.mark.parametrize("suffix", ["nii.gz", "seg.nrrd", "nrrd"])
def test_geometry_round_trips_through_world_coordinates(
    tmp_path: Path, geometry: str, suffix: str
) -> None:
    aff = _geometries()[geometry].astype(np.float32).astype(np.float64)
    seg = _label_map(aff)
    w = write_segmentation(seg, tmp_path / f"s.{suffix}")
    if suffix == "nii.gz":
        img = nib.load(str(w.path))
        arr, back_aff = np.asanyarray(img.dataobj), np.asarray(img.affine)
    else:
        import nrrd

        arr, hdr = nrrd.read(str(w.path))  # pynrrd: (i, j, k) order, LPS space
        assert hdr["space"] == "left-posterior-superior"
        back_aff = np.eye(4)
        back_aff[:3, :3] = np.asarray(hdr["space directions"]).T
        back_aff[:3, 3] = hdr["space origin"]
        back_aff = LPS_TO_RAS @ back_aff
    for v in (1, 3, 7):
        assert_mask_at_world(seg.array == v, seg.affine, arr == v, back_aff)
    back = read_label_map(w.path)
    assert back.same_grid(seg) and np.array_equal(back.array, seg.array)


# --- 3D Slicer .seg.nrrd ------------------------------------------------------------------------
def test_seg_nrrd_header_has_slicer_segment_fields(tmp_path: Path) -> None:
    import nrrd

    seg = _label_map(_geometries()["lps"])
    w = write_segmentation(seg, tmp_path / "case.seg.nrrd", colors={3: (10, 20, 30)})
    hdr = nrrd.read_header(str(w.path))
    segs = {}
    n = 0
    while f"Segment{n}_ID" in hdr:
        segs[int(hdr[f"Segment{n}_LabelValue"])] = {
            k: hdr[f"Segment{n}_{k}"] for k in ("Name", "Color", "Extent", "Layer", "Tags")
        }
        n += 1
    assert sorted(segs) == [1, 2, 3, 7]
    assert segs[3]["Name"] == "Liver"
    assert [float(c) for c in segs[3]["Color"].split()] == pytest.approx(
        [10 / 255, 20 / 255, 30 / 255], abs=1e-5
    )
    assert segs[1]["Extent"] == "1 3 1 4 1 2"  # inclusive voxel bounds of the box
    assert segs[7]["Extent"] == "0 0 0 0 6 6"
    assert segs[2]["Extent"] == "0 -1 0 -1 0 -1"  # empty segment, as Slicer writes it
    assert all(s["Layer"] == "0" for s in segs.values())
    assert "SCT^64033007^Kidney~SCT^7771000^Left" in segs[2]["Tags"]
    assert segs[1]["Tags"].startswith("TerminologyEntry:")
    assert hdr["Segmentation_MasterRepresentation"] == "Binary labelmap"
    assert hdr["Segmentation_ReferenceImageExtentOffset"] == "0 0 0"


def test_seg_nrrd_read_by_simpleitk_keeps_fields(tmp_path: Path) -> None:
    import SimpleITK as sitk

    seg = _label_map(_geometries()["ras"])
    w = write_segmentation(seg, tmp_path / "case.seg.nrrd")
    img = sitk.ReadImage(str(w.path))
    assert img.GetMetaData("Segment3_Name") == "my structure"
    assert img.GetMetaData("Segment3_LabelValue") == "7"


# --- formats and refusals -------------------------------------------------------------------
def test_format_from_path_and_refusals(tmp_path: Path) -> None:
    assert format_from_path("a/b.seg.nrrd") == "seg.nrrd"
    assert format_from_path("a/B.NII.GZ") == "nii.gz"
    assert format_from_path("x.dcm") == "dicom-seg"
    with pytest.raises(UnsupportedFormatError, match=r"\.mha"):
        format_from_path("x.mha")
    seg = _label_map(_geometries()["ras"])
    with pytest.raises(UnsupportedFormatError, match="suffix says"):
        write_segmentation(seg, tmp_path / "x.nii.gz", format="nrrd")
    with pytest.raises(ConfigError, match="source="):
        write_segmentation(seg, tmp_path / "x.dcm")
    with pytest.raises(UnsupportedFormatError, match="label tables"):
        write_volume(seg, tmp_path / "x.mha", label_table=build_label_table(seg.label_names))
    w = write_segmentation(seg, tmp_path / "x.nii.gz")
    with pytest.raises(OutputExistsError):
        write_segmentation(seg, w.path)
    write_segmentation(seg, w.path, overwrite=True)
    t = build_label_table({1: "spleen"})
    with pytest.raises(InputError, match=r"\[3, 7\] are not in the label table"):
        write_segmentation(seg, tmp_path / "y.nii.gz", label_table=t)
