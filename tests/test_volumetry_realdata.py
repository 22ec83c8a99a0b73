"""Volumes and intensities on real multi-label data against an independent count: nibabel's
arrays, voxel counts × the product of nibabel's voxel sizes, numpy on the masked image.

* TotalSegmentator's CT example: 117 named classes (41 present), 122×101×30 at 3 mm;
* the six BraTS 2015 brain-tumour cases (labels 1-4 stored as float32, LPS, 1 mm), whose
  voxel counts are also listed in the data's PROVENANCE.md.
"""

from __future__ import annotations

import json
import math

import nibabel as nib
import numpy as np
import pytest
from support.paths import shared_path

from medseg.io import read_label_map, read_volume
from medseg.volumetry import label_statistics

pytestmark = pytest.mark.realdata

# PROVENANCE.md of brats2015_deepmedic: voxel counts of labels 1/2/3/4 per case.
BRATS_COUNTS = {
    "test/brats_2013_pat0001_1": (26371, 53050, 818, 31485),
    "test/brats_2013_pat0002_1": (163, 53736, 943, 8219),
    "validation/brats_2013_pat0003_1": (1252, 148264, 3162, 21250),
    "validation/brats_2013_pat0004_1": (12956, 45203, 44699, 17816),
    "train/brats_2013_pat0005_1": (23030, 35416, 3882, 18354),
    "train/brats_2013_pat0006_1": (41838, 109935, 22228, 43379),
}


def test_totalsegmentator_117_labels_equal_independent_count() -> None:
    root = shared_path("totalsegmentator_example")
    table = json.loads((root / "label_map_total_and_total_mr.json").read_text())["total"]
    names = {int(k): v for k, v in table.items()}
    assert len(names) == 117
    seg_img = nib.load(root / "example_seg.nii.gz")
    seg = np.asarray(seg_img.dataobj)
    ct = np.asarray(nib.load(root / "example_ct_sm.nii.gz").dataobj).astype(np.float64)
    voxel_mm3 = float(np.prod(seg_img.header.get_zooms()[:3]))

    recs = label_statistics(
        read_label_map(root / "example_seg.nii.gz", names),
        read_volume(root / "example_ct_sm.nii.gz"),
        case="example",
    )
    assert [r.label for r in recs] == list(range(1, 118))
    n_present = 0
    for r in recs:
        assert r.name == names[r.label]
        mask = seg == r.label
        n = int(mask.sum())
        assert r.voxels == n
        assert r.volume_mm3 == pytest.approx(n * voxel_mm3, rel=1e-12)
        assert r.volume_ml == pytest.approx(n * voxel_mm3 / 1000.0, rel=1e-12)
        assert r.absent == (n == 0)
        it = r.intensity
        assert it is not None
        if n == 0:
            assert math.isnan(it.mean)
            continue
        n_present += 1
        assert r.volume_ml > 0  # never 0 for a structure that is there, border or not
        vals = ct[mask]
        assert it.mean == pytest.approx(vals.mean(), rel=1e-9, abs=1e-9)
        assert it.std == pytest.approx(vals.std(), rel=1e-9, abs=1e-9)
        assert (it.min, it.max) == (vals.min(), vals.max())
        np.testing.assert_allclose(
            [it.p5, it.median, it.p95], np.percentile(vals, [5, 50, 95]), rtol=1e-9, atol=1e-9
        )
    assert n_present == 41
    # example_ct_sm is the first 30 slices of a longer scan: organs cut by the crop touch it.
    by_name = {r.name: r for r in recs}
    assert by_name["liver"].touches_border and {"I", "S"} <= set(by_name["liver"].border_faces)
    assert not by_name["gallbladder"].touches_border


@pytest.mark.parametrize("case", sorted(BRATS_COUNTS))
def test_brats_volumes_and_intensities(case: str) -> None:
    folder = shared_path("brats2015_deepmedic", *case.split("/"))
    lab_img = nib.load(folder / "OTMultiClass.nii.gz")
    lab = np.rint(np.asarray(lab_img.dataobj)).astype(np.int64)
    flair = np.asarray(nib.load(folder / "Flair_subtrMeanDivStd.nii.gz").dataobj)
    zooms = lab_img.header.get_zooms()[:3]

    recs = label_statistics(
        read_label_map(folder / "OTMultiClass.nii.gz"),
        read_volume(folder / "Flair_subtrMeanDivStd.nii.gz"),
    )
    assert [r.label for r in recs] == [1, 2, 3, 4]
    for r, expected in zip(recs, BRATS_COUNTS[case], strict=True):
        mask = lab == r.label
        assert r.voxels == int(mask.sum()) == expected
        assert r.volume_mm3 == pytest.approx(expected * float(np.prod(zooms)), rel=1e-12)
        vals = flair[mask].astype(np.float64)
        assert r.intensity is not None
        assert r.intensity.mean == pytest.approx(vals.mean(), rel=1e-6, abs=1e-9)
        assert r.intensity.median == pytest.approx(np.median(flair[mask]), rel=1e-6, abs=1e-9)
        assert r.intensity.max == pytest.approx(vals.max())
