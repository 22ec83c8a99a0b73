"""Write a :class:`~medseg.volumetry.batch.VolumetryResult` to an output folder, atomically.

==========================  =====================================================================
``volumes.csv``             one row per case and label (:data:`~medseg.volumetry.VOLUME_FIELDS`)
``statistics/<case>.json``  per case, keyed by structure name as TotalSegmentator's
                            ``statistics.json`` (``volume`` in mm³ and ``intensity`` = mean, as
                            there), plus every other field with its unit in its name
``longitudinal.csv``        with a baseline: one row per case and label (``CHANGE_FIELDS``)
``comparison.csv``          with a second set: one row per case and label (``COMPARISON_FIELDS``)
``agreement.csv``           with a second set: Bland–Altman statistics per label and pooled
``failures.csv``            ``case, role, path, error`` (header only when every case succeeded)
``settings.json``           inputs, label names and the definitions used
``report.html``             the self-contained HTML report (:mod:`medseg.volumetry.html`)
==========================  =====================================================================

Nothing is overwritten unless ``overwrite=True`` (checked before any work by
:func:`check_outputs`); with it, outputs of an earlier run that this run does not produce
(another case's JSON, a ``longitudinal.csv`` without ``--baseline`` ...) are removed so the
folder describes one run.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from medseg.errors import OutputExistsError
from medseg.evaluation import rows_to_csv
from medseg.io.atomic import atomic_write_text
from medseg.volumetry.batch import FAILURE_FIELDS, VolumetryResult
from medseg.volumetry.change import AGREEMENT_FIELDS, CHANGE_FIELDS, COMPARISON_FIELDS
from medseg.volumetry.stats import INTENSITY_KEYS, VOLUME_FIELDS, LabelStats

OUTPUT_FILES: tuple[str, ...] = ("volumes.csv", "failures.csv", "settings.json", "report.html")
OPTIONAL_FILES: tuple[str, ...] = ("longitudinal.csv", "comparison.csv", "agreement.csv")
STATISTICS_DIR = "statistics"


def check_outputs(out_dir: str | Path, overwrite: bool) -> None:
    """Check the output folder up front (:func:`medseg.io.atomic.check_output_dir`: it can be
    created and written) and raise :class:`OutputExistsError` if it holds outputs and not
    ``overwrite``."""
    from medseg.io.atomic import check_output_dir

    out = check_output_dir(out_dir)
    if overwrite:
        return
    for name in OUTPUT_FILES + OPTIONAL_FILES:
        if (out / name).exists():
            raise OutputExistsError(out / name)
    stats = out / STATISTICS_DIR
    if stats.is_dir() and any(stats.glob("*.json")):
        raise OutputExistsError(stats)


def _num(v: float) -> float | None:
    return None if not math.isfinite(v) else float(v)


def _xyz(v: Sequence[float]) -> list[float | None]:
    return [_num(x) for x in v]


def statistics_json(records: Iterable[LabelStats]) -> dict[str, dict[str, Any]]:
    """One case's statistics keyed by structure name, as TotalSegmentator's
    ``statistics.json`` (``{"liver": {"volume": mm³, "intensity": mean}, ...}``) plus the
    other fields; undefined values are ``null`` (never 0 for a structure that is there)."""
    out: dict[str, dict[str, Any]] = {}
    for r in records:
        key = r.name if r.name not in out else f"{r.name} (label {r.label})"
        it = r.intensity
        entry: dict[str, Any] = {
            "volume": r.volume_mm3,
            "intensity": None if it is None else _num(it.mean),
            "label": r.label,
            "absent": r.absent,
            "voxels": r.voxels,
            "volume_mm3": r.volume_mm3,
            "volume_ml": r.volume_ml,
            "components": r.components,
            "component_volumes_ml": list(r.component_volumes_ml),
            "touches_border": r.touches_border,
            "border_faces": list(r.border_faces),
            "diameter_mm": _num(r.diameter_mm),
            "centroid_ras_mm": _xyz(r.centroid_mm),
            "bbox_ras_mm": {"min": _xyz(r.bbox_min_mm), "max": _xyz(r.bbox_max_mm)},
            "bbox_voxel_index": None
            if r.bbox_index is None
            else {"min": [b[0] for b in r.bbox_index], "max": [b[1] for b in r.bbox_index]},
            "intensity_units": None if it is None else (it.units or None),
        }
        for k in INTENSITY_KEYS:
            entry[f"intensity_{k}"] = None if it is None else _num(getattr(it, k))
        out[key] = entry
    return out


def write_outputs(
    result: VolumetryResult, out_dir: str | Path, *, overwrite: bool = False, html: bool = True
) -> dict[str, Path]:
    """Write every output of ``result`` into ``out_dir`` atomically; returns ``{name: path}``."""
    out = Path(out_dir)
    check_outputs(out, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    texts: dict[str, str] = {
        "volumes.csv": rows_to_csv((r.as_dict() for r in result.records), VOLUME_FIELDS),
        "failures.csv": rows_to_csv((f.as_dict() for f in result.failures), FAILURE_FIELDS),
        "settings.json": json.dumps(result.settings, indent=2) + "\n",
    }
    if result.longitudinal is not None:
        texts["longitudinal.csv"] = rows_to_csv(
            (r.as_dict() for r in result.longitudinal), CHANGE_FIELDS
        )
    if result.comparison is not None:
        texts["comparison.csv"] = rows_to_csv(
            (r.as_dict() for r in result.comparison), COMPARISON_FIELDS
        )
        texts["agreement.csv"] = rows_to_csv(
            (a.as_dict() for a in result.agreement or []), AGREEMENT_FIELDS
        )
    for case in result.cases:
        doc = statistics_json(case.records)
        texts[f"{STATISTICS_DIR}/{case.case}.json"] = (
            json.dumps(doc, indent=2, allow_nan=False) + "\n"
        )
    if html:
        from medseg.volumetry.html import render_report

        texts["report.html"] = render_report(result)
    paths: dict[str, Path] = {}
    for name, text in texts.items():
        paths[name] = atomic_write_text(out / name, text, overwrite=overwrite)
    if overwrite:
        _remove_stale(out, set(texts))
    result.outputs.update(paths)
    return paths


def _remove_stale(out: Path, written: set[str]) -> None:
    for name in OUTPUT_FILES + OPTIONAL_FILES:
        if name not in written and (out / name).is_file():
            (out / name).unlink()
    stats = out / STATISTICS_DIR
    if stats.is_dir():
        for p in stats.glob("*.json"):
            if f"{STATISTICS_DIR}/{p.name}" not in written:
                p.unlink()


__all__ = [
    "OPTIONAL_FILES",
    "OUTPUT_FILES",
    "STATISTICS_DIR",
    "check_outputs",
    "statistics_json",
    "write_outputs",
]
