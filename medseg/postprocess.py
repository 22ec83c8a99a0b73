"""Post-processing of label maps: connected components, hole filling, morphology in mm, and a
chosen sequence of steps (:class:`Postprocessing`, e.g. selected by cross-validation).

Every function takes an integer label array ``(X, Y, Z)`` in voxel index order and returns a new
array of the same shape and dtype (the input is never modified). ``values`` restricts the
operation to some label values (default: every non-zero value present); each value is
processed on its own, inside its bounding box, so the cost follows the size of the structures,
not of the image.

* **Components** (:func:`keep_largest_component`, :func:`remove_small_components`) come from
  :func:`medseg.components.connected_components` (cc3d); ``connectivity`` is 6, 18 or 26
  (default 26, as nnU-Net's and TotalSegmentator's post-processing). Volumes are in mL.
* **Hole filling** (:func:`fill_holes`) is 3-D: a hole is a background region (6-connected)
  enclosed by the label, i.e. not connected to the image border. Only background voxels are
  filled; a hole holding another label keeps it.
* **Morphology** (:func:`opening`, :func:`closing`, and the mask functions
  :func:`dilate_mask`, :func:`erode_mask`) uses a structuring element that is a **ball in
  millimetres**: the voxel offsets ``o`` with ``sqrt(sum((o_a * spacing_a)²)) <= radius_mm``
  (:func:`structuring_element`), so on a 0.8×0.47×0.47 mm grid a 2 mm radius spans ±2 voxels
  along the first axis and ±4 along the others. It is computed exactly through Euclidean
  distance transforms with the voxel spacing (``scipy.ndimage.distance_transform_edt``,
  ``sampling=spacing``), whose cost does not grow with the radius: dilation keeps the voxels
  within ``radius_mm`` of the mask; erosion keeps the mask voxels farther than ``radius_mm``
  from any background voxel **inside the image** — the space outside the image counts as
  neither, so a structure touching the image edge is not eaten away by it (scipy's
  ``binary_erosion(..., border_value=1)``; the tests check both against scipy with
  :func:`structuring_element`). Opening is erosion then dilation, closing dilation then erosion.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from scipy import ndimage

from medseg.components import check_connectivity, component_sizes, connected_components
from medseg.errors import ConfigError, InputError

LabelArray = npt.NDArray[np.integer[Any]]
BoolArray = npt.NDArray[np.bool_]
Box = tuple[slice, slice, slice]

# Relative slack when comparing a distance with a radius, so that an offset lying exactly on
# the ball's surface counts as inside whatever the rounding of the square root.
_EPS = 1e-9


def _check_3d(arr: npt.NDArray[Any], what: str = "labels") -> None:
    if arr.ndim != 3:
        raise ValueError(f"{what}: expected a 3-D array (X, Y, Z), found shape {arr.shape}")


def _check_spacing(spacing: Sequence[float]) -> tuple[float, float, float]:
    sp = tuple(float(s) for s in spacing)
    if len(sp) != 3 or not all(math.isfinite(s) and s > 0 for s in sp):
        raise ConfigError(f"spacing: expected 3 positive values in mm, found {tuple(spacing)}")
    return (sp[0], sp[1], sp[2])


def check_radius(radius_mm: float, what: str = "radius_mm") -> float:
    """Return ``radius_mm`` as a float if it is finite and >= 0, else raise ConfigError."""
    r = float(radius_mm)
    if not (math.isfinite(r) and r >= 0):
        raise ConfigError(f"{what}: expected a finite radius >= 0 mm, found {radius_mm!r}")
    return r


def _values(labels: LabelArray, values: Iterable[int] | None) -> list[int]:
    if values is None:
        return [int(v) for v in np.unique(labels) if v != 0]
    vals = sorted({int(v) for v in values})
    if any(v <= 0 for v in vals):
        raise ConfigError(f"values: expected positive label values (0 is background), got {vals}")
    return vals


def _boxes(labels: LabelArray, values: list[int]) -> dict[int, Box]:
    """Bounding box of each requested value present in ``labels`` (one pass)."""
    if not values:
        return {}
    arr = labels if labels.dtype.kind in "ui" and labels.dtype.itemsize <= 4 else None
    if arr is None:
        arr = labels.astype(np.int64)
    top = max(values)
    # find_objects needs non-negative labels; negative values are not labels.
    objs = ndimage.find_objects(np.where(arr > 0, arr, 0), max_label=top)
    out: dict[int, Box] = {}
    for v in values:
        b = objs[v - 1]
        if b is not None:
            out[v] = (b[0], b[1], b[2])
    return out


def _grow(box: Box, margin: Sequence[int], shape: Sequence[int]) -> Box:
    s = [
        slice(max(box[a].start - margin[a], 0), min(box[a].stop + margin[a], shape[a]))
        for a in range(3)
    ]
    return (s[0], s[1], s[2])


# --- components ---------------------------------------------------------------------------


def keep_largest_component(
    labels: LabelArray, values: Iterable[int] | None = None, connectivity: int = 26
) -> LabelArray:
    """For each label value, keep only its largest connected component (the first in scan
    order on a tie); the other components become background (0).

    Args:
        labels: integer label array ``(X, Y, Z)``.
        values: label values to process (default: every non-zero value present).
        connectivity: 6, 18 or 26 (default).
    """
    check_connectivity(connectivity)
    arr = np.asarray(labels)
    _check_3d(arr)
    out = arr.copy()
    vals = _values(arr, values)
    for v, box in _boxes(arr, vals).items():
        mask = arr[box] == v
        comps, n = connected_components(mask, connectivity)
        if n <= 1:
            continue
        keep = int(np.argmax(component_sizes(comps, n))) + 1
        out[box][mask & (comps != keep)] = 0
    return out


def remove_small_components(
    labels: LabelArray,
    min_volume_ml: float,
    voxel_volume_ml: float,
    values: Iterable[int] | None = None,
    connectivity: int = 26,
) -> LabelArray:
    """Remove the connected components smaller than ``min_volume_ml`` (components of exactly
    that volume are kept).

    Args:
        labels: integer label array ``(X, Y, Z)``.
        min_volume_ml: smallest volume kept, in mL (1 mL = 1000 mm³).
        voxel_volume_ml: volume of one voxel in mL (``LabelMap.voxel_volume_ml``).
        values: label values to process (default: every non-zero value present).
        connectivity: 6, 18 or 26 (default).
    """
    check_connectivity(connectivity)
    if not (math.isfinite(min_volume_ml) and min_volume_ml >= 0):
        raise ConfigError(f"min_volume_ml: expected a volume >= 0 mL, found {min_volume_ml!r}")
    if not (math.isfinite(voxel_volume_ml) and voxel_volume_ml > 0):
        raise ConfigError(f"voxel_volume_ml: expected > 0 mL, found {voxel_volume_ml!r}")
    arr = np.asarray(labels)
    _check_3d(arr)
    out = arr.copy()
    # Smallest voxel count that reaches the volume (with slack for rounding of the product).
    min_voxels = math.ceil(min_volume_ml / voxel_volume_ml * (1 - _EPS))
    if min_voxels <= 1:
        return out
    for v, box in _boxes(arr, _values(arr, values)).items():
        mask = arr[box] == v
        comps, n = connected_components(mask, connectivity)
        small = np.flatnonzero(component_sizes(comps, n) < min_voxels) + 1
        if small.size:
            out[box][np.isin(comps, small)] = 0
    return out


def fill_holes(labels: LabelArray, values: Iterable[int] | None = None) -> LabelArray:
    """Fill the 3-D holes of each label: background (0) voxels enclosed by the label, i.e.
    in a 6-connected background region that does not reach the image border
    (``scipy.ndimage.binary_fill_holes``). Voxels of other labels are left alone."""
    arr = np.asarray(labels)
    _check_3d(arr)
    out = arr.copy()
    for v, box in _boxes(arr, _values(arr, values)).items():
        # One voxel of margin (where the image allows) so the region around the label's box is
        # background connected to the crop border, as in the whole image.
        crop = _grow(box, (1, 1, 1), arr.shape)
        mask = arr[crop] == v
        filled = ndimage.binary_fill_holes(mask) & ~mask & (out[crop] == 0)
        out[crop][filled] = v
    return out


# --- morphology in millimetres ---------------------------------------------------------------


def structuring_element(radius_mm: float, spacing: Sequence[float]) -> BoolArray:
    """The ball of ``radius_mm`` on a grid of ``spacing`` (mm per array axis): a boolean array
    of shape ``(2·n_0 + 1, 2·n_1 + 1, 2·n_2 + 1)`` with ``n_a = floor(radius_mm / spacing_a)``,
    true at the offsets ``o`` with ``sqrt(sum((o_a · spacing_a)²)) <= radius_mm``."""
    r = check_radius(radius_mm)
    sp = _check_spacing(spacing)
    axes = [np.arange(-k, k + 1) * s for k, s in zip(_reach(r, sp), sp, strict=True)]
    grids = np.meshgrid(*axes, indexing="ij")
    d2 = sum(g**2 for g in grids)
    return np.asarray(d2 <= (r * (1 + _EPS)) ** 2)


def _reach(radius_mm: float, spacing: Sequence[float]) -> tuple[int, int, int]:
    n = [math.floor(radius_mm / s * (1 + _EPS)) for s in spacing]
    return (n[0], n[1], n[2])


def _mask_input(
    mask: BoolArray, radius_mm: float, spacing: Sequence[float]
) -> tuple[float, tuple[float, float, float], BoolArray, Box | None]:
    """Checked ``(radius, spacing, mask, bounding box)``; the box is None when there is
    nothing to do (radius 0 or an empty mask)."""
    r = check_radius(radius_mm)
    sp = _check_spacing(spacing)
    m = np.asarray(mask, dtype=bool)
    _check_3d(m, "mask")
    box = _boxes(m.astype(np.uint8), [1]).get(1) if r > 0 else None
    return r, sp, m, box


def dilate_mask(mask: BoolArray, radius_mm: float, spacing: Sequence[float]) -> BoolArray:
    """Voxels within ``radius_mm`` (Euclidean, mm) of a voxel of ``mask``: the dilation by the
    ball :func:`structuring_element`. ``mask`` is a 3-D boolean array; same shape returned."""
    r, sp, m, box = _mask_input(mask, radius_mm, spacing)
    if box is None:
        return m.copy()
    crop = _grow(box, _reach(r, sp), m.shape)
    out = np.zeros_like(m)
    dist = ndimage.distance_transform_edt(~m[crop], sampling=sp)
    out[crop] = dist <= r * (1 + _EPS)
    return out


def erode_mask(mask: BoolArray, radius_mm: float, spacing: Sequence[float]) -> BoolArray:
    """Voxels of ``mask`` farther than ``radius_mm`` (mm) from every background voxel of the
    image: the erosion by the ball :func:`structuring_element`, the outside of the image
    counting as foreground (so structures are not eroded from the image edge)."""
    r, sp, m, box = _mask_input(mask, radius_mm, spacing)
    if box is None:
        return m.copy()
    # One voxel of margin suffices: the nearest background voxel of a voxel in the box lies in
    # the box or on the margin (clamping any farther voxel into the margin brings it closer).
    crop = _grow(box, (1, 1, 1), m.shape)
    sub = m[crop]
    out = np.zeros_like(m)
    if sub.all():  # no background voxel at all within reach: nothing to erode from
        out[crop] = True
        return out
    dist = ndimage.distance_transform_edt(sub, sampling=sp)
    out[crop] = dist > r * (1 + _EPS)
    return out


def _per_label(
    labels: LabelArray,
    radius_mm: float,
    spacing: Sequence[float],
    values: Iterable[int] | None,
    closing_op: bool,
) -> LabelArray:
    r = check_radius(radius_mm)
    sp = _check_spacing(spacing)
    arr = np.asarray(labels)
    _check_3d(arr)
    out = arr.copy()
    if r == 0:
        return out
    reach = _reach(r, sp)
    # Dilation reaches ``reach`` voxels past the label's box; one more keeps background
    # between it and the crop border, so the crop behaves as the whole image.
    margin = tuple(n + 1 for n in reach)
    for v, box in _boxes(arr, _values(arr, values)).items():
        crop = _grow(box, margin, arr.shape)
        mask = arr[crop] == v
        if closing_op:
            new = erode_mask(dilate_mask(mask, r, sp), r, sp)
            # Closing fills only background; a voxel taken by an earlier label stays with it.
            add = new & ~mask & (out[crop] == 0)
            out[crop][add] = v
        else:
            new = dilate_mask(erode_mask(mask, r, sp), r, sp)
            out[crop][mask & ~new] = 0
    return out


def opening(
    labels: LabelArray,
    radius_mm: float,
    spacing: Sequence[float],
    values: Iterable[int] | None = None,
) -> LabelArray:
    """Morphological opening of each label by a ball of ``radius_mm`` (mm; see the module
    docstring): removes parts thinner than the ball; removed voxels become background."""
    return _per_label(labels, radius_mm, spacing, values, closing_op=False)


def closing(
    labels: LabelArray,
    radius_mm: float,
    spacing: Sequence[float],
    values: Iterable[int] | None = None,
) -> LabelArray:
    """Morphological closing of each label by a ball of ``radius_mm`` (mm): bridges gaps
    narrower than the ball. Only background voxels are added; labels are processed in
    ascending order and a voxel added to one is not taken by a later one."""
    return _per_label(labels, radius_mm, spacing, values, closing_op=True)


# --- a chosen sequence of steps ---------------------------------------------------------------


def keep_largest_foreground(labels: LabelArray, connectivity: int = 26) -> LabelArray:
    """Keep only the largest connected component of the foreground taken as one region (all
    non-zero labels merged, as nnU-Net's "keep largest foreground region"); voxels of the
    other components become background, the kept voxels keep their labels."""
    check_connectivity(connectivity)
    arr = np.asarray(labels)
    _check_3d(arr)
    comps, n = connected_components(arr != 0, connectivity)
    out = arr.copy()
    if n > 1:
        keep = int(np.argmax(component_sizes(comps, n))) + 1
        out[(comps != keep) & (arr != 0)] = 0
    return out


StepKind = Literal[
    "keep_largest_foreground", "keep_largest", "remove_small", "fill_holes", "opening", "closing"
]


class PostprocessingStep(BaseModel):
    """One step: ``keep_largest_foreground``, ``keep_largest`` (largest component of
    ``label``), ``remove_small`` (components of ``label`` below ``min_volume_ml`` mL),
    ``fill_holes`` (of ``label``), ``opening`` / ``closing`` (of ``label``, by a ball of
    ``radius_mm`` mm). ``label`` ``None`` applies the step to every label."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: StepKind
    label: int | None = Field(default=None, ge=1)
    min_volume_ml: float | None = Field(default=None, ge=0)
    radius_mm: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _check(self) -> PostprocessingStep:
        if self.kind == "keep_largest_foreground" and self.label is not None:
            raise ValueError("keep_largest_foreground: takes no label (it merges every label)")
        if self.kind == "remove_small" and self.min_volume_ml is None:
            raise ValueError("remove_small: needs min_volume_ml")
        if self.kind in ("opening", "closing") and self.radius_mm is None:
            raise ValueError(f"{self.kind}: needs radius_mm")
        return self


class Postprocessing(BaseModel):
    """A sequence of post-processing steps, applied in order (:func:`apply_postprocessing`),
    with the evidence it was chosen on: the one post-processing record of medseg
    (``medseg.training.crossval`` writes the cross-validation's choice to the model folder's
    ``postprocessing.json``; prediction applies it, and a user's request
    (:func:`requested_postprocessing`) and the classical methods' :class:`PostOptions` are
    turned into one)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    steps: list[PostprocessingStep] = Field(default_factory=list)
    connectivity: int = 26
    decided_by: str = "user"
    #: one entry per step tried: what, the mean Dice before and after, kept or not
    trials: list[dict[str, Any]] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> Postprocessing:
        check_connectivity(self.connectivity)
        return self


def apply_postprocessing(
    labels: LabelArray,
    pp: Postprocessing,
    voxel_volume_ml: float,
    spacing: Sequence[float] | None = None,
) -> LabelArray:
    """Apply the steps of ``pp`` to an integer label array ``(X, Y, Z)`` (a new array).
    ``spacing`` (mm per axis) is needed by ``opening`` and ``closing`` steps."""
    out = np.asarray(labels)
    for step in pp.steps:
        values = None if step.label is None else [int(step.label)]
        if step.kind == "keep_largest_foreground":
            out = keep_largest_foreground(out, pp.connectivity)
        elif step.kind == "keep_largest":
            out = keep_largest_component(out, values, pp.connectivity)
        elif step.kind == "fill_holes":
            out = fill_holes(out, values)
        elif step.kind in ("opening", "closing"):
            if spacing is None:
                raise ConfigError(f"spacing: the {step.kind} step needs the voxel spacing (mm)")
            morph = opening if step.kind == "opening" else closing
            out = morph(out, float(step.radius_mm or 0.0), spacing, values)
        else:
            out = remove_small_components(
                out, float(step.min_volume_ml or 0.0), voxel_volume_ml, values, pp.connectivity
            )
    return out if out is not labels else out.copy()


LabelChoice = Sequence[int] | Literal["all"] | None


def requested_postprocessing(
    labels: Sequence[int],
    *,
    keep_largest: LabelChoice = None,
    min_volume_ml: float | dict[int, float] | None = None,
    fill_holes: LabelChoice = None,
    connectivity: int = 26,
) -> Postprocessing | None:
    """A user's post-processing request as steps, for a model with foreground ``labels``:
    fill the holes of ``fill_holes``, keep the largest component of ``keep_largest`` (label
    lists, or ``"all"``), drop components below ``min_volume_ml`` mL (one volume for every
    label, or ``{label: mL}``). ``None`` when nothing is asked."""
    known = [int(v) for v in labels]

    def pick(choice: LabelChoice, what: str) -> list[int]:
        if choice is None:
            return []
        chosen = known if choice == "all" else [int(v) for v in choice]
        unknown = sorted(set(chosen) - set(known))
        if unknown:
            raise ConfigError(
                f"{what}: labels {unknown} are not labels of the model {known}", param=what
            )
        return chosen

    steps = [PostprocessingStep(kind="fill_holes", label=v) for v in pick(fill_holes, "fill_holes")]
    steps += [
        PostprocessingStep(kind="keep_largest", label=v) for v in pick(keep_largest, "keep_largest")
    ]
    if min_volume_ml is not None:
        vols = (
            min_volume_ml
            if isinstance(min_volume_ml, dict)
            else dict.fromkeys(known, min_volume_ml)
        )
        for v, ml in sorted(vols.items()):
            pick([v], "min_volume_ml")
            if not (math.isfinite(ml) and ml >= 0):
                raise ConfigError(
                    f"min_volume_ml: expected a volume >= 0 mL, found {ml!r}",
                    param="min_volume_ml",
                )
            steps.append(PostprocessingStep(kind="remove_small", label=v, min_volume_ml=ml))
    return Postprocessing(steps=steps, connectivity=connectivity) if steps else None


def load_postprocessing(path: str | Path) -> Postprocessing:
    """Read a ``postprocessing.json`` (:class:`InputError`/:class:`ConfigError` name it)."""
    import json

    from medseg.config import format_validation_error

    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(p, f"cannot read the post-processing choice: {exc}") from None
    except ValueError as exc:
        raise ConfigError(f"{p}: invalid JSON: {exc}") from None
    try:
        return Postprocessing.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(p, exc, "post-processing choice")) from None


__all__ = [
    "Postprocessing",
    "PostprocessingStep",
    "apply_postprocessing",
    "check_radius",
    "closing",
    "dilate_mask",
    "erode_mask",
    "fill_holes",
    "keep_largest_component",
    "keep_largest_foreground",
    "load_postprocessing",
    "opening",
    "remove_small_components",
    "requested_postprocessing",
    "structuring_element",
]
