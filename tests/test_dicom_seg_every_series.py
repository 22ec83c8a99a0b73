"""A DICOM SEG for every series medseg reads under ``../shared/data/dicom``: each is either
written and accepted by ``dciodvfy`` without error (and read back by highdicom with the
source grid's voxel volume), or refused with one of the documented reasons (no Frame of
Reference / Study UIDs, a Study Instance UID equal to the Frame of Reference UID, a Siemens
mosaic)."""

from __future__ import annotations

import re
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from support.paths import shared_path
from support.tools import dciodvfy

from medseg.errors import InputError
from medseg.io.dicom import scan_dicom_folder
from medseg.io.dicom.seg import write_dicom_seg
from medseg.volume import LabelMap

pytestmark = pytest.mark.realdata

#: The refusals a readable series may get, and nothing else.
REFUSALS = re.compile(
    r"lacks (StudyInstanceUID|SOPInstanceUID|FrameOfReferenceUID)"
    r"|same UID .* as StudyInstanceUID and FrameOfReferenceUID"
    r"|Siemens mosaic"
)


def _box(shape: tuple[int, int, int]) -> np.ndarray:
    """A box over the middle half of each axis (at least one voxel)."""
    arr = np.zeros(shape, np.uint8)
    arr[tuple(slice(d // 4, max(d // 4 + 1, 3 * d // 4)) for d in shape)] = 1
    return arr


def test_every_readable_series_gets_a_valid_seg_or_a_documented_refusal(tmp_path: Path) -> None:
    root = shared_path("dicom")
    seen: set[tuple[str, tuple[Path, ...]]] = set()
    written: list[str] = []
    refused: list[str] = []
    invalid: list[str] = []
    # the whole tree, and each folder holding files on its own (a series split over folders
    # is read both ways)
    leaves = {p.parent for p in root.rglob("*") if p.is_file()}
    for folder in [root, *sorted(leaves - {root})]:
        for s in scan_dicom_folder(folder).series:
            if s.problem is not None or (s.key, s.files) in seen:
                continue
            seen.add((s.key, s.files))
            assert s.affine is not None and s.shape is not None
            box = _box(s.shape)
            seg = LabelMap(box, s.affine, None, label_names={1: "liver"})
            out = tmp_path / f"{len(seen)}.dcm"
            where = f"{folder.relative_to(root)} [{s.index}]"
            try:
                write_dicom_seg(seg, out, s)
            except InputError as exc:
                assert REFUSALS.search(str(exc)), f"{where}: {exc}"
                assert not out.exists()
                refused.append(where)
                continue
            errors, _ = dciodvfy(out)
            if errors:
                invalid.append(f"{where}: {errors}")
            vol = hd.seg.segread(out).get_volume(
                combine_segments=True, relabel=False, allow_missing_positions=True
            )
            voxel = abs(np.linalg.det(np.asarray(vol.affine)[:3, :3]))
            got = int(np.count_nonzero(np.asarray(vol.array))) * voxel
            expected = int(box.sum()) * abs(np.linalg.det(s.affine[:3, :3]))
            assert got == pytest.approx(expected, rel=1e-6), where
            written.append(where)
    assert invalid == []
    # 10 GE EPI volumes, 4 Siemens XA10 enhanced MR, enhanced CT, single-slice MR/CT files
    assert len(seen) >= 55 and len(written) >= 20, (len(seen), written)
    assert len(written) + len(refused) == len(seen)


def test_seg_of_one_volume_of_a_two_volume_file_references_its_own_frames(tmp_path: Path) -> None:
    """The Philips file holds magnitude and field map frames at the same 32 positions."""
    src = shared_path("dicom", "enhanced_multiframe", "In", "Philips", "IM_0027_fMAP.dcm")
    series = scan_dicom_folder(src).series
    assert len(series) == 2
    for s in series:
        assert s.affine is not None and s.shape is not None
        box = _box(s.shape)
        w = write_dicom_seg(LabelMap(box, s.affine, None), tmp_path / f"{s.index}.dcm", s)
        assert dciodvfy(w.path)[0] == []
        seg = pydicom.dcmread(w.path)
        own = {(h.frame or 0) + 1: k for k, h in enumerate(s.frames)}
        for item in seg.PerFrameFunctionalGroupsSequence:
            (ref,) = item.DerivationImageSequence[0].SourceImageSequence
            k = own[int(ref.ReferencedFrameNumber)]  # a frame of this volume, at its slice
            np.testing.assert_allclose(
                np.asarray(item.PlanePositionSequence[0].ImagePositionPatient, float),
                np.asarray(s.frames[k].ipp),
                atol=1e-4,
            )
        assert len(seg.PerFrameFunctionalGroupsSequence) == int(box.any(axis=(0, 1)).sum())
