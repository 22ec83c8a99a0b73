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

The affine is built in LPS+ (DICOM) and converted to RAS+ here, at the I/O edge.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from medseg.io.dicom.headers import FrameHeader
from medseg.volume import orientation_code

#: Two orientation cosines are "the same plane" when they differ by less than this.
IOP_TOL = 1e-4
#: Slices are refused as tilted when the slice direction deviates from the normal by more.
TILT_TOL_DEG = 0.05
#: Relative / absolute tolerance on slice spacing (the larger applies).
SPACING_RTOL = 0.01
SPACING_ATOL_MM = 0.01

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
#: PhotometricInterpretation values of colour images (refused: medseg reads grayscale).
_COLOUR = frozenset(
    {
        "PALETTE COLOR",
        "RGB",
        "YBR_FULL",
        "YBR_FULL_422",
        "YBR_PARTIAL_422",
        "YBR_PARTIAL_420",
        "YBR_ICT",
        "YBR_RCT",
        "HSV",
        "ARGB",
        "CMYK",
    }
)


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


# --- splitting ---------------------------------------------------------------------------------
def _plane_keys(frames: Sequence[FrameHeader]) -> dict[int, Hashable]:
    """Image-plane cluster of each frame (by ``id``): same matrix size and orientation
    cosines within ``IOP_TOL`` (greedy clustering, so jitter never splits a plane in two)."""
    centres: list[tuple[int, int, np.ndarray]] = []
    out: dict[int, Hashable] = {}
    for h in frames:
        if h.iop is None or h.ipp is None:
            out[id(h)] = (1, h.rows, h.cols, -1)
            continue
        v = np.asarray(h.iop)
        for ci, (r, c, centre) in enumerate(centres):
            if (r, c) == (h.rows, h.cols) and float(np.max(np.abs(centre - v))) <= IOP_TOL:
                out[id(h)] = (0, 0, 0, ci)
                break
        else:
            centres.append((h.rows, h.cols, v))
            out[id(h)] = (0, 0, 0, len(centres) - 1)
    return out


def _positions_repeat(frames: Sequence[FrameHeader]) -> bool:
    if any(h.ipp is None for h in frames):
        return False
    return len({_pos_key(h) for h in frames}) < len(frames)


def _pos_key(h: FrameHeader) -> Hashable:
    assert h.ipp is not None
    return tuple(round(v * 1000) for v in h.ipp)  # µm resolution


def _words(s: str) -> str:
    return re.sub(r"[^a-z0-9]", "", s.lower())


def _split_by(
    groups: list[tuple[str, list[FrameHeader]]],
    key: Callable[[FrameHeader], Hashable],
    label: Callable[[Hashable, int, list[Hashable]], str],
    only_if_positions_repeat: bool = False,
) -> list[tuple[str, list[FrameHeader]]]:
    out: list[tuple[str, list[FrameHeader]]] = []
    for suffix, frames in groups:
        if only_if_positions_repeat and not _positions_repeat(frames):
            out.append((suffix, frames))
            continue
        buckets: dict[Hashable, list[FrameHeader]] = defaultdict(list)
        for h in frames:
            buckets[key(h)].append(h)
        if len(buckets) == 1:
            out.append((suffix, frames))
            continue
        keys = sorted(buckets, key=lambda k: (k is None, repr(k) if k is not None else ""))
        keys = _natural(keys)
        for rank, k in enumerate(keys):
            out.append((suffix + "#" + label(k, rank, keys), buckets[k]))
    return out


def _natural(keys: list[Hashable]) -> list[Hashable]:
    def sk(k: Hashable) -> tuple[int, float, str]:
        if k is None:
            return (2, 0.0, "")
        if isinstance(k, (int, float)):
            return (0, float(k), "")
        return (1, 0.0, repr(k))

    return sorted(keys, key=sk)


def _type_label(k: Hashable, rank: int, keys: list[Hashable]) -> str:
    assert isinstance(k, tuple)
    common = set.intersection(*(set(x) for x in keys if isinstance(x, tuple)))
    words = [_words(w) for w in k if w not in common and _words(w)]
    return "type-" + ("-".join(words) if words else str(rank + 1))


def _time_split(frames: list[FrameHeader]) -> list[list[FrameHeader]] | None:
    """Split frames whose positions repeat into time points, or ``None`` if no rule explains
    the repetition."""
    positions = {_pos_key(h) for h in frames}
    if len(positions) < 2:
        return None
    getters: list[Callable[[FrameHeader], Hashable]] = [
        lambda h: h.temporal_index,
        lambda h: h.trigger_time,
        lambda h: h.acquisition_number,
    ]
    for get in getters:
        vals = [get(h) for h in frames]
        if any(v is None for v in vals) or len(set(vals)) < 2:
            continue
        buckets: dict[Hashable, list[FrameHeader]] = defaultdict(list)
        for h, v in zip(frames, vals, strict=True):
            buckets[v].append(h)
        parts = [buckets[k] for k in _natural(list(buckets))]
        # accepted only if every part is one complete, duplicate-free copy of the positions
        if all(len(p) == len(positions) and {_pos_key(h) for h in p} == positions for p in parts):
            return parts
    # Regular pattern: every position repeated m times; order repeats by InstanceNumber.
    by_pos: dict[Hashable, list[FrameHeader]] = defaultdict(list)
    for h in frames:
        by_pos[_pos_key(h)].append(h)
    counts = {len(v) for v in by_pos.values()}
    if len(counts) != 1:
        return None
    m = counts.pop()
    if m < 2:
        return None
    for hs in by_pos.values():  # repeats must be ordered by distinct InstanceNumbers
        numbers = [h.instance_number for h in hs]
        if None in numbers or len(set(numbers)) != len(numbers):
            return None
    parts2: list[list[FrameHeader]] = [[] for _ in range(m)]
    for hs in by_pos.values():
        hs_sorted = sorted(
            hs,
            key=lambda h: (
                h.instance_number if h.instance_number is not None else 1 << 62,
                h.acquisition_time or "",
                str(h.path),
                h.frame or 0,
            ),
        )
        for t, h in enumerate(hs_sorted):
            parts2[t].append(h)
    return parts2


def split_series(frames: Sequence[FrameHeader]) -> list[tuple[str, list[FrameHeader]]]:
    """Split the frames of one SeriesInstanceUID into candidate volumes ``(suffix, frames)``."""
    groups: list[tuple[str, list[FrameHeader]]] = [("", list(frames))]
    planes = _plane_keys(frames)
    groups = _split_by(groups, lambda h: planes[id(h)], lambda k, r, ks: f"orient{r + 1}")
    groups = _split_by(groups, lambda h: h.image_type, _type_label)
    # echoes only separate volumes whose slice positions repeat
    if any(h.echo_number is not None for h in frames):
        groups = _split_by(
            groups,
            lambda h: h.echo_number,
            lambda k, r, ks: f"echo{k}" if k is not None else "echo-none",
            only_if_positions_repeat=True,
        )
    groups = _split_by(
        groups,
        lambda h: h.echo_time,
        lambda k, r, ks: f"echo{r + 1}",
        only_if_positions_repeat=True,
    )
    groups = _split_by(groups, lambda h: h.stack_id, lambda k, r, ks: f"stack{k}")
    out: list[tuple[str, list[FrameHeader]]] = []
    for suffix, fr in groups:
        acq_keys = {(h.acquisition_number, h.instance_number, h.acquisition_time) for h in fr}
        if fr[0].mosaic and len(fr) > 1 and len(acq_keys) == len(fr):
            # each mosaic frame is a whole volume: one time point per file
            fr_sorted = sorted(
                fr,
                key=lambda h: (
                    h.acquisition_number if h.acquisition_number is not None else 1 << 62,
                    h.instance_number if h.instance_number is not None else 1 << 62,
                    str(h.path),
                ),
            )
            out.extend((f"{suffix}#t{t + 1}", [h]) for t, h in enumerate(fr_sorted))
            continue
        if fr[0].ipp is None or len({_pos_key(h) for h in fr}) == len(fr):
            out.append((suffix, fr))
            continue
        copies = len({(h.sop_instance_uid, h.frame) for h in fr}) < len(fr)
        parts = None if copies else _time_split(fr)
        if parts is None:
            out.append((suffix, fr))  # duplicate positions: reported by check_geometry
        else:
            out.extend((f"{suffix}#t{t + 1}", p) for t, p in enumerate(parts))
    seen: dict[str, int] = defaultdict(int)
    unique: list[tuple[str, list[FrameHeader]]] = []
    for suffix, fr in out:  # two image types can map to the same words: keep keys unique
        seen[suffix] += 1
        unique.append((suffix if seen[suffix] == 1 else f"{suffix}-{seen[suffix]}", fr))
    return unique


# --- geometry ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Geometry:
    frames: tuple[FrameHeader, ...]
    affine: npt.NDArray[np.float64]
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    slice_spacing_source: str


def _fmt_pos(p: Sequence[float] | npt.NDArray[np.float64]) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in p) + ")"


def check_geometry(frames: Sequence[FrameHeader]) -> _Geometry | str:
    """Sort ``frames`` along the slice normal and check they form one regular 3-D grid.

    Returns the geometry, or a one-paragraph reason why the frames are not one volume.
    """
    first = frames[0]
    if any(h.mosaic for h in frames):
        return _mosaic_geometry(frames)
    colour = [h for h in frames if h.samples_per_pixel != 1 or h.photometric in _COLOUR]
    if colour:
        h = colour[0]
        more = f" and {len(colour) - 1} more" if len(colour) > 1 else ""
        return (
            f"colour image ({h.photometric or 'PhotometricInterpretation absent'}, "
            f"{h.samples_per_pixel} samples per pixel in {h.path.name}{more}); expected "
            "grayscale (MONOCHROME1/MONOCHROME2)"
        )
    unknown = [h for h in frames if h.photometric not in (None, "MONOCHROME1", "MONOCHROME2")]
    if unknown:
        h = unknown[0]
        return (
            f"unknown PhotometricInterpretation {h.photometric!r} in {h.path.name}; expected "
            "MONOCHROME1 or MONOCHROME2 (grayscale)"
        )
    missing = [
        name
        for name, v in (
            ("ImagePositionPatient", first.ipp),
            ("ImageOrientationPatient", first.iop),
            ("PixelSpacing", first.pixel_spacing),
        )
        if v is None
    ]
    if missing or any(h.ipp is None or h.iop is None or h.pixel_spacing is None for h in frames):
        return (
            f"no patient geometry ({', '.join(missing) or 'some slices lack position/spacing'} "
            "missing): not a spatial image volume"
        )
    sizes = {(h.rows, h.cols) for h in frames}
    if len(sizes) > 1:
        return f"slices have different matrix sizes {sorted(sizes)}; expected one size"
    assert first.pixel_spacing is not None and first.iop is not None
    ps = np.array([h.pixel_spacing for h in frames], dtype=np.float64)
    if np.max(np.abs(ps - ps[0])) > 1e-4:
        return f"slices have different PixelSpacing (from {ps.min(0)} to {ps.max(0)} mm)"
    iops = np.array([h.iop for h in frames], dtype=np.float64)
    if np.max(np.abs(iops - iops[0])) > IOP_TOL:
        return "slices have different ImageOrientationPatient; expected one image plane"

    row = np.array(first.iop[:3])
    col = np.array(first.iop[3:])
    row /= np.linalg.norm(row)
    col /= np.linalg.norm(col)
    normal = np.cross(row, col)
    ipp = np.array([h.ipp for h in frames], dtype=np.float64)
    proj = ipp @ normal
    order = np.argsort(proj, kind="stable")
    ipp = ipp[order]
    proj = proj[order]
    sorted_frames = tuple(frames[int(i)] for i in order)
    n = len(frames)

    if n > 1:
        d = np.diff(proj)
        dup = np.flatnonzero(np.abs(d) < SPACING_ATOL_MM)
        if dup.size:
            i = int(dup[0])
            a, b = sorted_frames[i], sorted_frames[i + 1]
            same_sop = a.sop_instance_uid is not None and a.sop_instance_uid == b.sop_instance_uid
            return (
                f"duplicate slice positions: {dup.size} pair(s) of the {n} slices share a "
                f"position, e.g. {a.path.name}"
                f"{'' if a.frame is None else f' frame {a.frame}'} and {b.path.name}"
                f"{'' if b.frame is None else f' frame {b.frame}'} at LPS "
                f"{_fmt_pos(ipp[i])} mm"
                + (" (same SOPInstanceUID: copies of one image)" if same_sop else "")
                + "; no echo/time/type tag explains the repetition, refusing to stack"
            )
        step = (ipp[-1] - ipp[0]) / (n - 1)
        rel = ipp - ipp[0]
        along = rel @ normal
        inplane = rel - np.outer(along, normal)
        if n > 2:
            # The slice centres must lie on one line. Its in-plane drift per mm along the
            # normal is the median of the slice-to-slice drifts, so that one displaced slice
            # is reported as displaced, not as a gantry tilt of the whole series.
            drift = np.median(np.diff(inplane, axis=0) / d[:, None], axis=0)
            resid = inplane - np.outer(along, drift)
            off = np.linalg.norm(resid - np.median(resid, axis=0), axis=1)
            worst = int(np.argmax(off))
            tol_in_plane = max(SPACING_ATOL_MM, SPACING_RTOL * float(np.median(np.abs(d))))
            if off[worst] > tol_in_plane:
                return (
                    f"slice positions are not on one line along the normal: slice at "
                    f"{proj[worst]:.4g} mm ({sorted_frames[worst].path.name}) is shifted "
                    f"{off[worst]:.3g} mm in-plane from the line through the other slices "
                    f"(tolerance {tol_in_plane:.3g} mm)"
                )
        else:
            drift = inplane[-1] / along[-1]
        angle = float(np.degrees(np.arctan(float(np.linalg.norm(drift)))))
        if angle > TILT_TOL_DEG:
            return (
                f"gantry tilt: slice positions run {angle:.2f} degrees away from the image "
                f"normal {_fmt_pos(normal)} (tolerance {TILT_TOL_DEG} deg); resampling to an "
                "orthogonal grid is not supported, refusing"
            )
        if n > 2:
            expected = float(np.median(d))
            tol = max(SPACING_ATOL_MM, SPACING_RTOL * expected)
            bad = np.flatnonzero(np.abs(d - expected) > tol)
            if bad.size:
                gaps = "; ".join(
                    f"{d[i]:.4g} mm between slices at {proj[i]:.4g} and {proj[i + 1]:.4g} mm"
                    for i in bad[:5]
                )
                return (
                    f"uneven slice spacing (missing slices?): expected {expected:.4g} mm "
                    f"between consecutive slices (median), found {gaps} (positions along the "
                    f"normal {_fmt_pos(normal)}, LPS; tolerance {tol:.3g} mm)"
                )
        slice_step = step
        slice_spacing = float(np.linalg.norm(step))
        source = "positions"
    else:
        if first.spacing_between_slices:
            slice_spacing, source = first.spacing_between_slices, "SpacingBetweenSlices"
        elif first.slice_thickness:
            slice_spacing, source = first.slice_thickness, "SliceThickness"
        else:
            slice_spacing, source = 1.0, "none (single slice: 1 mm nominal)"
        slice_step = normal * slice_spacing

    dr, dc = first.pixel_spacing  # between rows, between columns
    lps = np.eye(4)
    lps[:3, 0] = row * dc
    lps[:3, 1] = col * dr
    lps[:3, 2] = slice_step
    lps[:3, 3] = ipp[0]
    affine = _LPS_TO_RAS @ lps
    return _Geometry(
        frames=sorted_frames,
        affine=affine,
        shape=(first.cols, first.rows, n),
        spacing=(float(dc), float(dr), float(slice_spacing)),
        slice_spacing_source=source,
    )


def mosaic_tiles(h: FrameHeader) -> tuple[int, int, int]:
    """``(tiles per side, tile rows, tile columns)`` of a Siemens mosaic frame."""
    assert h.mosaic_n is not None
    tiles = int(np.ceil(np.sqrt(h.mosaic_n)))
    return tiles, h.rows // tiles, h.cols // tiles


def _mosaic_geometry(frames: Sequence[FrameHeader]) -> _Geometry | str:
    """Geometry of one de-mosaicked Siemens volume (the frame holds ``mosaic_n`` tiles).

    The slices' positions are not in the DICOM header, only the mosaic's (top-left corner of
    the whole tiled frame): the first slice's centre is shifted by half the unused tiles; the
    slice direction is the CSA SliceNormalVector and the slice spacing SpacingBetweenSlices
    (else SliceThickness), as dcm2niix does.
    """
    first = frames[0]
    if len(frames) != 1:
        return (
            f"{len(frames)} Siemens mosaic files with the same position, acquisition and "
            "instance number (copies of one image?); read a single file instead"
        )
    if first.mosaic_n is None or first.mosaic_normal is None:
        return (
            "Siemens mosaic without a readable CSA header (NumberOfImagesInMosaic / "
            "SliceNormalVector): cannot de-mosaic"
        )
    if first.ipp is None or first.iop is None or first.pixel_spacing is None:
        return "Siemens mosaic without ImagePositionPatient/ImageOrientationPatient/PixelSpacing"
    tiles, tr, tc = mosaic_tiles(first)
    if tiles * tr != first.rows or tiles * tc != first.cols:
        return f"mosaic {first.rows}x{first.cols} does not split into {tiles}x{tiles} tiles"
    row = np.array(first.iop[:3])
    col = np.array(first.iop[3:])
    normal = np.array(first.mosaic_normal)
    dr, dc = first.pixel_spacing
    if first.spacing_between_slices:
        ds, source = first.spacing_between_slices, "SpacingBetweenSlices (mosaic)"
    elif first.slice_thickness:
        ds, source = first.slice_thickness, "SliceThickness (mosaic)"
    else:
        return "Siemens mosaic without SpacingBetweenSlices or SliceThickness"
    origin = (
        np.array(first.ipp)
        + row * dc * (first.cols - tc) / 2.0
        + col * dr * (first.rows - tr) / 2.0
    )
    lps = np.eye(4)
    lps[:3, 0] = row * dc
    lps[:3, 1] = col * dr
    lps[:3, 2] = normal * ds
    lps[:3, 3] = origin
    return _Geometry(
        frames=tuple(frames),
        affine=_LPS_TO_RAS @ lps,
        shape=(tc, tr, first.mosaic_n),
        spacing=(float(dc), float(dr), float(ds)),
        slice_spacing_source=source,
    )


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
