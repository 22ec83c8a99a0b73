"""What to predict: the cases of an input path, each with its channels and its output name.

An input is one of:

* one image file (NIfTI, NRRD, MetaImage) or one DICOM file: one case;
* a CSV listing like ``medseg check`` reads (``case_id,<channel columns>[,label]``): its
  cases (labels are ignored);
* a folder: its image files (top level) — one case per file, or per nnU-Net case
  (``<case>_0000.nii.gz``, ``<case>_0001.nii.gz``, … one file per channel) — and every DICOM
  series found anywhere below it (as ``medseg info`` lists them). Series that cannot be read
  as a volume are reported with the reason, not predicted.

Case names come from :mod:`medseg.io.outputs` (:func:`~medseg.io.outputs.case_stem`,
:func:`~medseg.io.outputs.series_name`): a DICOM series' name is built from the series, never
from folder or patient names:
``s<SeriesNumber>_<SeriesDescription>_<8 hex of the SeriesInstanceUID and split key>``.
Output paths are built from the names by :func:`~medseg.io.outputs.output_path`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from medseg.errors import ConfigError, InputError
from medseg.io import IMAGE_SUFFIXES
from medseg.io.atomic import full_suffix
from medseg.io.outputs import case_stem, series_name

_NNUNET = re.compile(r"^(?P<case>.+)_(?P<ch>\d{4})(?P<ext>\.nii\.gz|\.nii|\.nrrd|\.mha|\.mhd)$")


@dataclass(frozen=True)
class ChannelSource:
    """Where one channel is read from: a file, or a DICOM folder and one of its series."""

    path: Path
    series: str | None = None  # the SeriesInfo key, for DICOM

    def describe(self) -> str:
        return str(self.path) if self.series is None else f"{self.path} (series {self.series})"


@dataclass(frozen=True)
class CaseInput:
    """One case to predict: its output name and its channels, in channel order.

    ``dicom`` is true when the case is a DICOM series (a DICOM SEG can reference it)."""

    name: str
    channels: tuple[ChannelSource, ...]
    dicom: bool = False


@dataclass
class InputScan:
    """The cases found under an input, and what was found but cannot be predicted
    (``problems``: ``(what, reason)``; e.g. a DICOM series refused as a volume, an nnU-Net case
    with a channel file missing). ``skipped``: entries that are not scans at all (other files,
    dangling links, FIFOs, non-image DICOM objects), with the reason."""

    cases: list[CaseInput] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)


def _image_cases(files: Sequence[Path], n_channels: int, scan: InputScan) -> None:
    groups: dict[str, dict[int, Path]] = {}
    singles: list[Path] = []
    for f in files:
        m = _NNUNET.match(f.name)
        if m:
            groups.setdefault(m.group("case"), {})[int(m.group("ch"))] = f
        else:
            singles.append(f)
    for f in singles:
        if n_channels != 1:
            scan.problems.append(
                (
                    str(f),
                    f"the model expects {n_channels} channels; name them "
                    f"{case_stem(f)}_0000{full_suffix(f)} ... _{n_channels - 1:04d} "
                    "(nnU-Net naming)",
                )
            )
            continue
        scan.cases.append(CaseInput(case_stem(f), (ChannelSource(f),)))
    for case, chans in sorted(groups.items()):
        want = list(range(n_channels))
        if sorted(chans) != want:
            found = ", ".join(f"_{c:04d}" for c in sorted(chans))
            need = ", ".join(f"_{c:04d}" for c in want)
            scan.problems.append((case, f"expected channel files {need}, found {found}"))
            continue
        scan.cases.append(CaseInput(case, tuple(ChannelSource(chans[c]) for c in want)))


def _dicom_cases(root: Path, n_channels: int, scan: InputScan) -> None:
    from medseg.io.dicom import scan_dicom_folder

    dicom = scan_dicom_folder(root)
    scan.skipped += [(p, why) for p, why in dicom.skipped if full_suffix(p) not in IMAGE_SUFFIXES]
    for s in dicom.series:
        what = f"{root} series {s.index} ({s.description or 'no description'})"
        if s.problem is not None:
            scan.problems.append((what, s.problem))
            continue
        bad = dicom.unreadable_for(s)
        if bad:
            scan.problems.append((what, f"{bad[0][0]}: {bad[0][1]}"))
            continue
        if n_channels != 1:
            scan.problems.append(
                (what, f"the model expects {n_channels} channels; a DICOM series is one")
            )
            continue
        name = series_name(s.series_number, s.description, s.key)
        scan.cases.append(CaseInput(name, (ChannelSource(root, s.key),), dicom=True))


def _has_dicom(files: Sequence[Path]) -> bool:
    from medseg.io.dicom import is_dicom_file

    return any(full_suffix(p) not in IMAGE_SUFFIXES and is_dicom_file(p) for p in files)


def find_cases(path: str | Path, n_channels: int) -> InputScan:
    """The cases under ``path`` for a model with ``n_channels`` input channels (see the
    module docstring); names are unique (a clash is an :class:`InputError`)."""
    from medseg.io.files import path_problem, walk_files

    p = Path(path)
    scan = InputScan()
    problem = path_problem(p, allow_dir=True)
    if problem is not None:
        raise InputError(p, problem)
    if p.is_file():
        suffix = full_suffix(p)
        if suffix == ".csv":
            from medseg.datasets import load_dataset

            ds = load_dataset(p)
            if len(ds.channel_names) != n_channels:
                raise InputError(
                    p, f"lists {len(ds.channel_names)} channel(s), the model expects {n_channels}"
                )
            for c in ds.cases:
                scan.cases.append(CaseInput(c.case_id, tuple(ChannelSource(f) for f in c.images)))
        elif suffix in IMAGE_SUFFIXES:
            _image_cases([p], n_channels, scan)
        else:
            from medseg.io.dicom import is_dicom_file

            if not is_dicom_file(p):
                raise InputError(
                    p,
                    "expected an image file (NIfTI, NRRD, MHA), a DICOM file or folder, or "
                    "a CSV listing",
                )
            _dicom_cases(p, n_channels, scan)
    else:
        every, scan.skipped = walk_files(p)
        top = sorted(f for f in every if f.parent == p and full_suffix(f) in IMAGE_SUFFIXES)
        _image_cases(top, n_channels, scan)
        if _has_dicom(every):
            _dicom_cases(p, n_channels, scan)
        else:
            scan.skipped += [(f, "not a scan") for f in every if f not in top]
        if not scan.cases and not scan.problems:
            shown = "; ".join(f"{f}: {why}" for f, why in scan.skipped[:3])
            more = f" (and {len(scan.skipped) - 3} more)" if len(scan.skipped) > 3 else ""
            raise InputError(
                p,
                "no scans found: expected image files (.nii.gz, .nii, .nrrd, .mha, .mhd), "
                "DICOM series or a CSV listing" + (f"; skipped {shown}{more}" if shown else ""),
            )
    names = [c.name for c in scan.cases]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise InputError(p, f"several inputs would be written as {dup}; rename them")
    scan.cases.sort(key=lambda c: c.name)
    return scan


def shard(cases: Sequence[CaseInput], num_parts: int, part_id: int) -> list[CaseInput]:
    """The cases of part ``part_id`` of ``num_parts`` (every ``num_parts``-th case of the
    sorted list, nnU-Net's ``--num_parts/--part_id``): the parts together hold every case once."""
    if num_parts < 1 or not 0 <= part_id < num_parts:
        raise ConfigError(
            f"part_id: expected 0 <= part_id < num_parts, found {part_id} of {num_parts}",
            param="part_id",
        )
    return list(cases[part_id::num_parts])


__all__ = [
    "CaseInput",
    "ChannelSource",
    "InputScan",
    "find_cases",
    "shard",
]
