"""DICOM series reading: find every volume in a folder, refuse what is not one, read exactly.

Public API::

    scan = scan_dicom_folder(folder)        # headers only; every series + skipped files
    for s in scan.series: print(s.index, s.key, s.n_slices, s.shape, s.problem)
    vol = read_dicom(folder, series=0)      # -> Volume (RAS+ affine, array (i, j, k))
    vol = read_dicom(file)                  # one file: 1-slice volume or enhanced multi-frame
    frames = read_dicom_frames(file)        # raw decoded stored values, (frames, rows, cols)

Conventions: array ``(I, J, K)`` = (column index, row index, slice) with
``array[i, j, k] = pixel_array_of_slice_k[j, i]``; slices sorted along the normal
(row × column cosine); affine voxel → RAS+ mm (DICOM LPS converted here); CT values in HU
(RescaleSlope/Intercept applied). See :mod:`medseg.io.dicom.series` for how a series is split
(:mod:`~medseg.io.dicom.split`) and checked (:mod:`~medseg.io.dicom.geometry`),
:mod:`medseg.io.dicom.headers` for the header scan and :mod:`medseg.io.dicom.pixels` for
decoding and dtypes.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from numpy.typing import NDArray

from medseg.errors import DicomSeriesError, InputError, UnreadableDicomError
from medseg.io.dicom.headers import FrameHeader, read_frame_headers
from medseg.io.dicom.series import DicomScan, SeriesInfo, build_series
from medseg.io.dicom.sniff import is_dicom_file, sniff_dicom
from medseg.io.files import path_problem, walk_files
from medseg.volume import Volume, VolumeMeta, add_warning

log = logging.getLogger(__name__)

_NIFTI_LIKE = (".nii", ".nii.gz", ".nrrd", ".mha", ".mhd", ".hdr", ".img")


def _skip_reason(path: Path) -> str:
    name = path.name.lower()
    for suf in _NIFTI_LIKE:
        if name.endswith(suf):
            return f"not DICOM: stray {suf} image file (read it with read_volume)"
    return "not a DICOM file (no 128-byte preamble + 'DICM' marker)"


def _files(root: Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Regular files under ``root`` (or ``root`` itself) and the entries skipped with why."""
    problem = path_problem(root, allow_dir=True)
    if problem is not None:
        raise InputError(root, problem)
    if root.is_dir():
        return walk_files(root)
    return [root], []


def scan_dicom_folder(path: Path | str) -> DicomScan:
    """Find every DICOM series under ``path`` (recursively), reading headers only.

    Each SeriesInstanceUID is split into volumes where it holds several (orientations, image
    types, echoes, stacks, time points) and each volume is sorted and checked; see
    :class:`SeriesInfo`. A DICOMDIR is not needed: its images are found by walking the tree.
    Non-DICOM files, non-image DICOM objects (DICOMDIR, reports, presentation states,
    DICOM-SEG), entries that are not regular files (FIFOs, devices, dangling symbolic links,
    link loops; never opened) and unreadable files are listed in :attr:`DicomScan.skipped`
    with the reason. *Unreadable* files (cannot be opened, too short to tell whether they are
    DICOM, corrupt header or pixel data) are also in :attr:`DicomScan.unreadable`; a series
    they may belong to gets them as its ``problem`` and is refused by :func:`read_dicom`.
    """
    root = Path(path)
    paths, skipped = _files(root)
    frames: list[FrameHeader] = []
    unreadable: list[tuple[Path, str]] = []
    uids: dict[Path, str | None] = {}
    for p in paths:
        try:
            if not sniff_dicom(p):
                skipped.append((p, _skip_reason(p)))
                continue
            res = read_frame_headers(p)
        except UnreadableDicomError as exc:
            skipped.append((p, exc.problem))
            unreadable.append((p, exc.problem))
            uids[p] = exc.series_uid
            continue
        if isinstance(res, str):
            skipped.append((p, res))
        else:
            frames.extend(res)
    scan = DicomScan(
        root=root,
        series=build_series(frames),
        skipped=skipped,
        unreadable=unreadable,
        unreadable_uids=uids,
    )
    scan.series = [_with_unreadable(s, scan) for s in scan.series]
    return scan


def _with_unreadable(s: SeriesInfo, scan: DicomScan) -> SeriesInfo:
    """``s`` with its ``problem`` naming the unreadable files that may hold its slices."""
    bad = scan.unreadable_for(s)
    if not bad:
        return s
    path, why = bad[0]
    more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
    problem = (
        f"{len(bad)} unreadable file(s) may hold slices of this series, e.g. {path.name}: "
        f"{why}{more}; refusing to build a volume that may be missing slices"
    )
    if s.problem is not None:
        problem += f" (the {s.n_slices} readable slices: {s.problem})"
    return dataclasses.replace(s, problem=problem)


_SCAN_CACHE: dict[Path, tuple[tuple[tuple[str, int, int], ...], DicomScan]] = {}
_SCAN_CACHE_SIZE = 4


def _cached_scan(root: Path) -> DicomScan:
    """:func:`scan_dicom_folder`, reused while no file under ``root`` changed (names, sizes
    and modification times compared), so reading several series of one folder scans once."""
    if not root.exists():
        raise InputError(root, "no such file or folder")
    key = root.resolve()
    paths, skipped = _files(root)
    sig = tuple((str(p), *_stat_key(p)) for p in [*paths, *(q for q, _ in skipped)])
    hit = _SCAN_CACHE.get(key)
    if hit is not None and hit[0] == sig:
        return hit[1]
    sc = scan_dicom_folder(root)
    if len(_SCAN_CACHE) >= _SCAN_CACHE_SIZE:
        _SCAN_CACHE.pop(next(iter(_SCAN_CACHE)))
    _SCAN_CACHE[key] = (sig, sc)
    return sc


def _stat_key(p: Path) -> tuple[int, int]:
    try:
        st = os.lstat(p)
    except OSError:
        return (-1, -1)
    return (st.st_size, st.st_mtime_ns)


def _describe(s: SeriesInfo) -> str:
    desc = f" '{s.description}'" if s.description else ""
    num = f"#{s.series_number}" if s.series_number is not None else "#-"
    shape = "x".join(str(v) for v in s.shape) if s.shape else "not a volume"
    prob = f" [refused: {s.problem}]" if s.problem else ""
    mod = s.modality or "?"
    return f"  [{s.index}] {num}{desc} {mod} {s.n_slices} slices ({shape}) key={s.key}{prob}"


def select_series(scan: DicomScan, series: str | int | None) -> SeriesInfo:
    """Pick one series of ``scan`` by index, key or SeriesInstanceUID (unique), or raise
    :class:`DicomSeriesError` listing the series found."""
    listing = "\n".join(_describe(s) for s in scan.series)
    if not scan.series:
        if scan.unreadable:
            bad, why = scan.unreadable[0]
            raise InputError(
                bad,
                f"{why} (no readable DICOM series in {scan.root}; "
                f"{len(scan.unreadable)} unreadable file(s))",
            )
        raise DicomSeriesError(
            scan.root, f"no DICOM image series found ({len(scan.skipped)} file(s) skipped)"
        )
    if series is None:
        if len(scan.series) == 1:
            return scan.series[0]
        raise DicomSeriesError(
            scan.root,
            f"holds {len(scan.series)} series; choose one with series=<index or key>:\n{listing}",
        )
    if isinstance(series, str) and series.strip().isdigit():
        series = int(series)
    if isinstance(series, int):
        if 0 <= series < len(scan.series):
            return scan.series[series]
        raise DicomSeriesError(
            scan.root, f"series index {series} out of range 0..{len(scan.series) - 1}:\n{listing}"
        )
    matches = [s for s in scan.series if s.key == series]
    if not matches:
        matches = [s for s in scan.series if s.series_uid == series]
    if len(matches) == 1:
        return matches[0]
    what = "matches several volumes (use the key)" if matches else "not found"
    raise DicomSeriesError(scan.root, f"series '{series}' {what}; series found:\n{listing}")


def read_dicom(
    path: Path | str,
    series: str | int | None = None,
    *,
    scan: DicomScan | None = None,
    parallel: bool = True,
) -> Volume:
    """Read one DICOM volume from a folder (searched recursively) or a single file.

    Args:
        path: DICOM folder or file. A single file gives that file's volume (one slice, or the
            frames of an enhanced multi-frame file).
        series: index, key or SeriesInstanceUID of the volume to read (as listed by
            :func:`scan_dicom_folder`); required when there are several.
        scan: a scan of ``path`` already made, to avoid scanning again.
        parallel: decode large compressed series in worker processes.

    Returns:
        :class:`Volume` with array ``(columns, rows, slices)`` and a RAS+ affine in mm; values
        rescaled (CT in HU); integer dtype when the rescale is an integral shift;
        ``meta.study_uid`` / ``meta.frame_of_reference_uid`` the StudyInstanceUID and
        FrameOfReferenceUID shared by all its frames (``None`` when absent or not shared).

    Raises:
        DicomSeriesError: several series and none chosen, or the chosen one is not a regular
            volume (missing slices, uneven spacing, tilt, duplicate positions, mosaic, ...).
        InputError: a truncated or corrupt file (named), or no DICOM images.
    """
    root = Path(path)
    sc = scan if scan is not None else _cached_scan(root)
    if root.is_file() and sc.unreadable:
        raise InputError(root, sc.unreadable[0][1])
    if root.is_file() and not sc.series and sc.skipped:
        raise DicomSeriesError(root, f"not an image volume: {sc.skipped[0][1]}")
    info = select_series(sc, series)
    blockers = sc.unreadable_for(info)
    if blockers:
        bad, why = blockers[0]
        raise InputError(
            bad,
            f"{why} (series [{info.index}] in {root}; refusing to build a volume that may be "
            f"missing this file's slices; {len(blockers)} unreadable file(s))",
        )
    if info.problem is not None:
        raise DicomSeriesError(root, f"series [{info.index}] {info.key}: {info.problem}")
    from medseg.io.dicom.pixels import assemble

    assert info.affine is not None
    array, rescale = assemble(info.frames, root, parallel=parallel)
    extra: dict[str, object] = {
        "series_key": info.key,
        "transfer_syntax": info.transfer_syntax,
        "n_files": len(info.files),
    }
    if info.series_number is not None:
        extra["series_number"] = info.series_number
    if info.slice_spacing_source != "positions":
        extra["slice_spacing_source"] = info.slice_spacing_source
    if rescale.slope is None or rescale.intercept is None:
        extra["rescale"] = "per-slice RescaleSlope/Intercept applied"
    no_pi = sorted({h.path.name for h in info.frames if h.photometric is None})
    if no_pi:
        add_warning(
            extra,
            f"{root}: PhotometricInterpretation absent in {len(no_pi)} file(s) (e.g. {no_pi[0]});"
            " assumed MONOCHROME2 (grayscale stored values, one sample per pixel)",
        )
    meta = VolumeMeta(
        modality=info.modality,
        series_description=info.description,
        series_uid=None if info.series_uid.startswith("nouid:") else info.series_uid,
        study_uid=_common_value(h.study_uid for h in info.frames),
        frame_of_reference_uid=_common_value(h.frame_of_reference_uid for h in info.frames),
        rescale_slope=rescale.slope,
        rescale_intercept=rescale.intercept,
        units=rescale.units,
        extra=extra,
    )
    log.debug("read DICOM series %s: %s slices %s", info.key, info.n_slices, array.dtype)
    return Volume(array, info.affine, source=root, meta=meta)


def _common_value(values: Iterable[str | None]) -> str | None:
    """The one value all frames record, ``None`` when absent from some or not all equal."""
    found = set(values)
    return next(iter(found)) if len(found) == 1 else None


def read_dicom_frames(path: Path | str) -> NDArray[Any]:
    """Decoded stored pixel values of one DICOM file, shape ``(frames, rows, cols)``, without
    rescale or geometry (e.g. a Siemens mosaic's raw 2-D frame)."""
    from medseg.io.dicom.pixels import decode_file

    p = Path(path)
    if not is_dicom_file(p):
        raise InputError(p, "expected a DICOM file (128-byte preamble + 'DICM'), found other data")
    return decode_file(p)


__all__ = [
    "DicomScan",
    "SeriesInfo",
    "is_dicom_file",
    "read_dicom",
    "read_dicom_frames",
    "scan_dicom_folder",
    "select_series",
]
