"""Matching prediction and reference cases by name.

A case's name is its file name without the format suffix (:func:`medseg.io.outputs.case_stem`,
the one definition) (``case_01.nii.gz`` → ``case_01``;
``.nii``, ``.nii.gz``, ``.nrrd``, ``.mha``, ``.mhd``, ``.dcm``), or a sub-folder's name (a DICOM
series folder is one case). A side may also be a single file or a single DICOM series folder
(a folder without sub-folders): then the two sides form one case. :func:`match_cases` is used
by every command that pairs two sets of files (``medseg evaluate``, ``medseg volumetry``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medseg.errors import InputError, UnreadableDicomError
from medseg.io import IMAGE_SUFFIXES
from medseg.io.atomic import full_suffix
from medseg.io.dicom.sniff import sniff_dicom
from medseg.io.files import path_problem
from medseg.io.outputs import case_stem

log = logging.getLogger(__name__)

#: File suffixes recognised as one case each.
CASE_SUFFIXES: tuple[str, ...] = (*IMAGE_SUFFIXES, ".dcm")


@dataclass(frozen=True)
class CasePair:
    """One case: its name and the prediction / reference paths."""

    case: str
    pred: Path
    ref: Path


@dataclass(frozen=True)
class CaseFailure:
    """A case that could not be evaluated; ``error`` names the file, expected and found."""

    case: str
    pred: Path | None
    ref: Path | None
    error: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "case": self.case,
            "pred": None if self.pred is None else str(self.pred),
            "ref": None if self.ref is None else str(self.ref),
            "error": self.error,
        }


def _dicom_like(path: Path) -> bool:
    """A DICOM file, or a file too short or unreadable to tell (a damaged slice)."""
    try:
        return sniff_dicom(path)
    except UnreadableDicomError:
        return True


def is_single_case(path: Path) -> bool:
    """A file, or a folder with no sub-folders holding only DICOM files (one series; damaged
    slices included, so that reading the series names them). Entries that are not regular
    files (links to nowhere, FIFOs) are not looked into."""
    if not path.is_dir():
        return True
    entries = [e for e in path.iterdir() if not e.name.startswith(".")]
    if not entries or any(e.is_dir() for e in entries):
        return False
    files = [e for e in entries if path_problem(e) is None]
    return all(_dicom_like(e) for e in files)


def _list_cases(folder: Path) -> tuple[dict[str, Path], list[CaseFailure]]:
    cases: dict[str, Path] = {}
    failures: list[CaseFailure] = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if not entry.is_dir() and full_suffix(entry) not in CASE_SUFFIXES:
            log.debug("ignoring %s (not an image file or case folder)", entry)
            continue
        key = case_stem(entry)
        if key in cases:
            failures.append(
                CaseFailure(
                    key,
                    None,
                    None,
                    f"{folder}: expected one file or folder per case, found two for case "
                    f"{key!r}: {cases[key].name} and {entry.name}",
                )
            )
            continue
        cases[key] = entry
    return cases, failures


def list_cases(path: str | Path) -> tuple[dict[str, Path], list[CaseFailure]]:
    """The cases of one side: ``{case name: path}`` (one entry for a single file or DICOM
    series folder) and failures for ambiguous names. Raises :class:`InputError` when
    ``path`` does not exist."""
    p = Path(path)
    if not p.exists():
        raise InputError(p, "no such file or folder")
    if is_single_case(p):
        return {case_stem(p): p}, []
    return _list_cases(p)


def match_cases(
    pred: str | Path, ref: str | Path, *, roles: tuple[str, str] = ("prediction", "reference")
) -> tuple[list[CasePair], list[CaseFailure]]:
    """Pair prediction and reference cases by name (see module docstring).

    Returns the pairs (sorted by case name) and failures for unmatched or ambiguous cases.
    Raises :class:`InputError` when ``pred`` or ``ref`` does not exist or holds no cases.
    ``roles`` names the two sides in messages (e.g. ``("segmentation", "image")``).
    """
    p, r = Path(pred), Path(ref)
    for path, what in ((p, roles[0]), (r, roles[1])):
        if not path.exists():
            raise InputError(path, f"{what} file or folder does not exist")
    if is_single_case(p) or is_single_case(r):
        if is_single_case(p) != is_single_case(r):
            single, other = (p, r) if is_single_case(p) else (r, p)
            raise InputError(
                other,
                f"expected a single case to match {single} (a file or a DICOM series folder), "
                "found a folder of cases",
            )
        return [CasePair(case_stem(r), p, r)], []
    pc, pf = _list_cases(p)
    rc, rf = _list_cases(r)
    failures = pf + rf
    bad = {f.case for f in failures}
    pairs: list[CasePair] = []
    for key in sorted(set(pc) | set(rc)):
        if key in bad:
            continue
        if key not in pc:
            failures.append(
                CaseFailure(key, None, rc[key], f"{p}: no {roles[0]} for case {key!r} ({rc[key]})")
            )
        elif key not in rc:
            failures.append(
                CaseFailure(key, pc[key], None, f"{r}: no {roles[1]} for case {key!r} ({pc[key]})")
            )
        else:
            pairs.append(CasePair(key, pc[key], rc[key]))
    if not pairs and not failures:
        raise InputError(
            p, f"expected NIfTI/ITK files or DICOM case folders matching {r}, found none"
        )
    return pairs, failures


__all__ = [
    "CASE_SUFFIXES",
    "CaseFailure",
    "CasePair",
    "is_single_case",
    "list_cases",
    "match_cases",
]
