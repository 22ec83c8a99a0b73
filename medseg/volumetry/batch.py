"""Volumetry of a folder of cases: match segmentations with images (and with a baseline or a
second set), compute every case's statistics, and collect failures without stopping.

Cases are matched by name exactly as ``medseg evaluate`` matches them
(:func:`medseg.evaluation.match_cases`): a file's name without its format suffix, or a
sub-folder's name (a DICOM series folder is one case); two single files (or series folders)
form one case. A case whose segmentation or image cannot be read, whose grids differ, or
that has no counterpart is reported as a failure (file, expected, found) and the batch goes on.

Every case gets a record for every label named in the label-name table and every label found
in any case of the batch (absent ones flagged ``absent``), so tables line up across cases.
"""

from __future__ import annotations

import csv
import logging
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from medseg._version import __version__
from medseg.errors import InputError, MedsegError
from medseg.evaluation import CaseFailure, is_single_case, list_cases, match_cases
from medseg.io.outputs import case_stem
from medseg.io.report import BatchReport, CaseOutcome
from medseg.volume import LabelMap, Volume, check_same_frame_of_reference
from medseg.volumetry.change import (
    Agreement,
    ChangeRecord,
    ComparisonRecord,
    VolumeEntry,
    agreement,
    compare_volumes,
    entries,
    longitudinal_change,
    read_volumes_csv,
)
from medseg.volumetry.stats import PERCENTILES, LabelStats, absent_record, label_statistics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Failure:
    """A case (or one of its inputs) that could not be measured: ``role`` is
    ``segmentation``, ``image``, ``baseline`` or ``compare``; ``error`` names the file, what
    was expected and what was found."""

    case: str
    role: str
    path: str
    error: str

    def as_dict(self) -> dict[str, str]:
        return {"case": self.case, "role": self.role, "path": self.path, "error": self.error}


FAILURE_FIELDS: tuple[str, ...] = ("case", "role", "path", "error")


@dataclass
class CaseResult:
    """One measured case: its inputs, grid, records and (optionally) its pictures."""

    case: str
    segmentation: Path
    image: Path | None
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    orientation: str
    units: str
    records: list[LabelStats]
    figures: dict[int, tuple[str, str]] = field(default_factory=dict)
    window: str = ""


@dataclass
class VolumetryResult:
    """What :func:`measure_folder` computed (and, through ``report.write_outputs``, wrote)."""

    cases: list[CaseResult]
    failures: list[Failure]
    settings: dict[str, Any]
    longitudinal: list[ChangeRecord] | None = None
    comparison: list[ComparisonRecord] | None = None
    agreement: list[Agreement] | None = None
    outputs: dict[str, Path] = field(default_factory=dict)

    @property
    def records(self) -> list[LabelStats]:
        """Every case's records, case by case, ascending by label."""
        return [r for c in self.cases for r in c.records]

    @property
    def ok(self) -> bool:
        return not self.failures

    def report(self, output: Path) -> BatchReport:
        """The cases as a :class:`~medseg.io.report.BatchReport` (measured or failed)."""
        failed = {f.case for f in self.failures}
        cases = [
            CaseOutcome(c.case, "done", inputs=(str(c.segmentation),))
            for c in self.cases
            if c.case not in failed
        ]
        cases += [
            CaseOutcome(f.case, "failed", error=f.error, inputs=(f.path,) if f.path else ())
            for f in self.failures
        ]
        return BatchReport(output, cases, verb="measured")


def _failure(f: CaseFailure, role: str) -> Failure:
    path = f.pred if f.pred is not None else f.ref
    return Failure(f.case, role, "" if path is None else str(path), f.error)


def _read_labels(path: Path, names: Mapping[int, str] | None) -> LabelMap:
    from medseg.io import read_label_map

    return read_label_map(path, names)


def _pairs(
    segmentations: Path, images: Path | None
) -> tuple[list[tuple[str, Path, Path | None]], list[Failure]]:
    if images is None:
        cases, fails = list_cases(segmentations)
        if not cases and not fails:
            raise InputError(
                segmentations, "expected NIfTI/ITK files or DICOM case folders, found none"
            )
        return [(k, p, None) for k, p in sorted(cases.items())], [
            _failure(f, "segmentation") for f in fails
        ]
    pairs, fails = match_cases(segmentations, images, roles=("segmentation", "image"))
    out_f = [_failure(f, "image" if f.ref is None else "segmentation") for f in fails]
    return [(p.case, p.pred, p.ref) for p in pairs], out_f


def measure_case(
    case: str,
    labels: LabelMap,
    image: Volume | None,
    label_names: Mapping[int, str] | None = None,
    *,
    figures: bool = True,
) -> CaseResult:
    """Measure one case (and draw its pictures when ``figures``); the image, if any, must be
    on the label map's grid (:class:`~medseg.errors.GeometryMismatchError` otherwise)."""
    records = label_statistics(labels, image, case=case, label_names=label_names)
    res = CaseResult(
        case,
        Path(labels.name),
        None if image is None else Path(image.name),
        labels.shape,
        labels.spacing,
        labels.orientation,
        (image.meta.units or "") if image is not None else "",
        records,
    )
    if figures:
        from medseg.volumetry.figures import case_figures

        res.figures, res.window = case_figures(labels, image, records)
    return res


def _with_units(image: Volume, units: str | None) -> Volume:
    """``image`` with ``meta.units`` set to ``units`` (when its file records none)."""
    if units is None or image.meta.units == units:
        return image
    if image.meta.units:
        raise InputError(
            image.source,
            f"image records its units as {image.meta.units!r}; expected {units!r} "
            "(as given for the images)",
        )
    return Volume(image.array, image.affine, image.source, replace(image.meta, units=units))


def _read_case(
    case: str,
    seg: Path,
    img: Path | None,
    names: Mapping[int, str] | None,
    figures: bool,
    image_units: str | None = None,
    allow_other_frame_of_reference: bool = False,
) -> CaseResult | Failure:
    """Read and measure one case; a failure names the input that failed."""
    from medseg.io import read_volume

    try:
        labels = _read_labels(seg, names)
    except (MedsegError, OSError, EOFError) as exc:
        return Failure(case, "segmentation", str(seg), str(exc))
    image = None
    if img is not None:
        try:
            image = _with_units(read_volume(img), image_units)
        except (MedsegError, OSError, EOFError) as exc:
            return Failure(case, "image", str(img), str(exc))
    try:
        if image is not None:
            check_same_frame_of_reference(
                image, labels, allow_other_frame_of_reference=allow_other_frame_of_reference
            )
        return measure_case(case, labels, image, names, figures=figures)
    except MedsegError as exc:
        return Failure(case, "grid" if image is not None else "segmentation", str(seg), str(exc))


def _complete(cases: list[CaseResult]) -> None:
    """Give every case a record for every label seen in any case (absent where missing)."""
    seen: dict[int, str] = {}
    for c in cases:
        for r in c.records:
            seen.setdefault(r.label, r.name)
    for c in cases:
        have = {r.label for r in c.records}
        extra = [
            absent_record(c.case, v, seen[v], c.image is not None, c.units)
            for v in sorted(set(seen) - have)
        ]
        if extra:
            c.records = sorted(c.records + extra, key=lambda r: r.label)


def _volumes_of(path: Path, names: Mapping[int, str] | None, case: str) -> dict[int, VolumeEntry]:
    labels = _read_labels(path, names)
    return entries(label_statistics(labels, case=case, label_names=names))


def _other_side(
    current: Sequence[CaseResult],
    other: Path,
    role: str,
    names: Mapping[int, str] | None,
    single: bool,
) -> tuple[dict[str, tuple[str, dict[int, VolumeEntry]]], list[Failure]]:
    """``{case: (other case name, volumes)}`` for a baseline / comparison set given as a
    folder or file of segmentations, a previous output folder (``volumes.csv``) or, for a
    baseline, a CSV file pairing cases (columns ``case, baseline``). ``single``: the
    segmentations were one case, so a single other case pairs with it whatever its name."""
    if not other.exists():
        raise InputError(other, f"{role} file or folder does not exist")
    out: dict[str, tuple[str, dict[int, VolumeEntry]]] = {}
    fails: list[Failure] = []
    if other.is_dir() and (other / "volumes.csv").is_file():
        table_path = other / "volumes.csv"
        table = read_volumes_csv(table_path)
        for c in current:
            key = next(iter(table)) if single and len(table) == 1 else c.case
            if key in table:
                out[c.case] = (key, table[key])
            else:
                msg = f"{table_path}: no {role} rows for case {c.case!r}"
                fails.append(Failure(c.case, role, str(table_path), msg))
        return out, fails
    paths: dict[str, Path]
    if other.is_file() and other.suffix.lower() == ".csv":
        paths = _pairing_csv(other, role)
    elif is_single_case(other):
        paths = {c.case: other for c in current} if single else {}
        if not single:
            raise InputError(
                other,
                f"expected a folder of {role} cases to match the folder of segmentations, "
                "found a single case",
            )
    else:
        listed, list_fails = list_cases(other)
        fails += [_failure(f, role) for f in list_fails]
        paths = {c.case: listed[c.case] for c in current if c.case in listed}
    for c in current:
        if c.case not in paths:
            msg = f"{other}: no {role} for case {c.case!r}"
            fails.append(Failure(c.case, role, str(other), msg))
            continue
        p = paths[c.case]
        try:
            out[c.case] = (case_stem(p), _volumes_of(p, names, c.case))
        except (MedsegError, OSError, EOFError) as exc:
            fails.append(Failure(c.case, role, str(p), str(exc)))
    return out, fails


def _pairing_csv(path: Path, role: str) -> dict[str, Path]:
    """``{case: baseline path}`` from a CSV with columns ``case`` and ``baseline`` (paths
    relative to the CSV's folder unless absolute)."""
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        cols = reader.fieldnames or []
        if "case" not in cols or role not in cols:
            raise InputError(
                path,
                f"expected a CSV with columns 'case' and '{role}', "
                f"found {', '.join(cols) or 'no header'}",
            )
        out: dict[str, Path] = {}
        for n, row in enumerate(reader, start=2):
            case, target = (row["case"] or "").strip(), (row[role] or "").strip()
            if not case or not target:
                raise InputError(path, f"line {n}: expected a case name and a {role} path")
            if case in out:
                raise InputError(path, f"line {n}: case {case!r} is listed twice")
            p = Path(target)
            out[case] = p if p.is_absolute() else path.parent / p
    return out


def measure_folder(
    segmentations: str | Path,
    *,
    images: str | Path | None = None,
    baseline: str | Path | None = None,
    compare: str | Path | None = None,
    label_names: Mapping[int, str] | None = None,
    image_units: str | None = None,
    figures: bool = True,
    progress: bool = False,
    allow_other_frame_of_reference: bool = False,
) -> VolumetryResult:
    """Measure every case of ``segmentations`` (a folder of cases, or one file / DICOM series).

    Args:
        segmentations: label maps (NIfTI, NRRD/MHA, DICOM series folders ...).
        images: matching images (same grid per case, checked) for intensity statistics.
        baseline: an earlier time point: a folder (or file) of segmentations matched by case
            name, a previous output folder holding ``volumes.csv``, or a CSV pairing cases
            (columns ``case, baseline``). Adds :attr:`VolumetryResult.longitudinal`.
        compare: a second set of segmentations (e.g. references) matched by case name, or a
            previous output folder; adds ``comparison`` and ``agreement``.
        label_names: ``{value: name}`` (overrides names stored with the label maps); every
            named label gets a record in every case.
        image_units: the images' units (e.g. ``"HU"``) for files that do not record them
            (NIfTI); an image recording other units is a failure.
        figures: draw the orthogonal-slice pictures for the report.
        progress: show a tqdm progress bar on stderr.
        allow_other_frame_of_reference: measure a DICOM-derived segmentation against a DICOM
            image of another study or frame of reference (refused by default, see
            :func:`~medseg.volume.check_same_frame_of_reference`).
    """
    from tqdm import tqdm

    seg_path = Path(segmentations)
    img_path = None if images is None else Path(images)
    pairs, failures = _pairs(seg_path, img_path)
    single = is_single_case(seg_path)
    cases: list[CaseResult] = []
    bar = tqdm(pairs, desc="volumetry", unit="case", file=sys.stderr, disable=not progress)
    for case, seg, img in bar:
        res = _read_case(
            case, seg, img, label_names, figures, image_units, allow_other_frame_of_reference
        )
        if isinstance(res, Failure):
            failures.append(res)
            log.info("case %s failed: %s", case, res.error)
        else:
            cases.append(res)
    bar.close()
    _complete(cases)

    settings: dict[str, Any] = {
        "medseg_version": __version__,
        "segmentations": str(seg_path),
        "images": None if img_path is None else str(img_path),
        "image_units": image_units,
        "allow_other_frame_of_reference": allow_other_frame_of_reference,
        "baseline": None if baseline is None else str(baseline),
        "compare": None if compare is None else str(compare),
        "label_names": {str(k): v for k, v in sorted((label_names or {}).items())},
        "connectivity": 26,
        "volume": "voxels x |det(affine[:3, :3])| mm^3 (= voxels x product of spacing); "
        "mL = mm^3 / 1000",
        "diameter": "largest distance between two voxel centres (convex hull), mm",
        "centroid_bbox": "RAS+ mm, voxel centres",
        "touches_border": "a voxel of the label lies on the outermost layer of the grid",
        "intensity": "mean, population std (ddof=0), min, max, percentiles "
        f"{list(PERCENTILES)} with linear interpolation (median = 50th)",
        "relative_change": "100 x (follow-up - baseline) / baseline; NaN when baseline is 0",
        "relative_difference": "100 x (this - other) / other; NaN when other is 0",
    }
    result = VolumetryResult(cases, failures, settings)
    lookup = {c.case: c for c in cases}
    if baseline is not None:
        base, fails = _other_side(cases, Path(baseline), "baseline", label_names, single)
        failures += fails
        result.longitudinal = [
            r
            for case, (bname, vols) in sorted(base.items())
            for r in longitudinal_change(case, entries(lookup[case].records), vols, bname)
        ]
    if compare is not None:
        other, fails = _other_side(cases, Path(compare), "compare", label_names, single)
        failures += fails
        result.comparison = [
            r
            for case, (_, vols) in sorted(other.items())
            for r in compare_volumes(case, entries(lookup[case].records), vols)
        ]
        result.agreement = agreement(result.comparison)
    failures.sort(key=lambda f: (f.case, f.role))
    return result


__all__ = [
    "FAILURE_FIELDS",
    "CaseResult",
    "Failure",
    "VolumetryResult",
    "measure_case",
    "measure_folder",
]
