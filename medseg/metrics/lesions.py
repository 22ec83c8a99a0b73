"""Lesion-wise scores of the BraTS 2023 challenges, for one binary structure.

Voxel Dice hides a missed small lesion behind a well segmented large one; the BraTS 2023
lesion-wise scores count lesions instead. :func:`lesion_wise_scores` follows the official code
(``rachitsaluja/BraTS-2023-Metrics``, ``get_LesionWiseScores`` / ``get_LesionWiseResults``)
step by step:

1. The reference's connected components are **merged** when they fall in one component of the
   reference dilated ``dilation`` times (default 3) with the 18-neighbour structure
   (``scipy.ndimage.generate_binary_structure(3, 2)``); each merged group is one lesion.
2. A predicted component (connected component of the prediction) **counts for a lesion** when
   it touches the lesion dilated the same way (``dilation`` iterations, 18-neighbour).
3. Per lesion, Dice and HD95 (mm; DeepMind surface distances, area-weighted surfels — medseg's
   ``surface="surfels"``, as the official code calls ``surface_distance``) against the union of
   the predicted components that count for it, whole (also their parts far from the lesion).
   A lesion with no such component is **missed**: Dice 0, HD95 374 mm (the official constant).
4. Predicted components that count for no lesion (including the small ones of step 5) are
   **false positives**.
5. Lesions of volume ``<= min_volume_mm3`` (default 50 mm³) are left out of the scores and of
   ``num_tp`` / ``num_fn`` (they stay in the per-lesion table, ``counted = False``); a
   predicted component touching only such a lesion is neither scored nor a false positive.
6. ``lesion_dice = Σ lesion Dice / (counted lesions + false positives)``,
   ``lesion_hd95_mm = (Σ lesion HD95 + 374 · false positives) / (counted lesions + false
   positives)``; with no counted lesion and no false positive, 1 and 0.

medseg adds ``detection_f1 = 2·TP / (2·TP + FP + FN)`` over the same counts (1 when all are
0, like the lesion-wise Dice) and ``connectivity`` (the official code uses 26 for the
reference, the dilated reference and the prediction; 6 or 18 may be chosen for all three).
The work is done inside bounding boxes (with a margin of ``dilation`` voxels) so a lesion
costs the size of its box, not of the image; the result equals the whole-image computation.
The surfels of each set of matched predicted components are extracted once (many lesions
touching one large predicted component share them), and the predicted-to-lesion HD95 of a
large component is found without measuring every surfel: its surfels are bucketed in cubes of
:data:`CELL_MM` mm, each cube's distances to the lesion are bounded, and only the surfels of
cubes that straddle the 95th percentile are measured exactly (:func:`_percentile_to`), so the
work grows about linearly with the number of lesions; the value is exact.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from medseg.components import check_connectivity, connected_components
from medseg.errors import ConfigError
from medseg.metrics.surface import (
    _neighbour_codes,
    _surfel_area_table,
    weighted_percentile,
)

#: HD95 (mm) of a missed lesion and of each false positive, as in the official BraTS code.
MISSED_HD95_MM = 374.0
#: The 18-neighbour structure of the official dilation.
_STRUCT18 = ndimage.generate_binary_structure(3, 2)

#: Columns of the per-lesion table (``lesions.csv``), in order.
LESION_FIELDS: tuple[str, ...] = (
    "case",
    "label",
    "name",
    "kind",
    "lesion",
    "voxels",
    "volume_mm3",
    "counted",
    "detected",
    "n_pred_components",
    "dice",
    "hd95_mm",
)

Box = tuple[slice, slice, slice]


@dataclass(frozen=True)
class LesionRecord:
    """One reference lesion (a merged group of reference components).

    ``lesion`` numbers the lesions of a case and label from 1 in the array's scan order (C
    order of the first voxel); ``voxels`` / ``volume_mm3`` its size; ``counted`` whether it
    is larger than the minimum volume (and so in the scores); ``detected`` whether a predicted
    component touches it (dilated); ``n_pred_components`` how many; ``dice`` and ``hd95_mm``
    against their union (0 and 374 mm when missed).
    """

    case: str
    label: str
    name: str
    kind: str
    lesion: int
    voxels: int
    volume_mm3: float
    counted: bool
    detected: bool
    n_pred_components: int
    dice: float
    hd95_mm: float

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: d[k] for k in LESION_FIELDS}


@dataclass(frozen=True)
class LesionWiseScores:
    """The BraTS 2023 lesion-wise scores of one structure (see the module docstring).

    ``num_tp`` / ``num_fn``: counted lesions detected / missed; ``num_fp``: predicted
    components touching no lesion; ``num_small``: lesions left out for their size;
    ``n_pred_components``: all predicted components.
    """

    lesions: tuple[LesionRecord, ...]
    num_tp: int
    num_fn: int
    num_fp: int
    num_small: int
    n_pred_components: int
    lesion_dice: float
    lesion_hd95_mm: float
    detection_f1: float


def check_lesion_options(dilation: int, min_volume_mm3: float, connectivity: int) -> None:
    """Raise :class:`ConfigError` unless ``dilation`` is an integer >= 0, the volume finite
    and >= 0 mm³ and the connectivity 6, 18 or 26."""
    if isinstance(dilation, bool) or int(dilation) != dilation or dilation < 0:
        raise ConfigError(
            f"lesion dilation: expected an integer >= 0 (iterations), found {dilation!r}"
        )
    if not (math.isfinite(min_volume_mm3) and min_volume_mm3 >= 0):
        raise ConfigError(
            f"lesion minimum volume: expected a volume >= 0 mm³, found {min_volume_mm3!r}"
        )
    check_connectivity(connectivity)


def _dilate(mask: npt.NDArray[np.bool_], iterations: int) -> npt.NDArray[np.bool_]:
    if iterations == 0:  # scipy's iterations=0 means "until nothing changes"
        return mask
    return np.asarray(ndimage.binary_dilation(mask, _STRUCT18, iterations=iterations))


def _grow(box: Sequence[slice], margin: int, shape: Sequence[int]) -> Box:
    s = [
        slice(max(b.start - margin, 0), min(b.stop + margin, n))
        for b, n in zip(box, shape, strict=True)
    ]
    return (s[0], s[1], s[2])


def _union(boxes: Sequence[Sequence[slice]]) -> Box:
    s = [slice(min(b[a].start for b in boxes), max(b[a].stop for b in boxes)) for a in range(3)]
    return (s[0], s[1], s[2])


def merged_lesions(
    ref: npt.NDArray[np.bool_], dilation: int = 3, connectivity: int = 26
) -> tuple[npt.NDArray[np.uint32], int]:
    """The reference lesions after BraTS's merging: ``uint32 (X, Y, Z)``, 0 outside the
    reference and ``1..n`` inside (one id per component of the reference dilated
    ``dilation`` times with the 18-neighbour structure), and ``n``."""
    ref = np.asarray(ref, dtype=bool)
    out = np.zeros(ref.shape, dtype=np.uint32)
    objs = ndimage.find_objects(ref.astype(np.uint8))
    if not objs or objs[0] is None:
        return out, 0
    crop = _grow(objs[0], dilation, ref.shape)
    sub = ref[crop]
    dil_cc, _ = connected_components(_dilate(sub, dilation), connectivity)
    ids = np.where(sub, dil_cc, 0)
    # Renumber 1..n in scan order of the reference voxels (every dilated component holds
    # reference voxels, so this is a bijection).
    present, first = np.unique(ids[sub], return_index=True)
    order = present[np.argsort(first, kind="stable")]
    lut = np.zeros(int(dil_cc.max()) + 1, dtype=np.uint32)
    lut[order] = np.arange(1, len(order) + 1, dtype=np.uint32)
    out[crop] = lut[ids]
    return out, len(order)


#: Edge (mm) of the cubes bucketing the surfels of a large predicted component.
CELL_MM = 8.0
#: Surfaces with fewer surfels than this are measured point by point (no cubes).
DIRECT_SURFELS = 4096


class _Surface:
    """The surfels of a mask: ``pts (N, 3)`` corner positions in mm in the image's frame,
    ``w (N,)`` their areas (mm², DeepMind's table), and lazily a KD-tree and a cube index."""

    def __init__(
        self,
        mask: npt.NDArray[np.bool_],
        offset: Sequence[int],
        spacing: tuple[float, float, float],
    ) -> None:
        code = _neighbour_codes(mask)
        flat = np.flatnonzero((code != 0) & (code != 255))
        idx = np.stack(np.unravel_index(flat, code.shape), axis=1) + np.asarray(offset)
        self.pts = idx.astype(np.float64) * np.asarray(spacing, dtype=np.float64)
        self.w = _surfel_area_table(spacing)[code.ravel()[flat]]
        self._tree: Any = None
        self._cells: tuple[npt.NDArray[Any], ...] | None = None

    def tree(self) -> Any:
        if self._tree is None:
            from scipy.spatial import cKDTree

            self._tree = cKDTree(self.pts, leafsize=32, balanced_tree=False, compact_nodes=False)
        return self._tree

    def cells(self) -> tuple[npt.NDArray[Any], ...]:
        """Surfels sorted by cube: ``(pts, w, starts, wsum, lo, hi)``, ``lo``/``hi`` the tight
        bounding box of each cube's surfels."""
        if self._cells is None:
            key = np.floor(self.pts / CELL_MM).astype(np.int64)
            _, inv = np.unique(key, axis=0, return_inverse=True)
            inv = inv.ravel()
            order = np.argsort(inv, kind="stable")
            pts, w = self.pts[order], self.w[order]
            counts = np.bincount(inv)
            starts = np.concatenate([[0], np.cumsum(counts)])
            lo = np.minimum.reduceat(pts, starts[:-1], axis=0)
            hi = np.maximum.reduceat(pts, starts[:-1], axis=0)
            self._cells = (pts, w, starts, np.bincount(inv, weights=self.w), lo, hi)
        return self._cells


def _weighted_q(
    d: npt.NDArray[np.float64], w: npt.NDArray[np.float64], base: float, total: float, q: float
) -> float:
    """DeepMind's weighted percentile of ``d`` given ``base`` weight already below them."""
    order = np.lexsort((w, d))
    cum = (base + np.cumsum(w[order])) / total
    i = int(np.searchsorted(cum, q))
    return float(d[order][min(i, d.size - 1)])


def _percentile_to(src: _Surface, target: _Surface, q: float = 0.95) -> float:
    """Weighted ``q`` percentile of the distances from every surfel of ``src`` to the nearest
    surfel of ``target`` (a small surface): exactly the value of
    :func:`~medseg.metrics.surface.weighted_percentile` over all of them.

    With ``c`` the centre and ``rho`` the radius of ``target``'s bounding sphere, a surfel at
    ``x`` lies at ``|x - c| ± rho`` from ``target``; each cube of ``src``'s surfels gets such
    bounds, which bracket the percentile, and only cubes whose bounds reach into the bracket
    are measured."""
    from scipy.spatial import cKDTree

    near = cKDTree(target.pts)
    if len(src.pts) < DIRECT_SURFELS:
        return _weighted_q(near.query(src.pts, k=1)[0], src.w, 0.0, float(np.sum(src.w)), q)
    pts, w, starts, wsum, lo, hi = src.cells()
    c = (target.pts.min(axis=0) + target.pts.max(axis=0)) / 2
    rho = float(np.max(np.linalg.norm(target.pts - c, axis=1)))
    dmin = np.linalg.norm(np.maximum(np.maximum(lo - c, c - hi), 0.0), axis=1)
    dmax = np.linalg.norm(np.maximum(np.abs(c - lo), np.abs(c - hi)), axis=1)
    low, high = np.maximum(dmin - rho, 0.0), dmax + rho
    total = float(np.sum(w))
    need = q * total

    eps = 1e-9 * (1.0 + float(np.max(high)))
    below = np.zeros(0, dtype=bool)
    base = 0.0
    # Bracket the percentile with the cube bounds, then with per-surfel bounds in the cubes
    # that straddle it (cheap: no nearest-neighbour query), then measure what still straddles.
    for level in range(2):
        p_lo, p_hi = _bracket(low, high, wsum, need - base)
        below = high < p_lo - eps
        keep = ~below & (low <= p_hi + eps)
        base += float(np.sum(wsum[below]))
        if level == 0:
            idx = np.concatenate(
                [np.arange(starts[i], starts[i + 1]) for i in np.flatnonzero(keep)]
            )
            e = np.linalg.norm(pts[idx] - c, axis=1)
            low, high, wsum = np.maximum(e - rho, 0.0), e + rho, w[idx]
        else:
            idx = idx[keep]
    return _weighted_q(near.query(pts[idx], k=1)[0], w[idx], base, total, q)


def _bracket(
    low: npt.NDArray[np.float64],
    high: npt.NDArray[np.float64],
    weight: npt.NDArray[np.float64],
    need: float,
    bins: int = 1024,
) -> tuple[float, float]:
    """``(p_lo, p_hi)`` bracketing the weighted ``need`` point of values known to lie between
    their ``low`` and ``high`` bounds: ``p_lo`` a lower bound of where the weight of ``low``
    reaches ``need``, ``p_hi`` an upper bound of where that of ``high`` does (histograms of
    ``bins`` bins: linear time, no sorting; the bracket is wider by one bin at most)."""
    top = float(np.max(high)) if high.size else 0.0
    edges = np.linspace(0.0, top * (1 + 1e-9) + 1e-9, bins + 1)

    def reach(bound: npt.NDArray[np.float64]) -> int:
        cum = np.cumsum(np.histogram(bound, bins=edges, weights=weight)[0])
        return min(int(np.searchsorted(cum, need)), bins - 1)

    return float(edges[reach(low)]), float(edges[reach(high) + 1])


def lesion_wise_scores(
    pred: npt.NDArray[Any],
    ref: npt.NDArray[Any],
    spacing: Sequence[float],
    *,
    dilation: int = 3,
    min_volume_mm3: float = 50.0,
    connectivity: int = 26,
    voxel_volume_mm3: float | None = None,
    case: str = "",
    label: str = "",
    name: str = "",
    kind: str = "label",
) -> LesionWiseScores:
    """BraTS 2023 lesion-wise scores of a binary prediction against a binary reference.

    Args:
        pred, ref: 3-D masks of one shape (non-zero = structure), voxel index order.
        spacing: mm per array axis (for HD95 and, by default, the lesion volumes).
        dilation: dilation iterations (18-neighbour) for merging and for matching (>= 0).
        min_volume_mm3: lesions of this volume or less are left out of the scores.
        connectivity: of the components (6, 18 or 26).
        voxel_volume_mm3: volume of a voxel (default: the product of the spacing).
        case, label, name, kind: copied into the per-lesion records.
    """
    check_lesion_options(dilation, min_volume_mm3, connectivity)
    p = np.asarray(pred) != 0
    r = np.asarray(ref) != 0
    if p.shape != r.shape or p.ndim != 3:
        raise ValueError(f"expected two 3-D masks of one shape, found {p.shape} and {r.shape}")
    vox_mm3 = float(np.prod(spacing)) if voxel_volume_mm3 is None else float(voxel_volume_mm3)

    lesions, n_les = merged_lesions(r, dilation, connectivity)
    pred_cc, n_pred = connected_components(p, connectivity)
    les_boxes = ndimage.find_objects(lesions) if n_les else []
    pred_boxes = ndimage.find_objects(pred_cc) if n_pred else []
    sp = (float(spacing[0]), float(spacing[1]), float(spacing[2]))
    sizes = np.bincount(pred_cc.ravel(), minlength=n_pred + 1) if n_pred else np.zeros(1)
    surfaces: dict[tuple[int, ...], _Surface] = {}  # matched component sets, extracted once
    matched: set[int] = set()
    records: list[LesionRecord] = []
    for lid in range(1, n_les + 1):
        box = les_boxes[lid - 1]
        assert box is not None  # every id 1..n is present by construction
        crop = _grow(box, dilation, r.shape)
        les = lesions[crop] == lid
        touching = np.unique(pred_cc[crop][_dilate(les, dilation)])
        comps = tuple(int(c) for c in touching if c != 0)
        matched.update(comps)
        voxels = int(np.count_nonzero(les))
        volume = voxels * vox_mm3
        if comps:
            # Dice and HD95 against the whole matched components (their surfels shared by
            # every lesion they touch); the lesion lies in its crop, so the overlap does too.
            inter = int(np.count_nonzero(les & np.isin(pred_cc[crop], comps)))
            dice = 2.0 * inter / (int(sizes[list(comps)].sum()) + voxels)
            if comps not in surfaces:
                region = _union([pred_boxes[c - 1] for c in comps])
                start = [sl.start for sl in region]
                surfaces[comps] = _Surface(np.isin(pred_cc[region], comps), start, sp)
            pred_s = surfaces[comps]
            les_s = _Surface(les, [sl.start for sl in crop], sp)
            ref_to_pred = pred_s.tree().query(les_s.pts, k=1)[0]
            hd95 = max(
                _percentile_to(pred_s, les_s),
                weighted_percentile(ref_to_pred, les_s.w, 95.0, border=False),
            )
        else:
            dice, hd95 = 0.0, MISSED_HD95_MM
        records.append(
            LesionRecord(
                case=case,
                label=label,
                name=name,
                kind=kind,
                lesion=lid,
                voxels=voxels,
                volume_mm3=volume,
                counted=volume > min_volume_mm3,
                detected=bool(comps),
                n_pred_components=len(comps),
                dice=float(dice),
                hd95_mm=float(hd95),
            )
        )
    counted = [x for x in records if x.counted]
    num_tp = sum(x.detected for x in counted)
    num_fn = len(counted) - num_tp
    num_fp = n_pred - len(matched)
    denom = len(counted) + num_fp
    if denom:
        lw_dice = sum(x.dice for x in counted) / denom
        lw_hd95 = (sum(x.hd95_mm for x in counted) + MISSED_HD95_MM * num_fp) / denom
    else:
        lw_dice, lw_hd95 = 1.0, 0.0
    f1_denom = 2 * num_tp + num_fp + num_fn
    return LesionWiseScores(
        lesions=tuple(records),
        num_tp=num_tp,
        num_fn=num_fn,
        num_fp=num_fp,
        num_small=len(records) - len(counted),
        n_pred_components=n_pred,
        lesion_dice=float(lw_dice),
        lesion_hd95_mm=float(lw_hd95),
        detection_f1=2.0 * num_tp / f1_denom if f1_denom else 1.0,
    )


__all__ = [
    "LESION_FIELDS",
    "MISSED_HD95_MM",
    "LesionRecord",
    "LesionWiseScores",
    "check_lesion_options",
    "lesion_wise_scores",
    "merged_lesions",
]
