"""Tests of k-means intensity clustering.

Known answers: classes of known means in a shuffled order; scikit-learn's own ``predict`` as
the nearest-centre reference. Real data: on the shipped spleen CT the brightest of 3 clusters
holds the spleen; on a BraTS FLAIR the brightest of 3 clusters inside the brain overlaps the
whole tumour.
"""

from __future__ import annotations

import numpy as np
import pytest
from support.cases import brats_case, dice, spleen_ct
from support.volumes import volume

from medseg.classical import kmeans
from medseg.errors import ConfigError


def shuffled_classes(rng):
    """Three intensity classes (means 300, 0, 120) in random voxels."""
    truth = rng.integers(0, 3, (20, 22, 18))
    means = np.array([300.0, 0.0, 120.0])
    img = means[truth] + rng.normal(0, 8, truth.shape)
    return img.astype(np.float32), truth, means


def test_labels_follow_increasing_cluster_means(rng) -> None:
    img, truth, means = shuffled_classes(rng)
    lab = kmeans(volume(img), 3)
    centres = lab.meta.extra["centres"]
    assert centres == sorted(centres)
    assert np.allclose(centres, np.sort(means), atol=2.0)
    # label k is the k-th darkest class: 0 -> 1, 120 -> 2, 300 -> 3
    expected = np.argsort(np.argsort(means))[truth] + 1
    np.testing.assert_array_equal(lab.array, expected)
    assert lab.label_names == {1: "cluster_1", 2: "cluster_2", 3: "cluster_3"}


def test_nearest_centre_equals_scikit_learn_predict(rng) -> None:
    from sklearn.cluster import KMeans

    img, _, _ = shuffled_classes(rng)
    lab = kmeans(volume(img), 3, max_samples=2000, seed=3)
    centres = np.asarray(lab.meta.extra["centres"]).reshape(-1, 1)
    model = KMeans(n_clusters=3, init=centres, n_init=1, max_iter=1).fit(centres)
    model.cluster_centers_ = centres
    pred = model.predict(img.reshape(-1, 1).astype(np.float64)).reshape(img.shape) + 1
    np.testing.assert_array_equal(lab.array, pred)


def test_mask_seed_and_reproducibility(rng) -> None:
    img, truth, _ = shuffled_classes(rng)
    mask = truth != 0  # leave out the 300 class
    lab = kmeans(volume(img), 2, mask=mask, max_samples=500, seed=1)
    assert not lab.array[~mask].any()
    assert set(np.unique(lab.array[mask])) == {1, 2}
    again = kmeans(volume(img), 2, mask=mask, max_samples=500, seed=1)
    np.testing.assert_array_equal(lab.array, again.array)


def test_bad_parameters(rng) -> None:
    img, _, _ = shuffled_classes(rng)
    with pytest.raises(ConfigError, match=r"expected an integer in \[2, 255\]"):
        kmeans(volume(img), 1)
    with pytest.raises(ConfigError, match=r"expected an integer in \[2, 255\]"):
        kmeans(volume(img), 2.5)
    with pytest.raises(ConfigError, match="distinct intensities"):
        kmeans(volume(np.zeros((5, 5, 5), np.float32)), 2)
    with pytest.raises(ConfigError, match="max_samples"):
        kmeans(volume(img), 3, max_samples=2)


def test_kmeans_on_the_spleen_ct() -> None:
    ct, ref = spleen_ct()
    lab = kmeans(ct, 3)
    c = lab.meta.extra["centres"]
    assert c[0] < -500 and -200 < c[1] < 0 < c[2] < 150  # air, fat, soft tissue (HU)
    assert (lab.array[ref["spleen"]] == 3).mean() > 0.95


@pytest.mark.realdata
def test_kmeans_on_brats_flair_finds_the_tumour() -> None:
    flair, ref = brats_case()
    lab = kmeans(flair, 3, mask=ref["brain"])
    assert dice(lab.array == 3, ref["whole_tumour"]) > 0.8
    assert not lab.array[~ref["brain"]].any()
