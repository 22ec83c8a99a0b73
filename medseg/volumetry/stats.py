"""Per-label volumetry of one label map (and optionally its image): pure functions, frozen
records.

Everything is computed from one pass over the voxels and then per label inside the label's
bounding box only (no full-size mask per label):

1. ``scipy.ndimage.find_objects`` — one pass over the label array — gives every label's
   bounding box (in voxel indices).
2. Per label, inside its box: the mask ``box == v`` gives the voxel count, the centroid, the
   26-connected components (:func:`medseg.components.connected_components`), the points
   needed for the convex hull (the first and last voxel of every column of the mask), and,
   with an image, the intensities under the mask (mean, median, std, min, max, p5, p95).

Definitions (array axes in voxel index order ``(i, j, k)``; world space RAS+ in mm):

* ``volume_mm3 = voxels × |det(A)|`` where ``A`` is the affine's 3×3 part (the product of the
  spacings for an orthogonal grid; exact for sheared grids too); ``volume_ml = volume_mm3 /
  1000``.
* ``centroid`` — the mean of the label's voxel-centre positions, in RAS+ mm.
* ``bbox`` — the axis-aligned box in RAS+ mm enclosing the label's voxel centres (exact for
  oblique grids: the extremes of a linear function over a point set lie on its convex hull).
* ``diameter_mm`` — the largest distance between two voxel centres of the label (exact:
  maximum pairwise distance over the vertices of the convex hull of the voxel centres, in mm,
  so spacing and oblique directions are respected). One voxel has diameter 0; the label's
  edge-to-edge extent is up to one voxel longer.
* ``components`` — number of 26-connected components (face, edge or corner neighbours): for a
  lesion label, the lesion count; ``component_volumes_ml`` their volumes (largest first; the
  CSV has the largest, median and smallest, the per-case JSON every one).
* ``touches_border`` — some voxel of the label lies on the outermost layer of the image grid,
  so the structure may extend beyond the scan and its volume may be incomplete. The measured
  volume is reported all the same. ``border_faces`` names the image faces touched by the
  anatomical direction they face (``"S"`` = the superior end of the scan, ...).
* intensities — over the label's voxels, in the image's units: arithmetic mean, population
  standard deviation (``ddof=0``), minimum, maximum and the 5th/50th/95th percentiles with
  linear interpolation (numpy's default, Hyndman–Fan type 7; the median is the 50th).
* A label with no voxels gets a record with ``absent=True``, 0 voxels and volume 0; its
  geometry and intensities are NaN (undefined), its component count 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from medseg.components import component_sizes, connected_components
from medseg.errors import ConfigError, InvalidVolumeError
from medseg.metrics.boxes import label_boxes
from medseg.volume import LabelMap, Volume
from medseg.volumetry.diameter import line_extremes, max_pairwise_distance

#: Connectivity used for the component count (26: face, edge or corner neighbours).
CONNECTIVITY = 26
#: Percentiles reported with an image.
PERCENTILES: tuple[float, float, float] = (5.0, 50.0, 95.0)

NAN3: tuple[float, float, float] = (math.nan, math.nan, math.nan)


@dataclass(frozen=True)
class Intensity:
    """Image values inside one label, in the image's units (``units``; ``""`` unknown)."""

    mean: float
    median: float
    std: float
    min: float
    max: float
    p5: float
    p95: float
    units: str = ""

    @classmethod
    def undefined(cls, units: str = "") -> Intensity:
        n = math.nan
        return cls(n, n, n, n, n, n, n, units)


@dataclass(frozen=True)
class LabelStats:
    """Volumetry of one label of one case.

    Geometry is in RAS+ millimetres (``centroid_mm``, ``bbox_min_mm``, ``bbox_max_mm``: x, y,
    z), ``bbox_index`` in voxel indices ``((i0, i1), (j0, j1), (k0, k1))`` inclusive. NaN
    marks undefined values (absent label; intensities without an image).
    """

    case: str
    label: int
    name: str
    absent: bool
    voxels: int
    volume_mm3: float
    volume_ml: float
    components: int
    #: volume of each connected component (the lesions of a lesion label), mL, largest first
    component_volumes_ml: tuple[float, ...]
    touches_border: bool
    border_faces: tuple[str, ...]
    diameter_mm: float
    centroid_mm: tuple[float, float, float]
    bbox_min_mm: tuple[float, float, float]
    bbox_max_mm: tuple[float, float, float]
    bbox_index: tuple[tuple[int, int], ...] | None
    intensity: Intensity | None = None
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def as_dict(self) -> dict[str, Any]:
        """Flat dict in :data:`VOLUME_FIELDS` order (the columns of ``volumes.csv``)."""
        it = self.intensity or Intensity.undefined()
        d: dict[str, Any] = {
            "case": self.case,
            "label": self.label,
            "name": self.name,
            "absent": self.absent,
            "voxels": self.voxels,
            "volume_mm3": self.volume_mm3,
            "volume_ml": self.volume_ml,
            "components": self.components,
            "largest_component_ml": _pick(self.component_volumes_ml, 0),
            "median_component_ml": (
                float(np.median(self.component_volumes_ml))
                if self.component_volumes_ml
                else math.nan
            ),
            "smallest_component_ml": _pick(self.component_volumes_ml, -1),
            "touches_border": self.touches_border,
            "border_faces": " ".join(self.border_faces),
            "diameter_mm": self.diameter_mm,
        }
        for axis, c in zip("xyz", self.centroid_mm, strict=True):
            d[f"centroid_{axis}_mm"] = c
        for axis, lo, hi in zip("xyz", self.bbox_min_mm, self.bbox_max_mm, strict=True):
            d[f"bbox_{axis}_min_mm"] = lo
            d[f"bbox_{axis}_max_mm"] = hi
        d["intensity_units"] = it.units if self.intensity is not None else ""
        for key in INTENSITY_KEYS:
            d[f"intensity_{key}"] = getattr(it, key)
        return d


def _pick(values: tuple[float, ...], i: int) -> float:
    return values[i] if values else math.nan


INTENSITY_KEYS: tuple[str, ...] = ("mean", "median", "std", "min", "max", "p5", "p95")
VOLUME_FIELDS: tuple[str, ...] = (
    "case",
    "label",
    "name",
    "absent",
    "voxels",
    "volume_mm3",
    "volume_ml",
    "components",
    "largest_component_ml",
    "median_component_ml",
    "smallest_component_ml",
    "touches_border",
    "border_faces",
    "diameter_mm",
    "centroid_x_mm",
    "centroid_y_mm",
    "centroid_z_mm",
    "bbox_x_min_mm",
    "bbox_x_max_mm",
    "bbox_y_min_mm",
    "bbox_y_max_mm",
    "bbox_z_min_mm",
    "bbox_z_max_mm",
    "intensity_units",
    *(f"intensity_{k}" for k in INTENSITY_KEYS),
)


def absent_record(
    case: str, label: int, name: str, with_image: bool, units: str = ""
) -> LabelStats:
    """The record of a label with no voxels (``absent=True``, 0 voxels, geometry NaN)."""
    return LabelStats(
        case=case,
        label=int(label),
        name=name,
        absent=True,
        voxels=0,
        volume_mm3=0.0,
        volume_ml=0.0,
        components=0,
        component_volumes_ml=(),
        touches_border=False,
        border_faces=(),
        diameter_mm=math.nan,
        centroid_mm=NAN3,
        bbox_min_mm=NAN3,
        bbox_max_mm=NAN3,
        bbox_index=None,
        intensity=Intensity.undefined(units) if with_image else None,
    )


def _face_letters(orientation: str) -> list[tuple[str, str]]:
    """Per array axis, the anatomical letters of its low (index 0) and high faces."""
    opposite = {"R": "L", "L": "R", "A": "P", "P": "A", "S": "I", "I": "S"}
    return [(opposite[c], c) for c in orientation]


# --- the statistics ------------------------------------------------------------------------


def _storage_view(
    labels: LabelMap,
) -> tuple[npt.NDArray[Any], tuple[int, int, int]]:
    """The label array as a C-ordered array and the permutation of its axes (F-ordered arrays
    are read through their transpose, so no copy is made)."""
    arr = labels.array
    if arr.flags.c_contiguous:
        return arr, (0, 1, 2)
    if arr.flags.f_contiguous:
        return arr.T, (2, 1, 0)
    return np.ascontiguousarray(arr), (0, 1, 2)


def _find_boxes(arr: npt.NDArray[Any], source: Any) -> list[tuple[slice, ...] | None]:
    if arr.size == 0:
        return []
    if np.issubdtype(arr.dtype, np.signedinteger):
        lo = int(arr.min())
        if lo < 0:
            raise InvalidVolumeError(
                source, f"label map has negative values (min {lo}); expected labels >= 0"
            )
    hi = int(arr.max())
    if hi <= 0:
        return []
    if hi > np.iinfo(np.int32).max:
        raise InvalidVolumeError(source, f"label value {hi} too large; expected < 2**31")
    return label_boxes(arr, hi)


def label_statistics(
    labels: LabelMap,
    image: Volume | None = None,
    *,
    case: str = "",
    label_names: Mapping[int, str] | None = None,
    include: Iterable[int] = (),
) -> list[LabelStats]:
    """Volumetry of every label of ``labels`` (and of the labels in ``include`` and
    ``label_names``, as absent records when they have no voxels), ascending by value.

    Args:
        labels: the label map, array ``(I, J, K)`` in voxel index order, RAS+ affine in mm.
        image: optional image on the same grid (checked: :class:`GeometryMismatchError`
            otherwise); intensities are reported in its ``meta.units`` (e.g. ``"HU"``).
        case: case name copied into the records.
        label_names: names for label values; default ``labels.label_names``, then
            ``label_<value>``. Every value named here gets a record.
        include: further label values that get a record even when absent (e.g. labels seen in
            other cases of a batch).
    """
    if image is not None:
        image.check_same_grid(labels)
    names: dict[int, str] = {**labels.label_names, **dict(label_names or {})}
    arr, perm = _storage_view(labels)
    boxes = _find_boxes(arr, labels.source)
    present = {v + 1 for v, b in enumerate(boxes) if b is not None}
    # A name for 0 is the background's (label-name files often list it): not a structure.
    wanted = sorted(present | {int(v) for v in include} | ({int(v) for v in names} - {0}))
    if any(v <= 0 for v in wanted):
        raise ConfigError(
            f"label values: expected positive values (0 is background), found {wanted[0]}"
        )

    affine = labels.affine
    a_storage = affine[:3, :3][:, list(perm)]  # columns for the storage axes
    origin = affine[:3, 3]
    voxel_mm3 = float(abs(np.linalg.det(affine[:3, :3])))
    faces = _face_letters(labels.orientation)
    shape = arr.shape
    img = None
    units = ""
    if image is not None:
        img = image.array.transpose(perm)
        units = image.meta.units or ""

    out: list[LabelStats] = []
    for v in wanted:
        name = names.get(v, f"label_{v}")
        if v not in present:
            out.append(absent_record(case, v, name, image is not None, units))
            continue
        box = boxes[v - 1]
        assert box is not None
        out.append(
            _one_label(
                arr,
                img,
                box,
                v,
                name,
                case,
                a_storage,
                origin,
                voxel_mm3,
                perm,
                faces,
                shape,
                units,
            )
        )
    return out


def _one_label(
    arr: npt.NDArray[Any],
    img: npt.NDArray[Any] | None,
    box: tuple[slice, ...],
    v: int,
    name: str,
    case: str,
    a_storage: npt.NDArray[np.float64],
    origin: npt.NDArray[np.float64],
    voxel_mm3: float,
    perm: tuple[int, int, int],
    faces: list[tuple[str, str]],
    shape: tuple[int, ...],
    units: str,
) -> LabelStats:
    mask = np.equal(arr[box], v, order="C")
    flat = np.flatnonzero(mask)
    n = int(flat.size)
    _, ny, nz = mask.shape
    lo = np.array([s.start for s in box], dtype=np.int64)

    # Centroid from exact integer sums of the storage indices.
    col = flat // nz  # (i * ny + j) of every voxel, non-decreasing
    k = flat - col * nz
    i = col // ny
    j = col - i * ny
    sums = np.array([i.sum(), j.sum(), k.sum()], dtype=np.float64)
    centroid_idx = lo + sums / n
    centroid = a_storage @ centroid_idx + origin

    # Hull candidates: the first and last voxel of every (i, j) column (every other voxel lies
    # on the segment between two of them), then of every line along j and along i among
    # those: the hull's vertices, and so every extreme point, are among them.
    starts = np.flatnonzero(np.diff(col)) + 1
    first = np.concatenate(([0], starts))
    last = np.concatenate((starts - 1, [n - 1]))
    cand = np.unique(np.concatenate((first, last)))
    cidx = np.stack([i[cand], j[cand], k[cand]], axis=1)
    for axis in (0, 1):  # the same along the other two axes, among the candidates
        cidx = cidx[line_extremes(cidx, axis)]
    cidx = cidx + lo
    pts = cidx @ a_storage.T + origin
    diameter = max_pairwise_distance(pts)
    bmin = pts.min(axis=0)
    bmax = pts.max(axis=0)

    comps, n_comp = connected_components(mask, CONNECTIVITY)
    sizes = np.sort(component_sizes(comps, n_comp))[::-1]

    touched: list[str] = []
    bbox_index: list[tuple[int, int]] = [(0, 0)] * 3
    for s_axis, sl in enumerate(box):
        o_axis = perm[s_axis]
        bbox_index[o_axis] = (int(sl.start), int(sl.stop) - 1)
        if sl.start == 0:
            touched.append(faces[o_axis][0])
        if sl.stop == shape[s_axis]:
            touched.append(faces[o_axis][1])

    intensity = None
    if img is not None:
        intensity = _intensity(img[box][mask], units)
    return LabelStats(
        case=case,
        label=v,
        name=name,
        absent=False,
        voxels=n,
        volume_mm3=n * voxel_mm3,
        volume_ml=n * voxel_mm3 / 1000.0,
        components=int(n_comp),
        component_volumes_ml=tuple(float(c) * voxel_mm3 / 1000.0 for c in sizes),
        touches_border=bool(touched),
        border_faces=tuple(touched),
        diameter_mm=diameter,
        centroid_mm=(float(centroid[0]), float(centroid[1]), float(centroid[2])),
        bbox_min_mm=(float(bmin[0]), float(bmin[1]), float(bmin[2])),
        bbox_max_mm=(float(bmax[0]), float(bmax[1]), float(bmax[2])),
        bbox_index=tuple(bbox_index),
        intensity=intensity,
    )


def _intensity(values: npt.NDArray[Any], units: str) -> Intensity:
    vals = np.asarray(values)
    if vals.dtype.kind not in "f":
        vals = vals.astype(np.float64)
    p5, p50, p95 = (float(x) for x in np.percentile(vals, PERCENTILES))
    return Intensity(
        mean=float(np.mean(vals, dtype=np.float64)),
        median=p50,
        std=float(np.std(vals, dtype=np.float64)),
        min=float(vals.min()),
        max=float(vals.max()),
        p5=p5,
        p95=p95,
        units=units,
    )


__all__ = [
    "CONNECTIVITY",
    "INTENSITY_KEYS",
    "PERCENTILES",
    "VOLUME_FIELDS",
    "Intensity",
    "LabelStats",
    "absent_record",
    "label_statistics",
]
