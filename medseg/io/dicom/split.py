"""Splitting the frames of one SeriesInstanceUID into candidate volumes (see
:mod:`medseg.io.dicom.series`, step 1): image plane, image type, echo, enhanced-MR stack and,
only when slice positions repeat, time points."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medseg.io.dicom.geometry import IOP_TOL
from medseg.io.dicom.headers import FrameHeader


def _plane_keys(frames: Sequence[FrameHeader]) -> dict[int, Hashable]:
    """Image-plane cluster of each frame (by ``id``): same matrix size and orientation
    cosines within ``IOP_TOL`` (greedy clustering, so jitter never splits a plane in two)."""
    centres: list[tuple[int, int, NDArray[Any]]] = []
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


__all__ = ["split_series"]
