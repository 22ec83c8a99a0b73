"""Tests of the marker-based watershed.

Known answers: two overlapping balls (in mm, on an anisotropic grid) are split at their neck
by the distance landscape, and along their edge by the gradient landscape when their
intensities differ; given markers keep their values. Real data: on TotalSegmentator's CT the
distance-peak rule splits the thresholded spine into objects that each lie mostly in one
vertebra, every vertebra getting its own; on a BraTS FLAIR, given tumour and brain markers
flood to the whole tumour.
"""

from __future__ import annotations

import numpy as np
import pytest
from support.cases import brats_case, deepest_voxel, dice, totalseg_ct
from support.volumes import volume

from medseg.classical import PostOptions, segment, watershed
from medseg.errors import ConfigError, GeometryMismatchError
from medseg.postprocess import dilate_mask, erode_mask

SP = (1.5, 0.5, 0.75)


def touching_balls(rng, values=(100.0, 100.0)):
    """Two balls of radius 6 mm whose centres are 9 mm apart (they overlap), in mm; ball 2
    wins the overlap when the values differ."""
    shape = (24, 70, 40)
    g = np.indices(shape).astype(float) * np.asarray(SP)[:, None, None, None]
    c1, c2 = np.array([18.0, 12.0, 15.0]), np.array([18.0, 21.0, 15.0])
    b1 = ((g - c1[:, None, None, None]) ** 2).sum(0) <= 36
    b2 = ((g - c2[:, None, None, None]) ** 2).sum(0) <= 36
    img = np.zeros(shape) + rng.normal(0, 3, shape)
    img[b1] += values[0]
    img[b2 & ~b1] += values[1]
    img[b1 & b2] += values[1] - values[0]
    return img.astype(np.float32), b1, b2


def test_distance_peaks_split_two_touching_balls(rng) -> None:
    img, b1, b2 = touching_balls(rng)
    vol = volume(img, SP)
    mask = b1 | b2
    lab = watershed(vol, mask=mask, min_distance_mm=4.0, landscape="distance")
    assert lab.meta.extra["n_objects"] == 2 and lab.label_names == {1: "object_1", 2: "object_2"}
    np.testing.assert_array_equal(lab.array > 0, mask)
    # each object is one ball, split at the neck: the plane halfway between the centres
    y_mm = np.indices(img.shape)[1] * SP[1]
    side1, side2 = mask & (y_mm < 16.5 - 0.3), mask & (y_mm > 16.5 + 0.3)
    o1 = np.bincount(lab.array[side1]).argmax()
    o2 = np.bincount(lab.array[side2]).argmax()
    assert {o1, o2} == {1, 2}
    assert (lab.array[side1] == o1).all() and (lab.array[side2] == o2).all()
    # with a ball wider than the distance between the centres, one peak suppresses the other
    # (they are equally deep: the first in scan order stays)
    one = watershed(vol, mask=mask, min_distance_mm=12.0, landscape="distance")
    assert one.meta.extra["n_objects"] == 1
    # the peaks are in mm: on this grid 9 mm is 6, 18 and 12 voxels along the three axes
    assert watershed(vol, mask=mask, min_distance_mm=8.5).meta.extra["n_objects"] == 2


def test_gradient_landscape_splits_along_an_edge(rng) -> None:
    """Touching balls of different intensity: flooded from markers (3 mm balls) on the
    gradient magnitude, the objects meet at the edge between them."""
    img, b1, b2 = touching_balls(rng, values=(100.0, 200.0))
    vol = volume(img, SP)
    g = np.indices(img.shape).astype(float) * np.asarray(SP)[:, None, None, None]
    markers = np.zeros(img.shape, np.uint8)
    for value, c in ((7, (18.0, 9.0, 15.0)), (9, (18.0, 24.0, 15.0))):
        markers[((g - np.asarray(c)[:, None, None, None]) ** 2).sum(0) <= 9] = value
    markers[0:2, 0:4, 0:4] = 3  # background
    lab = watershed(vol, markers=markers, sigma_mm=1.0)
    assert set(np.unique(lab.array)) == {3, 7, 9}
    # away from the edges (1.5 mm, where the smoothed gradient ridges lie) every voxel is
    # its own object's; ball 2 holds the overlap (its intensity)
    core1 = erode_mask(b1 & ~b2, 1.5, SP)
    core2 = erode_mask(b2, 1.5, SP)
    far = ~dilate_mask(b1 | b2, 1.5, SP)
    assert (lab.array[core1] == 7).all() and (lab.array[core2] == 9).all()
    assert (lab.array[far] == 3).all()


def test_bad_parameters(rng) -> None:
    img, b1, _ = touching_balls(rng)
    vol = volume(img, SP)
    with pytest.raises(ConfigError, match="give a mask"):
        watershed(vol)
    with pytest.raises(GeometryMismatchError):
        watershed(vol, markers=np.ones((3, 3, 3), np.uint8))
    with pytest.raises(ConfigError, match="marker image is empty"):
        watershed(vol, markers=np.zeros(img.shape, np.uint8))
    with pytest.raises(ConfigError, match="min_distance_mm"):
        watershed(vol, mask=b1, min_distance_mm=0)
    with pytest.raises(ConfigError, match="no distance peak deeper"):
        watershed(vol, mask=b1, min_peak_mm=50.0)
    with pytest.raises(ConfigError, match="landscape"):
        watershed(vol, mask=b1, landscape="height")
    with pytest.raises(ConfigError, match="needs a mask"):
        watershed(vol, markers=b1.astype(np.uint8), landscape="distance")


@pytest.mark.realdata
def test_watershed_splits_the_spine_into_vertebrae() -> None:
    ct, ref = totalseg_ct(small=False)
    bone = segment(ct, "threshold", lower=150, post=PostOptions(closing_mm=3, fill_holes=True))
    spine = (bone.array > 0) & dilate_mask(ref["vertebrae"], 3.0, ct.spacing)
    lab = watershed(ct, mask=spine, min_distance_mm=10.0).array
    vertebrae = [k for k in ref if k.startswith("vertebrae_")]
    assert len(vertebrae) >= 6
    owner = np.zeros(ct.shape, np.int32)  # index of the vertebra owning each voxel
    for i, k in enumerate(vertebrae, start=1):
        owner[ref[k]] = i
    purity, majority = [], set()
    for o in np.unique(lab[lab > 0]):
        inside = owner[lab == o]
        counts = np.bincount(inside, minlength=len(vertebrae) + 1)
        if counts[1:].sum() >= 20:  # objects of some size in the vertebrae
            purity.append(counts[1:].max() / inside.size)
            majority.add(int(counts[1:].argmax()) + 1)
    assert np.median(purity) > 0.9  # an object lies in one vertebra
    assert majority == set(range(1, len(vertebrae) + 1))  # each vertebra has its own objects


@pytest.mark.realdata
def test_watershed_from_tumour_and_brain_markers_on_flair() -> None:
    flair, ref = brats_case()
    wt, brain = ref["whole_tumour"], ref["brain"]
    markers = np.zeros(flair.shape, np.uint8)
    c = np.asarray(deepest_voxel(wt, flair.spacing))
    g = np.indices(flair.shape) - c[:, None, None, None]
    markers[(g**2).sum(0) <= 25] = 1  # a 5 mm ball deep in the tumour
    markers[brain & ~dilate_mask(wt, 15.0, flair.spacing)] = 2  # brain 15 mm away from it
    lab = watershed(flair, mask=brain, markers=markers, sigma_mm=1.0)
    assert dice(lab.array == 1, wt) > 0.8
    assert not lab.array[~brain].any()
