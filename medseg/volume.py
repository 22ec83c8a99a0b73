"""The :class:`Volume` and :class:`LabelMap` types: voxels plus exact geometry.

Conventions (the same everywhere in medseg)
-------------------------------------------
* **Array axis order** is voxel index order ``(i, j, k)``, as nibabel returns a NIfTI file:
  ``array[i, j, k]``. For a DICOM series ``i`` runs along a row (column index), ``j`` down the
  columns (row index) and ``k`` along the slice normal.
* **World space is RAS+**, the NIfTI/nibabel/MONAI convention: +x points to the patient's
  Right, +y Anterior, +z Superior, in millimetres. DICOM and ITK use LPS+; the readers and writers
  for those formats convert (negate x and y) at the edge, nowhere else.
* **Affine** is the 4×4 matrix mapping ``(i, j, k, 1)`` to RAS+ world coordinates in mm.
  ``spacing`` is the length of its first three columns, ``direction`` the unit columns,
  ``origin`` the world position of the centre of voxel ``(0, 0, 0)``.
* **Orientation codes** (``"RAS"``, ``"LPS"``, ...) name, for each array axis, the anatomical
  direction the axis *points to* as its index grows (nibabel's ``aff2axcodes``). A standard
  axial DICOM series stored as read is ``"LPS"``.

Two volumes are combined only after :meth:`Volume.check_same_grid`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from medseg.errors import GeometryMismatchError, InvalidVolumeError

#: Default tolerance (mm) when comparing two grids' affines.
GRID_ATOL_MM = 1e-4

#: The LPS+ <-> RAS+ flip of world coordinates (x and y negated; its own inverse), applied to
#: affines at the DICOM/ITK file edges only: ``affine_ras = LPS_TO_RAS @ affine_lps``.
LPS_TO_RAS: npt.NDArray[np.float64] = np.diag([-1.0, -1.0, 1.0, 1.0])
LPS_TO_RAS.setflags(write=False)

_AXIS_LETTERS = (("L", "R"), ("P", "A"), ("I", "S"))


@dataclass(frozen=True)
class VolumeMeta:
    """Non-identifying metadata carried with a volume.

    Patient names, IDs and birth dates are never stored here.
    """

    modality: str | None = None
    series_description: str | None = None
    series_uid: str | None = None
    rescale_slope: float | None = None
    rescale_intercept: float | None = None
    units: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    #: DICOM StudyInstanceUID and FrameOfReferenceUID of a volume read from DICOM (a series
    #: or a SEG); ``None`` for other formats. See :func:`check_same_frame_of_reference`.
    study_uid: str | None = None
    frame_of_reference_uid: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "modality": self.modality,
            "series_description": self.series_description,
            "series_uid": self.series_uid,
            "rescale_slope": self.rescale_slope,
            "rescale_intercept": self.rescale_intercept,
            "units": self.units,
            "study_uid": self.study_uid,
            "frame_of_reference_uid": self.frame_of_reference_uid,
        }
        out.update(dict(self.extra))
        return {k: v for k, v in out.items() if v is not None}


def check_same_frame_of_reference(
    scan: Volume, other: Volume, *, allow_other_frame_of_reference: bool = False
) -> None:
    """Refuse to pair two DICOM-derived volumes of different studies or patient coordinate
    systems (e.g. a segmentation measured against another patient's scan of the same
    geometry, which the grid check cannot see).

    Compares ``meta.frame_of_reference_uid`` and ``meta.study_uid`` where both volumes record
    them (read from DICOM series or DICOM SEG); a volume from a format without them (NIfTI,
    NRRD, ...) is not checked.

    Raises:
        GeometryMismatchError: naming both sources and both differing UIDs, unless
            ``allow_other_frame_of_reference``.
    """
    if allow_other_frame_of_reference:
        return
    differ = [
        f"{what} {getattr(other.meta, attr)} vs {getattr(scan.meta, attr)}"
        for attr, what in (
            ("frame_of_reference_uid", "Frame of Reference UID"),
            ("study_uid", "Study Instance UID"),
        )
        if getattr(other.meta, attr)
        and getattr(scan.meta, attr)
        and getattr(other.meta, attr) != getattr(scan.meta, attr)
    ]
    if differ:
        raise GeometryMismatchError(
            f"{other.name}: not from the same DICOM study and frame of reference as "
            f"{scan.name} ({'; '.join(differ)}): a segmentation is measured only against "
            "the scan it belongs to (another patient or session?); set "
            "allow_other_frame_of_reference to pair them anyway"
        )


def add_warning(extra: dict[str, Any], message: str) -> None:
    """Record ``message`` (which names the file and what was assumed or found) in a volume's
    ``extra["warnings"]`` list and log it as a warning (``medseg.io``)."""
    warnings = list(extra.get("warnings", ()))
    warnings.append(message)
    extra["warnings"] = warnings
    logging.getLogger("medseg.io").warning("%s", message)


def affine_from_geometry(
    spacing: npt.ArrayLike, origin: npt.ArrayLike, direction: npt.ArrayLike | None = None
) -> npt.NDArray[np.float64]:
    """Build a 4×4 RAS+ affine from spacing (mm, array axis order), origin (RAS+ mm) and a
    3×3 direction matrix whose *columns* are the unit world directions of the array axes."""
    sp = np.asarray(spacing, dtype=np.float64).reshape(3)
    if np.any(sp <= 0) or not np.all(np.isfinite(sp)):
        raise ValueError(f"spacing must be positive and finite, got {tuple(sp)}")
    d = np.eye(3) if direction is None else np.asarray(direction, dtype=np.float64).reshape(3, 3)
    aff = np.eye(4)
    aff[:3, :3] = d * sp[None, :]
    aff[:3, 3] = np.asarray(origin, dtype=np.float64).reshape(3)
    return aff


def orientation_code(affine: npt.ArrayLike) -> str:
    """Three-letter code of the directions the array axes point to (``"RAS"``, ``"LPS"``, ...)."""
    a = np.asarray(affine, dtype=np.float64)[:3, :3]
    norms = np.linalg.norm(a, axis=0)
    d = a / np.where(norms > 0, norms, 1.0)
    letters = []
    used: set[int] = set()
    # Greedy assignment of the dominant world axis per array axis, largest component first.
    order = np.argsort(-np.max(np.abs(d), axis=0))
    assigned: dict[int, str] = {}
    for col in order:
        comps = np.abs(d[:, col]).copy()
        for u in used:
            comps[u] = -1.0
        w = int(np.argmax(comps))
        used.add(w)
        assigned[int(col)] = _AXIS_LETTERS[w][1 if d[w, col] > 0 else 0]
    for col in range(3):
        letters.append(assigned[col])
    return "".join(letters)


class Volume:
    """A 3-D voxel array with its geometry.

    Args:
        array: voxel data, shape ``(I, J, K)`` in voxel index order (see module docstring).
        affine: 4×4 voxel-to-RAS+ (mm) matrix.
        source: where the data came from (file or folder), used in error messages.
        meta: non-identifying metadata.
    """

    __slots__ = ("_affine", "array", "meta", "source")

    def __init__(
        self,
        array: npt.NDArray[Any],
        affine: npt.ArrayLike,
        source: str | Path | None = None,
        meta: VolumeMeta | None = None,
    ) -> None:
        arr = np.asarray(array)
        if arr.ndim != 3:
            raise InvalidVolumeError(
                source, f"expected a 3-D voxel array, found {arr.ndim}-D with shape {arr.shape}"
            )
        if 0 in arr.shape:
            raise InvalidVolumeError(
                source,
                f"shape {arr.shape} has a zero-length axis; expected at least one voxel along "
                "each axis",
            )
        if arr.dtype.kind not in "biuf":
            what = "complex-valued" if arr.dtype.kind == "c" else f"non-numeric ({arr.dtype})"
            raise InvalidVolumeError(
                source, f"{what} voxels ({arr.dtype}); expected real scalar values"
            )
        aff = np.asarray(affine, dtype=np.float64)
        if aff.shape != (4, 4):
            raise InvalidVolumeError(source, f"expected a 4x4 affine, found shape {aff.shape}")
        if not np.all(np.isfinite(aff)) or abs(np.linalg.det(aff[:3, :3])) < 1e-12:
            rows = "; ".join(" ".join(f"{v:.6g}" for v in row) for row in aff[:3])
            raise InvalidVolumeError(
                source,
                f"affine is singular or not finite (rows: {rows}); expected an invertible "
                "voxel-to-world matrix",
            )
        self.array = arr
        self._affine = aff.copy()
        self._affine.flags.writeable = False
        self.source = None if source is None else Path(source)
        self.meta = meta if meta is not None else VolumeMeta()

    # --- geometry -------------------------------------------------------------------------
    @property
    def affine(self) -> npt.NDArray[np.float64]:
        """4×4 voxel-index → RAS+ (mm) matrix (read-only)."""
        return self._affine

    @property
    def shape(self) -> tuple[int, int, int]:
        s = self.array.shape
        return (int(s[0]), int(s[1]), int(s[2]))

    @property
    def dtype(self) -> np.dtype[Any]:
        return self.array.dtype

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along each array axis."""
        sp = np.linalg.norm(self._affine[:3, :3], axis=0)
        return (float(sp[0]), float(sp[1]), float(sp[2]))

    @property
    def origin(self) -> tuple[float, float, float]:
        """RAS+ position (mm) of the centre of voxel (0, 0, 0)."""
        o = self._affine[:3, 3]
        return (float(o[0]), float(o[1]), float(o[2]))

    @property
    def direction(self) -> npt.NDArray[np.float64]:
        """3×3 matrix whose columns are the unit RAS+ directions of the array axes."""
        result: npt.NDArray[np.float64] = self._affine[:3, :3] / np.asarray(self.spacing)[None, :]
        return result

    @property
    def orientation(self) -> str:
        """Orientation code, e.g. ``"RAS"`` or ``"LPS"`` (the directions the axes point to)."""
        return orientation_code(self._affine)

    @property
    def voxel_volume_ml(self) -> float:
        """Volume of one voxel in millilitres (|det| of the affine's 3×3 part, mm³ / 1000)."""
        return float(abs(np.linalg.det(self._affine[:3, :3])) / 1000.0)

    def affine_lps(self) -> npt.NDArray[np.float64]:
        """The affine in DICOM/ITK LPS+ world coordinates."""
        return LPS_TO_RAS @ self._affine

    def voxel_to_world(self, ijk: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Map voxel indices, shape ``(..., 3)``, to RAS+ mm, shape ``(..., 3)``."""
        p = np.asarray(ijk, dtype=np.float64)
        return p @ self._affine[:3, :3].T + self._affine[:3, 3]

    def world_to_voxel(self, xyz: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Map RAS+ mm, shape ``(..., 3)``, to (fractional) voxel indices."""
        inv = np.linalg.inv(self._affine)
        p = np.asarray(xyz, dtype=np.float64)
        result: npt.NDArray[np.float64] = p @ inv[:3, :3].T + inv[:3, 3]
        return result

    @property
    def name(self) -> str:
        return str(self.source) if self.source is not None else "<in-memory volume>"

    def same_grid(self, other: Volume, atol: float = GRID_ATOL_MM) -> bool:
        """True when both volumes have the same shape and affines equal within ``atol`` mm."""
        return self.shape == other.shape and bool(
            np.allclose(self._affine, other.affine, rtol=0.0, atol=atol)
        )

    def check_same_grid(self, other: Volume, atol: float = GRID_ATOL_MM) -> None:
        """Raise :class:`GeometryMismatchError` naming both sources unless grids match."""
        if self.shape != other.shape:
            raise GeometryMismatchError(
                f"{other.name}: shape {other.shape} does not match {self.name} {self.shape}"
            )
        if not np.allclose(self._affine, other.affine, rtol=0.0, atol=atol):
            diff = float(np.max(np.abs(self._affine - other.affine)))
            raise GeometryMismatchError(
                f"{other.name}: affine differs from {self.name} by up to {diff:.6g} mm "
                f"(tolerance {atol:g} mm)\n"
                f"{other.name}:\n{np.array2string(other.affine, precision=5)}\n"
                f"{self.name}:\n{np.array2string(self._affine, precision=5)}"
            )

    # --- construction ---------------------------------------------------------------------
    @classmethod
    def from_geometry(
        cls,
        array: npt.NDArray[Any],
        spacing: npt.ArrayLike,
        origin: npt.ArrayLike = (0.0, 0.0, 0.0),
        direction: npt.ArrayLike | None = None,
        source: str | Path | None = None,
        meta: VolumeMeta | None = None,
    ) -> Volume:
        """Build from spacing (mm), origin (RAS+ mm) and direction (3×3, columns = axes)."""
        return cls(array, affine_from_geometry(spacing, origin, direction), source, meta)

    def with_array(self, array: npt.NDArray[Any], source: str | Path | None = None) -> Volume:
        """A volume with new voxels on the same grid (same shape required)."""
        arr = np.asarray(array)
        if arr.shape != self.shape:
            raise GeometryMismatchError(
                f"{self.name}: new array shape {arr.shape} does not match grid {self.shape}"
            )
        return Volume(arr, self._affine, source if source is not None else self.source, self.meta)

    def check_finite(self) -> None:
        """Raise :class:`InvalidVolumeError` if any voxel is NaN or infinite."""
        if np.issubdtype(self.array.dtype, np.floating):
            bad = ~np.isfinite(self.array)
            n = int(np.count_nonzero(bad))
            if n:
                first = tuple(int(v) for v in np.argwhere(bad)[0])
                raise InvalidVolumeError(
                    self.source,
                    f"{n} NaN or infinite voxel(s) found (first at index {first}); "
                    "expected finite values",
                )

    def __repr__(self) -> str:
        sp = ", ".join(f"{s:.4g}" for s in self.spacing)
        return (
            f"{type(self).__name__}(shape={self.shape}, dtype={self.dtype}, spacing=({sp}) mm, "
            f"orientation={self.orientation}, source={self.name!r})"
        )


class LabelMap(Volume):
    """An integer-valued :class:`Volume` with label names (``{value: name}``, 0 = background).

    Label values are >= 0 (negative values are refused). Float arrays are accepted only when
    every value is integral (some public datasets store masks as float); they are converted to
    the smallest fitting integer type.
    """

    __slots__ = ("label_names",)

    def __init__(
        self,
        array: npt.NDArray[Any],
        affine: npt.ArrayLike,
        source: str | Path | None = None,
        meta: VolumeMeta | None = None,
        label_names: Mapping[int, str] | None = None,
    ) -> None:
        arr = _as_integer_labels(np.asarray(array), source)
        super().__init__(arr, affine, source, meta)
        self.label_names: dict[int, str] = {int(k): str(v) for k, v in (label_names or {}).items()}

    @classmethod
    def from_volume(cls, volume: Volume, label_names: Mapping[int, str] | None = None) -> LabelMap:
        """Interpret a volume's voxels as labels (refusing non-integral values)."""
        return cls(volume.array, volume.affine, volume.source, volume.meta, label_names)

    def with_array(self, array: npt.NDArray[Any], source: str | Path | None = None) -> LabelMap:
        arr = np.asarray(array)
        if arr.shape != self.shape:
            raise GeometryMismatchError(
                f"{self.name}: new array shape {arr.shape} does not match grid {self.shape}"
            )
        return LabelMap(
            arr,
            self.affine,
            source if source is not None else self.source,
            self.meta,
            self.label_names,
        )

    def labels_present(self) -> list[int]:
        """Sorted non-zero label values present in the array."""
        return [int(v) for v in np.unique(self.array) if v != 0]

    def name_of(self, label: int) -> str:
        return self.label_names.get(int(label), f"label_{int(label)}")


def _as_integer_labels(arr: npt.NDArray[Any], source: str | Path | None) -> npt.NDArray[Any]:
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8)
    if np.issubdtype(arr.dtype, np.signedinteger) and arr.size and int(arr.min()) < 0:
        n = int(np.count_nonzero(arr < 0))
        raise InvalidVolumeError(
            source,
            f"label map has negative values (min {int(arr.min())}, {n} voxels); expected labels "
            ">= 0 (0 = background)",
        )
    if np.issubdtype(arr.dtype, np.integer):
        return arr
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)):
            raise InvalidVolumeError(source, "label map contains NaN or infinite values")
        rounded = np.rint(arr)
        if rounded.size and float(rounded.min()) < 0:
            raise InvalidVolumeError(
                source,
                f"label map has negative values (min {float(rounded.min()):.6g}); expected "
                "labels >= 0 (0 = background)",
            )
        if not np.array_equal(rounded, arr):
            bad = arr[rounded != arr]
            raise InvalidVolumeError(
                source,
                f"label map stored as {arr.dtype} has non-integral values "
                f"(e.g. {float(bad[0]):.6g}; {bad.size} voxels); expected integer labels",
            )
        lo, hi = (float(rounded.min()), float(rounded.max())) if rounded.size else (0.0, 0.0)
        for dt in (np.uint8, np.int16, np.int32, np.int64):
            info = np.iinfo(dt)
            if info.min <= lo and hi <= info.max:
                result: npt.NDArray[Any] = rounded.astype(dt)
                return result
    raise InvalidVolumeError(source, f"label map has unsupported dtype {arr.dtype}")


__all__ = [
    "GRID_ATOL_MM",
    "LPS_TO_RAS",
    "LabelMap",
    "Volume",
    "VolumeMeta",
    "add_warning",
    "affine_from_geometry",
    "check_same_frame_of_reference",
    "orientation_code",
]
