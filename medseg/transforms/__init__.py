"""Transforms: normalisation (:mod:`.intensity`), reorientation/crop/resampling
(:mod:`.spatial`), the shared train/infer pipeline and its inverse (:mod:`.preprocessing`),
training augmentation (:mod:`.augmentation`) and patch sampling (:mod:`.sampling`).

Import from the submodules; this package imports nothing heavy (no torch) on its own.
"""
