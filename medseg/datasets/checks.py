"""Reading a case (:func:`read_case`) and checking a whole dataset (:func:`check_dataset`):
every file readable, finite voxels, channels and label on one grid, label values declared."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from medseg.datasets.records import Case, Dataset, Problem
from medseg.errors import GeometryMismatchError, InvalidVolumeError, MedsegError
from medseg.io import read_label_map, read_volume
from medseg.volume import LabelMap, Volume


def read_case(
    case: Case, label_names: Mapping[int, str] | None = None, *, check_finite: bool = True
) -> tuple[list[Volume], LabelMap | None]:
    """Read a case's channels and label.

    Returns ``(channels, label)``: one 3-D :class:`Volume` per channel (all on one grid, checked)
    and the :class:`LabelMap` (checked to be on the image grid) or ``None``.

    Raises:
        InputError: a file is missing/unreadable, or has NaN voxels (``check_finite``).
        GeometryMismatchError: a channel or the label is on another grid.
    """
    vols: list[Volume] = []
    if case.channel_indices is not None:
        for ch in case.channel_indices:
            v = read_volume(case.images[0], channel=ch, check_finite=check_finite)
            _check_multichannel(v, case)
            vols.append(v)
    else:
        for p in case.images:
            vols.append(read_volume(p, check_finite=check_finite))
    for v in vols[1:]:
        vols[0].check_same_grid(v)
    label = None
    if case.label is not None:
        label = read_label_map(case.label, label_names)
        vols[0].check_same_grid(label)
    return vols, label


def _check_multichannel(v: Volume, case: Case) -> None:
    """A case declared as one multi-channel file must really be 4-D (readers record the
    channel they took in ``meta.extra["channel"]`` only for 4-D / vector files)."""
    if "channel" not in v.meta.extra:
        raise InvalidVolumeError(
            case.images[0],
            f"expected a 4-D image with {case.n_channels} channels, found a 3-D image",
        )


def check_dataset(ds: Dataset, *, require_labels: bool = True) -> list[Problem]:
    """Validate every case and return every problem found (an empty list means valid).

    Checks, per case: every file exists and is readable; no NaN/inf voxels; channels share a
    grid; a label exists (when ``require_labels``), is integral, lies on the image grid, and
    holds only values declared in ``ds.label_names`` (when any are declared). Warnings (which
    do not make a dataset invalid): a label with no foreground, a declared label that no case
    contains. Nothing is raised for data problems; reading continues with the next case.
    """
    problems: list[Problem] = []
    if not ds.label_names:
        problems.append(
            Problem(
                None,
                ds.source,
                "no label names declared; label values are not checked against a declared set",
                severity="warning",
            )
        )
    declared = set(ds.label_names)
    seen: set[int] = set()
    n_read = 0
    for case in ds.cases:
        found, present = _check_case(case, declared, require_labels)
        problems.extend(found)
        if present is not None:
            n_read += 1
            seen |= present
            if not present - {0}:
                problems.append(
                    Problem(
                        case.case_id,
                        case.label,
                        "label has no foreground (only 0)",
                        severity="warning",
                    )
                )
    absent = sorted(declared - seen - {0})
    if absent and n_read == len(ds.cases):
        names = ", ".join(f"{v} ({ds.label_names[v]})" for v in absent)
        problems.append(
            Problem(
                None, ds.source, f"declared label(s) {names} occur in no case", severity="warning"
            )
        )
    return problems


def _problem(case_id: str, path: Path, exc: MedsegError) -> Problem:
    """A reading error as a problem of ``path``; when the error is about another file (a
    damaged slice inside a DICOM series folder), that file is the problem's path."""
    where = getattr(exc, "path", None)
    problem = getattr(exc, "problem", None)
    if isinstance(where, Path) and problem is not None:
        return Problem(case_id, where, str(problem))
    return Problem(case_id, path, str(exc))


def _check_case(
    case: Case, declared: set[int], require_labels: bool
) -> tuple[list[Problem], set[int] | None]:
    """Problems of one case, and the label values present (``None`` if unread)."""
    out: list[Problem] = []
    cid = case.case_id
    for f in case.images:
        if not f.exists():
            out.append(Problem(cid, f, "image file missing"))
    if case.label is None:
        if require_labels:
            out.append(Problem(cid, None, "no label listed"))
    elif not case.label.exists():
        out.append(Problem(cid, case.label, "label file missing"))
    if out:
        return out, None
    vols: list[Volume] = []
    idx = case.channel_indices or tuple(range(len(case.images)))
    for n, ch in enumerate(idx):
        path = case.images[0] if case.channel_indices is not None else case.images[n]
        try:
            v = read_volume(
                path, channel=ch if case.channel_indices is not None else None, check_finite=False
            )
            if case.channel_indices is not None:
                _check_multichannel(v, case)
        except MedsegError as exc:
            out.append(_problem(cid, path, exc))
            if case.channel_indices is not None and "out of range" not in str(exc):
                break  # one multi-channel file: the same problem for every channel
            continue
        if np.issubdtype(v.array.dtype, np.floating):
            nbad = int(np.count_nonzero(~np.isfinite(v.array)))
            if nbad:
                out.append(
                    Problem(
                        cid,
                        path,
                        f"channel {n}: {nbad} NaN or infinite voxel(s); expected finite values",
                    )
                )
        vols.append(v)
    for n, v in enumerate(vols[1:], start=1):
        try:
            vols[0].check_same_grid(v)
        except GeometryMismatchError as exc:
            out.append(
                Problem(
                    cid,
                    v.source,
                    f"channel {n} is not on channel 0's grid: {str(exc).splitlines()[0]}",
                )
            )
    if case.label is None:
        return out, None
    try:
        lab = read_volume(case.label, check_finite=False)
    except MedsegError as exc:
        out.append(_problem(cid, case.label, exc))
        return out, None
    try:
        lm = LabelMap.from_volume(lab)
    except MedsegError as exc:
        out.append(_problem(cid, case.label, exc))
        return out, None
    if vols:
        try:
            vols[0].check_same_grid(lm)
        except GeometryMismatchError as exc:
            out.append(
                Problem(
                    cid, case.label, f"label is not on the image grid: {str(exc).splitlines()[0]}"
                )
            )
    present = {int(v) for v in np.unique(lm.array)}
    if declared:
        extra = sorted(present - declared)
        if extra:
            out.append(
                Problem(
                    cid,
                    case.label,
                    f"label values {extra} not in the declared set {sorted(declared)}",
                )
            )
    return out, present


__all__ = ["check_dataset", "read_case"]
