"""Batch evaluation: match prediction and reference cases, compute metrics, write CSV/JSON.

Cases are matched by name: a file's name without its format suffix (``case_01.nii.gz`` →
``case_01``; ``.nii``, ``.nii.gz``, ``.nrrd``, ``.mha``, ``.mhd``, ``.dcm``), or a sub-folder's
name (a DICOM series folder is one case). ``pred`` and ``ref`` may also each be a single file
or a single DICOM series folder (a folder without sub-folders): then they form one case.

Every case is read once and all its labels are computed from that read. A case that cannot be
read, whose grids differ, or that has no counterpart on the other side is reported as a
failure (file, expected, found); the batch continues and :attr:`EvaluationResult.ok` is false.

Outputs in ``out_dir`` (written atomically, never overwritten unless ``overwrite=True``):

================  ==================================================================
``metrics.csv``   one row per case and label/region (:data:`~medseg.metrics.RECORD_FIELDS`)
``summary.csv``   one row per label and metric (:data:`~medseg.metrics.SUMMARY_FIELDS`)
``summary.json``  the same statistics grouped by label, plus the failures
``failures.csv``  ``case, pred, ref, error`` (header only when every case succeeded)
``settings.json`` resolved labels, regions, tolerance, empty-case policy, surface definition
``lesions.csv``   with ``lesion_wise``: one row per reference lesion (:data:`~medseg.metrics.
                  LESION_FIELDS`); ``metrics.csv`` then also has the lesion-wise and instance
                  columns (:data:`~medseg.metrics.OBJECT_FIELDS`) and the summaries their
                  statistics (:data:`~medseg.metrics.OBJECT_SUMMARY_METRICS`)
================  ==================================================================
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medseg import __version__
from medseg.errors import ConfigError, InputError, MedsegError, UnreadableDicomError
from medseg.io import ITK_SUFFIXES, NIFTI_SUFFIXES
from medseg.io.atomic import atomic_write_text, check_output_dir, full_suffix
from medseg.io.dicom.headers import sniff_dicom
from medseg.io.files import path_problem
from medseg.metrics import (
    LESION_FIELDS,
    OBJECT_FIELDS,
    RECORD_FIELDS,
    SUMMARY_FIELDS,
    EmptyPolicy,
    LabelRecord,
    LesionWiseOptions,
    MetricSummary,
    ObjectRecord,
    Region,
    both_empty_record,
    empty_object_record,
    evaluate_objects,
    evaluate_pair,
    parse_regions,
    summarize,
    summarize_objects,
)
from medseg.metrics.surface import METHODS, SURFACES, DistanceMethod, SurfaceKind

log = logging.getLogger(__name__)

#: File suffixes recognised as one case each.
CASE_SUFFIXES: tuple[str, ...] = (*NIFTI_SUFFIXES, *ITK_SUFFIXES, ".dcm")
OUTPUT_FILES: tuple[str, ...] = (
    "metrics.csv",
    "summary.csv",
    "summary.json",
    "failures.csv",
    "settings.json",
)
#: The per-lesion table, written with ``lesion_wise``.
LESION_FILE = "lesions.csv"


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


@dataclass(frozen=True)
class EvaluationResult:
    """What :func:`evaluate_folders` computed and wrote."""

    records: list[LabelRecord]
    summary: list[MetricSummary]
    failures: list[CaseFailure]
    n_cases: int
    settings: dict[str, Any]
    outputs: dict[str, Path] = field(default_factory=dict)
    #: With ``lesion_wise``: one record per entry of ``records`` (same order).
    objects: list[ObjectRecord] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every case was evaluated."""
        return not self.failures


def case_name(path: Path) -> str:
    """``case_01`` for ``case_01.nii.gz`` / ``case_01.nrrd`` / folder ``case_01``."""
    if path.is_dir():
        return path.name
    suffix = full_suffix(path)
    return path.name[: -len(suffix)] if suffix else path.name


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
        key = case_name(entry)
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
        return {case_name(p): p}, []
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
        return [CasePair(case_name(r), p, r)], []
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


# --- output formatting -----------------------------------------------------------------------


def _csv_value(v: Any) -> Any:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else repr(v)
    if isinstance(v, (list, tuple)):
        return ";".join(str(x) for x in v)
    return v


def _json_safe(v: Any) -> Any:
    if isinstance(v, float):
        return None if not math.isfinite(v) else v
    if isinstance(v, Mapping):
        return {str(k): _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    if isinstance(v, Path):
        return str(v)
    return v


def rows_to_csv(rows: Iterable[Mapping[str, Any]], fields: Sequence[str]) -> str:
    """CSV text (header + rows); floats in full precision, NaN as ``nan``, lists ``;``-joined."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(fields), lineterminator="\n")
    w.writeheader()
    for row in rows:
        w.writerow({k: _csv_value(row[k]) for k in fields})
    return buf.getvalue()


def summary_to_json(
    summary: Sequence[MetricSummary], failures: Sequence[CaseFailure], n_cases: int
) -> dict[str, Any]:
    """``{"n_cases", "n_failed", "labels": [{label, name, metrics: {...}}], "failures"}``."""
    labels: dict[tuple[str, str, str], dict[str, Any]] = {}
    for s in summary:
        entry = labels.setdefault(
            (s.kind, s.label, s.name),
            {"label": s.label, "name": s.name, "kind": s.kind, "metrics": {}},
        )
        d = s.as_dict()
        for k in ("label", "name", "kind", "metric"):
            d.pop(k)
        entry["metrics"][s.metric] = d
    return _json_safe(
        {
            "n_cases": n_cases,
            "n_failed": len(failures),
            "labels": list(labels.values()),
            "failures": [f.as_dict() for f in failures],
        }
    )


def format_table(summary: Sequence[MetricSummary], max_rows: int | None = None) -> str:
    """A short terminal table: per label, cases used, mean±std Dice, mean HD95, mean NSD (and,
    with lesion-wise summaries, the mean lesion-wise Dice, HD95 and PQ)."""
    by_label: dict[tuple[str, str, str], dict[str, MetricSummary]] = {}
    for s in summary:
        by_label.setdefault((s.kind, s.label, s.name), {})[s.metric] = s

    def fmt(s: MetricSummary | None, std: bool = False, digits: int = 3) -> str:
        if s is None or math.isnan(s.mean):
            return "n/a"
        return f"{s.mean:.{digits}f}" + (f"±{s.std:.{digits}f}" if std else "")

    head: tuple[str, ...] = ("label", "name", "cases", "dice", "hd95_mm", "nsd", "undefined")
    lesion_wise = any(s.metric == "lesion_dice" for s in summary)
    if lesion_wise:
        head += ("lesion_dice", "lesion_hd95_mm", "pq")
    rows = []
    for (_, label, name), m in by_label.items():
        d = m.get("dice")
        h = m.get("hd95_mm")
        row: tuple[str, ...] = (
            label,
            name,
            str(d.n_cases if d else 0),
            fmt(d, std=True),
            fmt(h, digits=2),
            fmt(m.get("nsd")),
            str(h.n_undefined if h else 0),
        )
        if lesion_wise:
            row += (fmt(m.get("lesion_dice")), fmt(m.get("lesion_hd95_mm"), digits=2))
            row += (fmt(m.get("pq")),)
        rows.append(row)
    if not rows:
        return "no labels evaluated"
    shown = rows if max_rows is None else rows[:max_rows]
    widths = [max([len(head[i]), *(len(r[i]) for r in shown)]) for i in range(len(head))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in shown]
    if len(shown) < len(rows):
        lines.append(f"... {len(rows) - len(shown)} more labels in summary.csv")
    return "\n".join(lines)


# --- the batch ---------------------------------------------------------------------------------


def _read(path: Path, label_names: Mapping[int, str] | None) -> Any:
    from medseg.io import read_label_map

    return read_label_map(path, label_names)


def evaluate_folders(
    pred: str | Path,
    ref: str | Path,
    out_dir: str | Path | None,
    *,
    labels: Iterable[int] | None = None,
    regions: Mapping[str, Iterable[int]] | Iterable[Region] | None = None,
    tolerance_mm: float = 1.0,
    policy: EmptyPolicy | None = None,
    surface: SurfaceKind = "border",
    method: DistanceMethod = "auto",
    label_names: Mapping[int, str] | None = None,
    overwrite: bool = False,
    progress: bool = False,
    lesion_wise: LesionWiseOptions | None = None,
) -> EvaluationResult:
    """Evaluate every matched case of ``pred`` against ``ref`` and write the outputs.

    Args:
        pred, ref: folders of cases, or one file / DICOM series folder each.
        out_dir: output folder (created); ``None`` computes without writing.
        labels: label values to report (default: every non-zero value found in any case; a
            label found in some cases gets a "both empty" row in the others).
        regions: composite structures, e.g. ``{"tumour_core": [1, 3, 4]}``.
        tolerance_mm: NSD tolerance in mm.
        policy: empty-mask conventions (:class:`~medseg.metrics.EmptyPolicy`).
        surface: ``"border"`` (default) or ``"surfels"``; method: distance algorithm.
        label_names: names for label values (override names stored with the label maps).
        overwrite: replace existing outputs (otherwise :class:`OutputExistsError` up front;
            an ``out_dir`` that cannot be written is an :class:`OutputError` up front).
        progress: show a tqdm progress bar on stderr.
        lesion_wise: also compute the BraTS 2023 lesion-wise scores and the instance metrics
            (:class:`~medseg.metrics.LesionWiseOptions`) and write ``lesions.csv``.
    """
    policy = policy or EmptyPolicy()
    region_list = parse_regions(regions)
    label_list = None if labels is None else sorted({int(v) for v in labels})
    if not (math.isfinite(tolerance_mm) and tolerance_mm >= 0):
        raise ConfigError(f"tolerance_mm must be finite and >= 0, found {tolerance_mm}")
    if surface not in SURFACES:
        raise ConfigError(f"unknown surface definition {surface!r}; expected one of {SURFACES}")
    if method not in METHODS:
        raise ConfigError(f"unknown distance method {method!r}; expected one of {METHODS}")
    out = None if out_dir is None else Path(out_dir)
    pairs, failures = match_cases(pred, ref)
    if out is not None:  # before any case is read: a bad --out fails at once
        files = OUTPUT_FILES + ((LESION_FILE,) if lesion_wise else ())
        check_output_dir(out, overwrite=overwrite, files=files)
    settings: dict[str, Any] = {
        "medseg_version": __version__,
        "pred": str(Path(pred)),
        "ref": str(Path(ref)),
        "labels": label_list if label_list is not None else "all non-zero labels present",
        "regions": {r.name: list(r.labels) for r in region_list},
        "label_names": {str(k): v for k, v in sorted((label_names or {}).items())},
        "tolerance_mm": tolerance_mm,
        "empty_policy": policy.describe(),
        "surface": surface,
        "distance_method": method,
        "hd95": "max of the two directed 95th percentiles (linear interpolation)",
        "spacing": "mm per array axis, from the reference's affine",
    }
    if lesion_wise is not None:
        settings["lesion_wise"] = lesion_wise.describe()
    objects: dict[tuple[str, str, str], ObjectRecord] = {}

    per_case: list[tuple[str, int, list[LabelRecord]]] = []
    from tqdm import tqdm

    bar = tqdm(pairs, desc="evaluate", unit="case", file=sys.stderr, disable=not progress)
    for pair in bar:
        try:
            ref_map = _read(pair.ref, label_names)
            pred_map = _read(pair.pred, label_names)
            recs = evaluate_pair(
                pred_map,
                ref_map,
                labels=label_list,
                regions=region_list,
                tolerance_mm=tolerance_mm,
                policy=policy,
                surface=surface,
                method=method,
                case=pair.case,
                label_names=label_names,
            )
            n_total = int(ref_map.array.size)
            if lesion_wise is not None:
                for o in evaluate_objects(
                    pred_map,
                    ref_map,
                    labels=[r.labels[0] for r in recs if r.kind == "label"],
                    regions=region_list,
                    options=lesion_wise,
                    case=pair.case,
                    label_names=label_names,
                ):
                    objects[(o.case, o.kind, o.label)] = o
        except (MedsegError, OSError, EOFError) as exc:
            failures.append(CaseFailure(pair.case, pair.pred, pair.ref, str(exc)))
            log.info("case %s failed: %s", pair.case, exc)
            continue
        per_case.append((pair.case, n_total, recs))
    bar.close()

    records = _complete(per_case, region_list, tolerance_mm, policy, surface, label_list)
    summary = summarize(records)
    object_list: list[ObjectRecord] = []
    if lesion_wise is not None:
        # Labels filled in as "both empty" have no lesion and no false positive.
        object_list = [
            objects.get((r.case, r.kind, r.label))
            or empty_object_record(r.case, r.label, r.name, r.kind, lesion_wise)
            for r in records
        ]
        summary += summarize_objects(object_list)
    failures.sort(key=lambda f: f.case)
    result = EvaluationResult(
        records,
        summary,
        failures,
        len(pairs) + _n_unmatched(failures),
        settings,
        objects=object_list,
    )
    if out is not None:
        result.outputs.update(write_outputs(result, out, overwrite=overwrite))
    return result


def _n_unmatched(failures: Sequence[CaseFailure]) -> int:
    return sum(1 for f in failures if f.pred is None or f.ref is None)


def _complete(
    per_case: list[tuple[str, int, list[LabelRecord]]],
    regions: list[Region],
    tolerance_mm: float,
    policy: EmptyPolicy,
    surface: SurfaceKind,
    label_list: list[int] | None,
) -> list[LabelRecord]:
    """All records, case by case; with automatic labels, every label seen in any case gets a
    row (a "both empty" record) in every case, so no case silently drops out of a mean."""
    seen: dict[int, str] = {}
    for _, _, recs in per_case:
        for r in recs:
            if r.kind == "label":
                seen.setdefault(r.labels[0], r.name)
    out: list[LabelRecord] = []
    for case, n_total, recs in per_case:
        if label_list is not None:
            out += recs
            continue
        label_recs = [r for r in recs if r.kind == "label"]
        have = {r.labels[0] for r in label_recs}
        for v in sorted(set(seen) - have):
            label_recs.append(
                both_empty_record(
                    case, str(v), seen[v], (v,), n_total, tolerance_mm, policy, surface
                )
            )
        label_recs.sort(key=lambda r: r.labels[0])
        out += label_recs + [r for r in recs if r.kind == "region"]
    return out


def write_outputs(result: EvaluationResult, out_dir: Path, *, overwrite: bool) -> dict[str, Path]:
    """Write the five output files (six with lesion-wise records) atomically; returns
    ``{name: path}``."""
    rows: Iterable[Mapping[str, Any]] = (r.as_dict() for r in result.records)
    fields: tuple[str, ...] = RECORD_FIELDS
    if result.objects:
        rows = (
            {**r.as_dict(), **o.as_dict()}
            for r, o in zip(result.records, result.objects, strict=True)
        )
        fields = RECORD_FIELDS + OBJECT_FIELDS
    texts = {
        "metrics.csv": rows_to_csv(rows, fields),
        "summary.csv": rows_to_csv((s.as_dict() for s in result.summary), SUMMARY_FIELDS),
        "summary.json": json.dumps(
            summary_to_json(result.summary, result.failures, result.n_cases), indent=2
        )
        + "\n",
        "failures.csv": rows_to_csv(
            (f.as_dict() for f in result.failures), ("case", "pred", "ref", "error")
        ),
        "settings.json": json.dumps(_json_safe(result.settings), indent=2) + "\n",
    }
    if result.objects:
        lesions = (les.as_dict() for o in result.objects for les in o.lesions)
        texts[LESION_FILE] = rows_to_csv(lesions, LESION_FIELDS)
    paths: dict[str, Path] = {}
    for name, text in texts.items():
        paths[name] = atomic_write_text(out_dir / name, text, overwrite=overwrite)
    return paths


__all__ = [
    "CASE_SUFFIXES",
    "LESION_FILE",
    "OUTPUT_FILES",
    "CaseFailure",
    "CasePair",
    "EvaluationResult",
    "case_name",
    "evaluate_folders",
    "format_table",
    "is_single_case",
    "list_cases",
    "match_cases",
    "rows_to_csv",
    "summary_to_json",
    "write_outputs",
]
