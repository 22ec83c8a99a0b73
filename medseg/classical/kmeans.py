"""K-means clustering of intensities (scikit-learn ``KMeans``).

The ``K`` clusters are labelled ``1..K`` in increasing order of their mean intensity, so the
labels do not depend on the order in which the algorithm happened to find the clusters;
voxels outside ``mask`` are 0 (without a mask every voxel gets a cluster). The centres are
fitted on at most ``max_samples`` voxels drawn at random (seeded by ``seed``) from inside the
mask; every voxel then gets the nearest centre, which for one intensity is a threshold halfway
between consecutive centres (so a 50-million-voxel MR needs no ``N × K`` distance matrix). The
centres are stored in ``meta.extra["centres"]``.
"""

from __future__ import annotations

import numpy as np

from medseg.classical._common import (
    MaskLike,
    check_classes,
    float_image,
    make_label_map,
    mask_array,
)
from medseg.errors import ConfigError
from medseg.volume import LabelMap, Volume


def kmeans(
    volume: Volume,
    classes: int = 3,
    *,
    mask: MaskLike = None,
    seed: int = 0,
    max_samples: int = 200_000,
    n_init: int = 4,
) -> LabelMap:
    """``K = classes`` intensity clusters, labelled ``1..K`` by increasing mean intensity.

    Args:
        volume: the image.
        classes: number of clusters (>= 2).
        mask: only voxels inside it are clustered (Volume/LabelMap on the same grid, or an
            array of the same shape; non-zero = inside); the others are 0.
        seed: seeds the voxel sample and scikit-learn's initialisation.
        max_samples: voxels used to fit the centres (all when fewer are inside the mask).
        n_init: k-means++ restarts; the best (lowest inertia) is kept.
    """
    from sklearn.cluster import KMeans

    k = check_classes(classes)
    if int(max_samples) < k:
        raise ConfigError(f"max_samples: expected at least K = {k} voxels, found {max_samples}")
    arr = float_image(volume)
    m = mask_array(mask, volume)
    vals = arr[m] if m is not None else arr.ravel()
    rng = np.random.default_rng(seed)
    if vals.size > max_samples:
        vals = vals[rng.choice(vals.size, size=int(max_samples), replace=False)]
    n_distinct = np.unique(vals).size
    if n_distinct < k:
        raise ConfigError(
            f"k-means with K = {k}: the voxels (inside the mask) have only {n_distinct} "
            "distinct intensities"
        )
    model = KMeans(n_clusters=k, n_init=int(n_init), random_state=int(seed))
    model.fit(vals.reshape(-1, 1).astype(np.float64))
    centres = np.sort(model.cluster_centers_.ravel())
    cuts = (centres[:-1] + centres[1:]) / 2.0
    out = np.ones(arr.shape, dtype=np.uint8)
    for c in cuts:  # nearest centre: one more than the number of midpoints below the value
        out += arr > c
    if m is not None:
        out[~m] = 0
    names = {c: f"cluster_{c}" for c in range(1, k + 1)}
    return make_label_map(
        volume, out, names, "kmeans", centres=[float(c) for c in centres], seed=int(seed)
    )


__all__ = ["kmeans"]
