"""Grouping DICOM frames into volumes: split, sort and check the geometry of each series.

Steps for the frames of one SeriesInstanceUID:

1. **Split** into candidate volumes, each criterion applied only where it varies inside the
   current group: image plane (orientation + matrix size, key ``#orient<n>``), image type
   (``#type-<words>``, e.g. magnitude vs field map), echo (``#echo<n>``), enhanced-MR stack
   (``#stack<id>``) and, *only when slice positions repeat*, time: TemporalPosition
   Identifier/Index, TriggerTime, AcquisitionNumber, or else a regular pattern (every position
   repeated the same number of times, ordered by InstanceNumber) (``#t<n>``).
2. **Sort** the slices by their position along the slice normal ``n = row × column`` cosine
   (``ImagePositionPatient · n``), never by InstanceNumber or file name.
3. **Check**: consistent matrix size and pixel spacing, no duplicate positions, slices along
   the normal (otherwise gantry tilt, refused with the angle in degrees), even spacing
   (otherwise missing slices, refused with the positions of the gaps). A Siemens mosaic
   file is one volume of ``NumberOfImagesInMosaic`` tiles (CSA header), de-mosaicked.
   A failed check becomes :attr:`SeriesInfo.problem`; :func:`read_dicom` raises it.

Step 1 lives in :mod:`medseg.io.dicom.split`, steps 2 and 3 in :mod:`medseg.io.dicom.geometry`
(where the affine is built in LPS+ (DICOM) and converted to RAS+, at the I/O edge); this
module groups the frames by SeriesInstanceUID and records each volume as a :class:`SeriesInfo`.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from medseg.io.dicom.geometry import check_geometry
from medseg.io.dicom.headers import FrameHeader
from medseg.io.dicom.split import split_series
from medseg.volume import orientation_code


@dataclass(frozen=True)
class SeriesInfo:
    """One reconstructable (or refused) volume found in a folder.

    ``shape`` is ``(columns, rows, slices)`` = medseg array order ``(i, j, k)``; ``spacing`` mm
    along those axes; ``orientation`` the RAS+ axis code (e.g. ``"LPS"`` for a plain axial
    series). ``problem`` is ``None`` when the series reads as a volume, else the reason it
    cannot. ``key`` is the SeriesInstanceUID, plus a split suffix (``#echo2``, ``#t3``,
    ``#orient1``, ``#type-fieldmap``, ``#stack2``) when one UID held several volumes.
    """

    index: int
    key: str
    series_uid: str
    series_number: int | None
    description: str | None
    modality: str | None
    files: tuple[Path, ...]
    n_slices: int
    shape: tuple[int, int, int] | None
    spacing: tuple[float, float, float] | None
    orientation: str | None
    transfer_syntax: str | None
    problem: str | None
    #: The frames in slice order (sorted along the normal when ``problem`` is None).
    frames: tuple[FrameHeader, ...] = field(default=(), repr=False, compare=False)
    #: 4×4 voxel → RAS+ affine (mm) when ``problem`` is None.
    affine: npt.NDArray[np.float64] | None = field(default=None, repr=False, compare=False)
    #: How the slice spacing was obtained ("positions", or for one slice the tag used).
    slice_spacing_source: str | None = field(default=None, repr=False, compare=False)


@dataclass
class DicomScan:
    """Result of :func:`scan_dicom_folder`: the series found and the files skipped (with why).

    ``unreadable`` lists files that have the DICOM preamble but are truncated or corrupt;
    they are also in ``skipped``. ``unreadable_uids`` maps each to its SeriesInstanceUID when
    that much could be read (``None`` otherwise).
    """

    root: Path
    series: list[SeriesInfo]
    skipped: list[tuple[Path, str]]
    unreadable: list[tuple[Path, str]] = field(default_factory=list)
    unreadable_uids: dict[Path, str | None] = field(default_factory=dict, repr=False)

    def unreadable_for(self, info: SeriesInfo) -> list[tuple[Path, str]]:
        """Unreadable files that may belong to ``info``: same SeriesInstanceUID, or unknown
        UID and in one of the series' folders."""
        folders = {f.parent for f in info.files}
        out = []
        for p, why in self.unreadable:
            uid = self.unreadable_uids.get(p)
            if uid == info.series_uid or (uid is None and p.parent in folders):
                out.append((p, why))
        return out


def build_series(frames: Sequence[FrameHeader]) -> list[SeriesInfo]:
    """Group frames by SeriesInstanceUID, split, sort and check; indices in listing order."""
    by_uid: dict[str, list[FrameHeader]] = defaultdict(list)
    for h in frames:
        by_uid[h.series_uid].append(h)
    infos: list[SeriesInfo] = []
    for uid, fr in by_uid.items():
        fr.sort(key=lambda h: (str(h.path), h.frame or 0))
        start = len(infos)
        for suffix, part in split_series(fr):
            first = part[0]
            geo = check_geometry(part)
            files = tuple(dict.fromkeys(h.path for h in part))
            common = {
                "index": -1,
                "key": uid + suffix,
                "series_uid": uid,
                "series_number": first.series_number,
                "description": first.description,
                "modality": first.modality,
                "files": files,
                "n_slices": (first.mosaic_n or 1) if first.mosaic else len(part),
                "transfer_syntax": first.transfer_syntax,
            }
            if isinstance(geo, str):
                infos.append(
                    SeriesInfo(
                        shape=None,
                        spacing=None,
                        orientation=None,
                        problem=geo,
                        frames=tuple(part),
                        **common,  # type: ignore[arg-type]
                    )
                )
            else:
                infos.append(
                    SeriesInfo(
                        shape=geo.shape,
                        spacing=geo.spacing,
                        orientation=orientation_code(geo.affine),
                        problem=None,
                        frames=geo.frames,
                        affine=geo.affine,
                        slice_spacing_source=geo.slice_spacing_source,
                        **common,  # type: ignore[arg-type]
                    )
                )
        infos[start:] = _explain_orientation_outliers(infos[start:])
    infos.sort(
        key=lambda s: (
            s.series_number if s.series_number is not None else 1 << 62,
            s.series_uid,
            _natural_key(s.key),
        )
    )
    from dataclasses import replace

    return [replace(s, index=i) for i, s in enumerate(infos)]


#: A part split off by orientation whose normal is within this angle of a refused part's, and
#: whose slices lie inside that part's extent, is reported as a deviating slice of it.
_OUTLIER_MAX_DEG = 10.0


def _normal(h: FrameHeader) -> npt.NDArray[np.float64] | None:
    if h.iop is None:
        return None
    n = np.cross(np.asarray(h.iop[:3], dtype=float), np.asarray(h.iop[3:], dtype=float))
    norm = float(np.linalg.norm(n))
    return n / norm if norm > 0 else None


def _plane_angle_deg(a: FrameHeader, b: FrameHeader) -> float | None:
    """Largest angle (degrees) between the row cosines and between the column cosines."""
    if a.iop is None or b.iop is None:
        return None
    va, vb = np.asarray(a.iop, dtype=float), np.asarray(b.iop, dtype=float)
    angles = []
    for s in (slice(0, 3), slice(3, 6)):
        x, y = va[s], vb[s]
        cos = float(x @ y) / max(float(np.linalg.norm(x) * np.linalg.norm(y)), 1e-12)
        angles.append(float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))))
    return max(angles)


def _explain_orientation_outliers(parts: list[SeriesInfo]) -> list[SeriesInfo]:
    """A slice whose orientation is slightly off the others of its series is split off as
    its own ``#orient`` part, and the rest then fails with a gap ("missing slices?"): say
    what was found instead — which files have which deviating orientation."""
    from dataclasses import replace

    out = list(parts)
    for a, info in enumerate(parts):
        if info.problem is None or not info.frames or len(parts) < 2:
            continue
        na = _normal(info.frames[0])
        if na is None or any(h.ipp is None for h in info.frames):
            continue
        proj = [float(np.dot(h.ipp, na)) for h in info.frames if h.ipp is not None]
        lo, hi = min(proj), max(proj)
        found: list[tuple[float, FrameHeader]] = []
        for b, other in enumerate(parts):
            if b == a or not other.frames:
                continue
            angle = _plane_angle_deg(info.frames[0], other.frames[0])
            if angle is None:
                continue
            inside = all(
                h.ipp is not None and lo < float(np.dot(h.ipp, na)) < hi for h in other.frames
            )
            if angle <= _OUTLIER_MAX_DEG and inside:
                found += [(angle, h) for h in other.frames]
        if found:
            names = ", ".join(sorted({h.path.name for _, h in found})[:5])
            worst = max(angle for angle, _ in found)
            out[a] = replace(
                info,
                problem=(
                    f"{len(found)} slice(s) inside this series' extent ({names}) have an "
                    f"ImageOrientationPatient up to {worst:.2g} degrees off the other "
                    f"{len(info.frames)} slices (split off as a separate orientation), leaving "
                    f"a gap: {info.problem}"
                ),
            )
    return out


def _natural_key(s: str) -> list[tuple[int, int | str]]:
    return [(0, int(t)) if t.isdigit() else (1, t) for t in re.split(r"(\d+)", s)]


__all__ = ["DicomScan", "SeriesInfo", "build_series", "check_geometry", "split_series"]
