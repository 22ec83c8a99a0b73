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

Every path is built by :func:`medseg.io.outputs.output_path` (a case name from a file or a
CSV listing cannot leave the folder) and recorded in the run manifest ``volumetry.json``.
Nothing is overwritten unless ``overwrite=True`` (checked before any work by
:func:`check_outputs`); with it, the files an earlier run recorded and this run does not
produce (another case's JSON, a ``longitudinal.csv`` without ``--baseline`` ...) are removed
so the folder describes one run. A file medseg did not write is never replaced or removed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from medseg.errors import OutputExistsError
from medseg.io.manifest import RunManifest
from medseg.io.outputs import check_not_inputs, check_unique, output_path
from medseg.io.report import rows_to_csv
from medseg.io.run_files import write_run_files
from medseg.volumetry.batch import FAILURE_FIELDS, VolumetryResult
from medseg.volumetry.change import AGREEMENT_FIELDS, CHANGE_FIELDS, COMPARISON_FIELDS
from medseg.volumetry.stats import INTENSITY_KEYS, VOLUME_FIELDS, LabelStats

OUTPUT_FILES: tuple[str, ...] = ("volumes.csv", "failures.csv", "settings.json", "report.html")
OPTIONAL_FILES: tuple[str, ...] = ("longitudinal.csv", "comparison.csv", "agreement.csv")
STATISTICS_DIR = "statistics"


def _path(out: Path, name: str) -> Path:
    """The output path of a run-level file ``name`` (``volumes.csv``)."""
    stem, _, ext = name.partition(".")
    return output_path(out, stem, "." + ext)


def check_outputs(
    out_dir: str | Path, overwrite: bool, inputs: Sequence[str | Path | None] = ()
) -> None:
    """Check the output folder up front: it is apart from the ``inputs``, can be created
    and written, and holds no output of an earlier run unless ``overwrite`` (and no file
    medseg did not write under an output name: :class:`OutputExistsError`)."""
    out = Path(out_dir)
    check_not_inputs([p for p in inputs if p is not None], folder=out)
    manifest = RunManifest.open(out, "volumetry", overwrite=overwrite, compare=False)
    for name in OUTPUT_FILES + OPTIONAL_FILES:
        manifest.check_replaceable(_path(out, name), overwrite)
    stats = out / STATISTICS_DIR
    if not overwrite and stats.is_dir() and any(stats.glob("*.json")):
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
    """Write every output of ``result`` into ``out_dir`` atomically, recorded in the run
    manifest ``volumetry.json``; returns ``{name: path}``."""
    out = Path(out_dir)
    inputs = [result.settings.get(k) for k in ("segmentations", "images", "baseline", "compare")]
    check_outputs(out, overwrite, inputs)
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
    stats: dict[Path, str] = {}
    planned = [(output_path(out, c.case, ".json", subdir=STATISTICS_DIR), c) for c in result.cases]
    check_unique((p, f"the statistics of case {c.case!r}") for p, c in planned)
    for path, case in planned:
        stats[path] = json.dumps(statistics_json(case.records), indent=2, allow_nan=False) + "\n"
    if html:
        from medseg.volumetry.html import render_report

        texts["report.html"] = render_report(result)
    by_path = {_path(out, n): t for n, t in texts.items()} | stats
    manifest = RunManifest.open(
        out, "volumetry", options=result.settings, compare=False, overwrite=overwrite
    )
    write_run_files(manifest, by_path, overwrite=overwrite)
    manifest.record_report(result.report(out))
    paths = {n: _path(out, n) for n in texts}
    paths |= {f"{STATISTICS_DIR}/{p.name}": p for p in stats}
    result.outputs.update(paths)
    return paths


__all__ = [
    "OPTIONAL_FILES",
    "OUTPUT_FILES",
    "STATISTICS_DIR",
    "check_outputs",
    "statistics_json",
    "write_outputs",
]
