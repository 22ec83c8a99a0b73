"""Classical 3-D segmentation: thresholds, region growing, k-means, watershed, edges.

The baselines people reach for before (or instead of) training a network. Every method is a
pure function ``Volume -> LabelMap``: the output lies on the input's grid (same shape and
affine, so ``medseg evaluate`` scores it exactly like a network's prediction), carries label
names, and records in ``meta.extra`` what the method found (thresholds, cluster centres, the
window grown, ...). Sizes and distances are in millimetres and volumes in mL, converted with
the voxel spacing of each array axis, never in voxels.

================================  =====================================================
function                          method
================================  =====================================================
:func:`threshold`                 fixed window ``[lower, upper]`` (e.g. bone ``>= 300`` HU)
:func:`otsu`, :func:`multi_otsu`  Otsu's threshold / ``K`` classes (scikit-image)
:func:`connected_threshold`       region growing in a window from seeds in RAS+ mm (SimpleITK)
:func:`confidence_connected`      region growing in ``mean ± k·std`` (ITK's rule, mm box)
:func:`kmeans`                    ``K`` intensity clusters ordered by mean (scikit-learn)
:func:`watershed`                 marker-based, on the gradient magnitude (scikit-image)
:func:`sobel_edges`               3-D Sobel magnitude above a threshold / hysteresis
:func:`canny_edges`               3-D Canny (SimpleITK), edge map or filled region
================================  =====================================================

Shared steps (:mod:`medseg.classical.options`): :func:`smooth` (Gaussian, sigma in mm) before,
:func:`postprocess` with :class:`PostOptions` (opening/closing radius in mm, hole filling,
components below N mL removed, largest component kept) after. :func:`segment` runs
smoothing, one method by name, and post-processing, as ``medseg segment`` does.
Each method's parameters are its options record (:mod:`medseg.classical.methods`: one record
per method, the method's signature; ``medseg segment`` derives from them which option applies
to which method). Bad parameters raise :class:`~medseg.errors.ConfigError` with the parameter
and the value.
"""

from __future__ import annotations

from typing import Any

from medseg.classical.edges import canny_edges, gradient_magnitude, sobel_edges
from medseg.classical.kmeans import kmeans
from medseg.classical.methods import (
    METHODS,
    OPTIONS,
    MethodOptions,
    method_options,
    option_names,
)
from medseg.classical.options import PostOptions, postprocess, smooth
from medseg.classical.region_growing import confidence_connected, connected_threshold
from medseg.classical.thresholds import multi_otsu, otsu, threshold
from medseg.classical.watershed import distance_peak_markers, watershed
from medseg.errors import ConfigError
from medseg.volume import LabelMap, Volume


def segment(
    volume: Volume,
    method: str | MethodOptions,
    *,
    smooth_mm: float = 0.0,
    post: PostOptions | None = None,
    **params: Any,
) -> LabelMap:
    """Smooth (``smooth_mm``, Gaussian sigma in mm; 0 = off), run ``method`` (a key of
    :data:`METHODS` with ``params``, its keyword arguments, or an options record of
    :mod:`medseg.classical.methods`), then post-process (``post``).

    ``segment(ct, "threshold", lower=300, post=PostOptions(min_component_ml=1))`` is
    ``segment(ct, ThresholdOptions(lower=300), post=...)`` and
    ``postprocess(threshold(ct, lower=300), PostOptions(min_component_ml=1))``.
    """
    if isinstance(method, MethodOptions):
        if params:
            raise ConfigError(f"method: give an options record or keywords, not both: {params}")
        options = method
    else:
        options = method_options(method, **params)
    labels = options.run(smooth(volume, smooth_mm))
    return postprocess(labels, post) if post is not None and post.active else labels


__all__ = [
    "METHODS",
    "OPTIONS",
    "MethodOptions",
    "PostOptions",
    "canny_edges",
    "confidence_connected",
    "connected_threshold",
    "distance_peak_markers",
    "gradient_magnitude",
    "kmeans",
    "method_options",
    "multi_otsu",
    "option_names",
    "otsu",
    "postprocess",
    "segment",
    "smooth",
    "sobel_edges",
    "threshold",
    "watershed",
]
