"""Per-label metrics of one prediction against one reference on the same voxel grid.

:func:`evaluate_pair` is the entry point: it checks the grids, counts every label in one pass,
crops each label (or composite region) to the union bounding box of prediction and reference
with a one-voxel margin, and computes overlap and surface metrics from that crop. It returns one
frozen :class:`LabelRecord` per label/region.

Empty-mask conventions (see :class:`EmptyPolicy`; each record carries ``ref_empty`` /
``pred_empty``):

=====================  ========  ===========================  =======
case                   Dice/IoU  HD, HD95, ASSD               NSD
=====================  ========  ===========================  =======
both non-empty         computed  computed                     computed
ref empty, pred not    0         worst case (default: image   0
                                 diagonal in mm) or NaN
pred empty, ref not    0         worst case or NaN            0
both empty             NaN (or   NaN                          NaN
                       1.0)
=====================  ========  ===========================  =======
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from medseg.errors import ConfigError
from medseg.metrics.boxes import box_of, crop_slices, label_boxes, union_box
from medseg.metrics.overlap import dice_from_counts
from medseg.metrics.surface import (
    DistanceMethod,
    SurfaceKind,
    surface_distances,
    weighted_percentile,
)
from medseg.volume import LabelMap

NAN = float("nan")

#: Columns of a record, in CSV order.
RECORD_FIELDS: tuple[str, ...] = (
    "case",
    "label",
    "name",
    "kind",
    "labels",
    "dice",
    "iou",
    "accuracy",
    "tp",
    "fp",
    "fn",
    "tn",
    "ref_voxels",
    "pred_voxels",
    "ref_ml",
    "pred_ml",
    "hd_mm",
    "hd95_mm",
    "assd_mm",
    "nsd",
    "nsd_tolerance_mm",
    "ref_empty",
    "pred_empty",
    "undefined",
    "distances_substituted",
    "surface",
)


@dataclass(frozen=True)
class EmptyPolicy:
    """How empty masks are scored.

    Attributes:
        both_empty_dice: ``"nan"`` (default, as nnU-Net: the case says nothing about the label
            and is excluded from means but counted) or ``"one"`` (a correct absence scores 1).
        one_empty_distance: distances when exactly one mask is empty: ``"diagonal"`` (default:
            the field-of-view diagonal ``sqrt(sum((shape_i * spacing_i)²))`` mm, larger than
            any measurable distance, so a missed or hallucinated structure counts as the worst
            case), ``"nan"`` (undefined; excluded from means but counted), or a number of mm.
    """

    both_empty_dice: Literal["nan", "one"] = "nan"
    one_empty_distance: Literal["diagonal", "nan"] | float = "diagonal"

    def __post_init__(self) -> None:
        if self.both_empty_dice not in ("nan", "one"):
            raise ConfigError(
                f"both_empty_dice must be 'nan' or 'one', found {self.both_empty_dice!r}"
            )
        d = self.one_empty_distance
        if isinstance(d, str):
            if d not in ("diagonal", "nan"):
                raise ConfigError(
                    f"one_empty_distance must be 'diagonal', 'nan' or a distance in mm, found {d!r}"
                )
        elif not (isinstance(d, (int, float)) and math.isfinite(d) and d >= 0):
            raise ConfigError(f"one_empty_distance in mm must be finite and >= 0, found {d!r}")

    @classmethod
    def parse(
        cls, both_empty_dice: str = "nan", one_empty_distance: str = "diagonal"
    ) -> EmptyPolicy:
        """Build from command-line strings (``one_empty_distance`` may be a number of mm)."""
        d: Any = one_empty_distance
        if d not in ("diagonal", "nan"):
            try:
                d = float(d)
            except ValueError:
                raise ConfigError(
                    f"empty distance must be 'diagonal', 'nan' or a number of mm, found {d!r}"
                ) from None
        return cls(both_empty_dice=both_empty_dice, one_empty_distance=d)  # type: ignore[arg-type]

    def worst_distance(self, shape: Sequence[int], spacing: Sequence[float]) -> float:
        """The distance (mm) given to HD/HD95/ASSD when exactly one mask is empty."""
        d = self.one_empty_distance
        if d == "nan":
            return NAN
        if d == "diagonal":
            return float(np.sqrt(np.sum((np.asarray(shape) * np.asarray(spacing)) ** 2)))
        return float(d)

    def describe(self) -> dict[str, Any]:
        return {
            "both_empty_dice": self.both_empty_dice,
            "one_empty_distance": self.one_empty_distance,
        }


@dataclass(frozen=True)
class LabelRecord:
    """Metrics of one label (or composite region) in one case.

    ``label`` is the label value as text (``"3"``) or, for a region, its values joined with
    ``+`` (``"1+3+4"``); ``labels`` holds the values; ``kind`` is ``"label"`` or
    ``"region"``. Volumes in mL, distances in mm.
    ``undefined`` is ``""`` when both masks are non-empty, else ``"ref_empty"``,
    ``"pred_empty"`` or ``"both_empty"``; ``distances_substituted`` is true when HD/HD95/ASSD
    hold the worst-case value of the :class:`EmptyPolicy` instead of a measurement.
    """

    case: str
    label: str
    name: str
    labels: tuple[int, ...]
    dice: float
    iou: float
    tp: int
    fp: int
    fn: int
    tn: int
    ref_voxels: int
    pred_voxels: int
    ref_ml: float
    pred_ml: float
    hd_mm: float
    hd95_mm: float
    assd_mm: float
    nsd: float
    nsd_tolerance_mm: float
    ref_empty: bool
    pred_empty: bool
    undefined: str = ""
    distances_substituted: bool = False
    surface: str = "border"
    kind: str = "label"
    accuracy: float = NAN
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def as_dict(self) -> dict[str, Any]:
        """Plain dict in :data:`RECORD_FIELDS` order (``labels`` as a list)."""
        d = asdict(self)
        d.pop("extra")
        d["labels"] = list(self.labels)
        return {k: d[k] for k in RECORD_FIELDS}


@dataclass(frozen=True)
class Region:
    """A composite structure evaluated as the union of several label values."""

    name: str
    labels: tuple[int, ...]

    @property
    def key(self) -> str:
        return "+".join(str(v) for v in self.labels)


def parse_regions(spec: Mapping[str, Iterable[int]] | Iterable[Region] | None) -> list[Region]:
    """Normalise ``{"tumour_core": [1, 3, 4]}`` (or Region objects) to sorted Regions."""
    if spec is None:
        return []
    out: list[Region] = []
    items = spec.items() if isinstance(spec, Mapping) else ((r.name, r.labels) for r in spec)
    for name, values in items:
        vals = tuple(sorted({int(v) for v in values}))
        if not vals:
            raise ConfigError(
                f"regions: {name!r} has no labels; expected at least one (NAME=L,L,...)"
            )
        if any(v <= 0 for v in vals):
            raise ConfigError(f"region {name!r}: labels must be positive, found {list(vals)}")
        out.append(Region(str(name), vals))
    return out


def evaluate_pair(
    pred: LabelMap,
    ref: LabelMap,
    labels: Iterable[int] | None = None,
    regions: Mapping[str, Iterable[int]] | Iterable[Region] | None = None,
    *,
    tolerance_mm: float = 1.0,
    policy: EmptyPolicy | None = None,
    surface: SurfaceKind = "border",
    method: DistanceMethod = "auto",
    case: str = "",
    label_names: Mapping[int, str] | None = None,
) -> list[LabelRecord]:
    """Per-label and per-region metrics of ``pred`` against ``ref``.

    Args:
        pred, ref: label maps on the same grid (checked; :class:`GeometryMismatchError`
            otherwise). Arrays in voxel index order; distances use ``ref.spacing`` (mm per
            array axis).
        labels: label values to evaluate; default: every non-zero value present in either map.
            A requested label absent from both maps gets a "both empty" record.
        regions: composite structures, ``{"tumour_core": [1, 3, 4]}``, evaluated as unions.
        tolerance_mm: tolerance of the normalised surface Dice (NSD), in mm.
        policy: empty-mask conventions (:class:`EmptyPolicy`; default NaN / image diagonal).
        surface: ``"border"`` voxels (default, MONAI's definition) or DeepMind ``"surfels"``.
        method: distance computation, ``"auto"``, ``"edt"`` or ``"kdtree"`` (all exact).
        case: case identifier copied into the records.
        label_names: names for label values; default ``ref.label_names`` then
            ``pred.label_names``, then ``label_<value>``.

    Returns:
        One :class:`LabelRecord` per label (ascending), then one per region (in given order).
    """
    ref.check_same_grid(pred)
    if not (tolerance_mm >= 0 and math.isfinite(tolerance_mm)):
        raise ConfigError(f"tolerance_mm must be finite and >= 0, found {tolerance_mm}")
    policy = policy or EmptyPolicy()
    names: dict[int, str] = {**pred.label_names, **ref.label_names, **dict(label_names or {})}
    region_list = parse_regions(regions)

    p_arr, r_arr = pred.array, ref.array
    shape = ref.shape
    spacing = ref.spacing
    voxel_ml = ref.voxel_volume_ml
    n_total = int(np.prod(shape))

    max_p = int(p_arr.max()) if p_arr.size else 0
    max_r = int(r_arr.max()) if r_arr.size else 0
    # One pass per map: the bounding box of every label value. Everything else (counts,
    # overlap, surfaces) is computed inside each label's union box, never on the full grid.
    box_p = label_boxes(p_arr, max_p)
    box_r = label_boxes(r_arr, max_r)

    if labels is None:
        wanted = [
            v
            for v in range(1, max(max_p, max_r) + 1)
            if box_of(box_p, v) is not None or box_of(box_r, v) is not None
        ]
    else:
        wanted = sorted({int(v) for v in labels})
        if any(v <= 0 for v in wanted):
            raise ConfigError(f"labels must be positive (0 is background), found {wanted}")

    worst = policy.worst_distance(shape, spacing)
    records: list[LabelRecord] = []

    def one(key: str, name: str, values: tuple[int, ...], kind: str) -> None:
        box = union_box([box_of(b, v) for v in values for b in (box_p, box_r)])
        pm = rm = None
        n_p = n_r = tp = 0
        if box is not None:
            sl = crop_slices(box, shape, 1)
            if len(values) == 1:
                pm = p_arr[sl] == values[0]
                rm = r_arr[sl] == values[0]
            else:
                pm = np.isin(p_arr[sl], values)
                rm = np.isin(r_arr[sl], values)
            n_p = int(np.count_nonzero(pm))
            n_r = int(np.count_nonzero(rm))
            tp = int(np.count_nonzero(pm & rm)) if n_p and n_r else 0
        records.append(
            _record(
                case,
                key,
                name,
                values,
                tp,
                n_p,
                n_r,
                n_total,
                voxel_ml,
                pm,
                rm,
                spacing,
                tolerance_mm,
                policy,
                worst,
                surface,
                method,
                kind,
            )
        )

    for v in wanted:
        one(str(v), names.get(v, f"label_{v}"), (v,), "label")
    for reg in region_list:
        one(reg.key, reg.name, reg.labels, "region")
    return records


def evaluate_arrays(
    pred: npt.ArrayLike,
    ref: npt.ArrayLike,
    spacing: Sequence[float],
    labels: Iterable[int] | None = None,
    regions: Mapping[str, Iterable[int]] | Iterable[Region] | None = None,
    **kwargs: Any,
) -> list[LabelRecord]:
    """:func:`evaluate_pair` for two bare 3-D label arrays (voxel index order) on one grid
    with ``spacing`` in mm per array axis (e.g. validation inside a training loop).

    Boolean masks are label 1. Keyword arguments are those of :func:`evaluate_pair`.
    """
    sp = [float(v) for v in spacing]
    if len(sp) != 3:
        raise ConfigError(f"spacing must have 3 values (mm per array axis), found {spacing!r}")
    aff = np.diag([*sp, 1.0])
    return evaluate_pair(
        LabelMap(np.asarray(pred), aff, source="<pred array>"),
        LabelMap(np.asarray(ref), aff, source="<ref array>"),
        labels,
        regions,
        **kwargs,
    )


def _record(
    case: str,
    key: str,
    name: str,
    values: tuple[int, ...],
    tp: int,
    n_p: int,
    n_r: int,
    n_total: int,
    voxel_ml: float,
    pm: npt.NDArray[np.bool_] | None,
    rm: npt.NDArray[np.bool_] | None,
    spacing: tuple[float, float, float],
    tolerance_mm: float,
    policy: EmptyPolicy,
    worst: float,
    surface: SurfaceKind,
    method: DistanceMethod,
    kind: str = "label",
) -> LabelRecord:
    fp, fn = n_p - tp, n_r - tp
    tn = n_total - tp - fp - fn
    ref_empty, pred_empty = n_r == 0, n_p == 0
    substituted = False
    if ref_empty and pred_empty:
        undefined = "both_empty"
        dice = iou = NAN if policy.both_empty_dice == "nan" else 1.0
        hd = hd95 = assd = nsd = NAN
    elif ref_empty or pred_empty:
        undefined = "ref_empty" if ref_empty else "pred_empty"
        dice = iou = 0.0
        hd = hd95 = assd = worst
        substituted = not math.isnan(worst)
        nsd = 0.0
    else:
        undefined = ""
        dice = dice_from_counts(tp, n_p, n_r)
        iou = tp / (n_p + n_r - tp)
        if pm is None or rm is None:  # pragma: no cover - both non-empty implies a crop
            raise AssertionError("internal error: no crop for non-empty masks")
        sd = surface_distances(pm, rm, spacing, surface, method)
        border = surface == "border"
        hd = max(
            weighted_percentile(sd.pred_to_ref, sd.pred_weights, 100.0, border=border),
            weighted_percentile(sd.ref_to_pred, sd.ref_weights, 100.0, border=border),
        )
        hd95 = max(
            weighted_percentile(sd.pred_to_ref, sd.pred_weights, 95.0, border=border),
            weighted_percentile(sd.ref_to_pred, sd.ref_weights, 95.0, border=border),
        )
        w_sum = float(sd.pred_weights.sum() + sd.ref_weights.sum())
        assd = float(
            (np.dot(sd.pred_to_ref, sd.pred_weights) + np.dot(sd.ref_to_pred, sd.ref_weights))
            / w_sum
        )
        ok = float(
            sd.pred_weights[sd.pred_to_ref <= tolerance_mm].sum()
            + sd.ref_weights[sd.ref_to_pred <= tolerance_mm].sum()
        )
        nsd = ok / w_sum
    return LabelRecord(
        case=case,
        label=key,
        name=name,
        labels=values,
        dice=float(dice),
        iou=float(iou),
        accuracy=(tp + tn) / n_total if n_total else NAN,
        tp=int(tp),
        fp=int(fp),
        fn=int(fn),
        tn=int(tn),
        ref_voxels=int(n_r),
        pred_voxels=int(n_p),
        ref_ml=n_r * voxel_ml,
        pred_ml=n_p * voxel_ml,
        hd_mm=float(hd),
        hd95_mm=float(hd95),
        assd_mm=float(assd),
        nsd=float(nsd),
        nsd_tolerance_mm=float(tolerance_mm),
        ref_empty=ref_empty,
        pred_empty=pred_empty,
        undefined=undefined,
        distances_substituted=substituted,
        surface=surface,
        kind=kind,
    )


def both_empty_record(
    case: str,
    key: str,
    name: str,
    values: tuple[int, ...],
    n_total: int,
    tolerance_mm: float,
    policy: EmptyPolicy,
    surface: SurfaceKind = "border",
) -> LabelRecord:
    """The record of a label absent from both maps (used to complete batch tables)."""
    return _record(
        case,
        key,
        name,
        values,
        0,
        0,
        0,
        n_total,
        0.0,
        None,
        None,
        (1.0, 1.0, 1.0),
        tolerance_mm,
        policy,
        NAN,
        surface,
        "auto",
    )


__all__ = [
    "RECORD_FIELDS",
    "EmptyPolicy",
    "LabelRecord",
    "Region",
    "both_empty_record",
    "evaluate_arrays",
    "evaluate_pair",
    "parse_regions",
]
