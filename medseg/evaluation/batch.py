"""The evaluation batch: :func:`evaluate_folders` reads every matched case once, computes all
its labels and regions, completes the table so no case drops out of a mean, summarises and
writes the outputs (see :mod:`medseg.evaluation`)."""

from __future__ import annotations

import json
import logging
import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medseg._version import __version__
from medseg.errors import ConfigError, MedsegError
from medseg.evaluation.cases import CaseFailure, match_cases
from medseg.evaluation.tables import json_safe, rows_to_csv, summary_to_json
from medseg.io.manifest import RunManifest
from medseg.io.outputs import check_not_inputs, output_path
from medseg.io.report import BatchReport, CaseOutcome
from medseg.io.run_files import write_run_files
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
from medseg.volume import check_same_frame_of_reference

log = logging.getLogger(__name__)

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

    def report(self, output: Path) -> BatchReport:
        """The cases as a :class:`~medseg.io.report.BatchReport` (evaluated or failed)."""
        failed = {f.case for f in self.failures}
        done = sorted({r.case for r in self.records} - failed)
        cases = [CaseOutcome(c, "done") for c in done]
        cases += [
            CaseOutcome(
                f.case,
                "failed",
                error=f.error,
                inputs=tuple(str(p) for p in (f.pred, f.ref) if p is not None),
            )
            for f in self.failures
        ]
        return BatchReport(output, cases, verb="evaluated")


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
    allow_other_frame_of_reference: bool = False,
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
        allow_other_frame_of_reference: evaluate a DICOM-derived prediction against a
            DICOM-derived reference of another study or frame of reference (refused by
            default, see :func:`~medseg.volume.check_same_frame_of_reference`).
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
        check_not_inputs([pred, ref], folder=out)
        manifest = RunManifest.open(out, "evaluate", overwrite=overwrite, compare=False)
        for name in files:
            manifest.check_replaceable(_path(out, name), overwrite)
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
        "allow_other_frame_of_reference": allow_other_frame_of_reference,
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
            check_same_frame_of_reference(
                ref_map, pred_map, allow_other_frame_of_reference=allow_other_frame_of_reference
            )
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


def _path(out: Path, name: str) -> Path:
    stem, _, ext = name.partition(".")
    return output_path(out, stem, "." + ext)


def write_outputs(result: EvaluationResult, out_dir: Path, *, overwrite: bool) -> dict[str, Path]:
    """Write the five output files (six with lesion-wise records) atomically, recorded in the
    run manifest ``evaluate.json``; returns ``{name: path}``. Only files medseg wrote are
    replaced (with ``overwrite``), and a recorded file this run does not produce (an earlier
    ``lesions.csv``) is removed."""
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
        "settings.json": json.dumps(json_safe(result.settings), indent=2) + "\n",
    }
    if result.objects:
        lesions = (les.as_dict() for o in result.objects for les in o.lesions)
        texts[LESION_FILE] = rows_to_csv(lesions, LESION_FIELDS)
    out = Path(out_dir)
    check_not_inputs(
        [result.settings["pred"], result.settings["ref"]],
        folder=out,
        files=[_path(out, n) for n in texts],
    )
    manifest = RunManifest.open(
        out, "evaluate", options=result.settings, overwrite=overwrite, compare=False
    )
    write_run_files(manifest, {_path(out, n): t for n, t in texts.items()}, overwrite=overwrite)
    manifest.record_report(result.report(out))
    return {name: _path(out, name) for name in texts}


__all__ = ["LESION_FILE", "OUTPUT_FILES", "EvaluationResult", "evaluate_folders", "write_outputs"]
