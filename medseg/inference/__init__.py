"""Prediction: sliding-window inference (:mod:`.sliding`), trained networks on whole cases
(:mod:`.predictor`) and batch prediction over folders of scans (:mod:`.batch`).

* :func:`compute_gaussian`, :func:`compute_steps` — small pure functions (NumPy).
* :func:`sliding_window_probabilities` — a network and a preprocessed image tensor
  ``(C, X, Y, Z)`` → softmax probabilities ``(K, X, Y, Z)``.
* :class:`Predictor` / :func:`predict` — checkpoint(s) + original :class:`~medseg.volume.Volume`
  channel(s) → :class:`~medseg.volume.LabelMap` on the original grid.

Axis order is always the :class:`~medseg.volume.Volume` array order (voxel index ``i, j, k``).
"""

from medseg.inference.predictor import (
    Predictor,
    labels_on_original_grid,
    model_checkpoints,
    predict,
)
from medseg.inference.sliding import (
    compute_gaussian,
    compute_steps,
    mirror_combinations,
    predict_array,
    sliding_window_probabilities,
)

__all__ = [
    "Predictor",
    "compute_gaussian",
    "compute_steps",
    "labels_on_original_grid",
    "mirror_combinations",
    "model_checkpoints",
    "predict",
    "predict_array",
    "sliding_window_probabilities",
]
