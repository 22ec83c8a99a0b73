"""The batch report: one record per case of a batch command, and the one CSV writer.

:class:`BatchReport` (a list of :class:`CaseOutcome`) is what ``predict`` and ``convert``
return and what ``evaluate`` and ``volumetry`` summarise their cases into
(``EvaluationResult.report()``, ``VolumetryResult.report()``); it prints the same summary
for all and writes one CSV / JSON shape (:data:`CASE_FIELDS`).

:func:`rows_to_csv` is the one CSV writer of medseg's tables (metrics, volumes, failures,
reports). A text cell that a spreadsheet would run as a formula (starting with ``=``, ``+``,
``-``, ``@``, a tab or a carriage return; e.g. a label or case name taken from an input) is
prefixed with ``'``, as OWASP's CSV-injection guidance recommends; numbers are written as
numbers; a carriage return inside a cell is written as the two characters ``\\r``.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Columns of a batch report's CSV.
CASE_FIELDS: tuple[str, ...] = ("case", "status", "inputs", "outputs", "seconds", "error", "note")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_text_cell(text: str) -> str:
    """``text`` safe for a spreadsheet: prefixed with ``'`` when it starts like a formula; a
    carriage return (which would split the row for some readers) is written as ``\\r``."""
    text = "'" + text if text.startswith(_FORMULA_START) else text
    return text.replace("\r", "\\r")


def _csv_value(v: Any) -> Any:
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, float):
        return "nan" if math.isnan(v) else repr(v)
    if isinstance(v, int):
        return v
    if isinstance(v, (list, tuple)):
        return csv_text_cell(";".join(str(x) for x in v))
    return csv_text_cell(str(v))


def rows_to_csv(rows: Iterable[Mapping[str, Any]], fields: Sequence[str]) -> str:
    """CSV text (header + rows); floats in full precision, NaN as ``nan``, lists ``;``-joined,
    text cells guarded against formula injection (see the module docstring)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(fields), lineterminator="\n")
    w.writeheader()
    for row in rows:
        w.writerow({k: _csv_value(row[k]) for k in fields})
    return buf.getvalue()


@dataclass(frozen=True)
class CaseOutcome:
    """One case of a batch: ``status`` is ``"done"``, ``"exists"`` (skipped: an earlier run
    with the same model and options completed it) or ``"failed"`` (``error`` names the file,
    what was expected and what was found; none of its outputs is left). ``output`` is the
    main file written; ``outputs`` every file written (a file not written is not listed;
    ``note`` says why)."""

    name: str
    status: str
    output: Path | None = None
    seconds: float = 0.0
    error: str = ""
    empty_labels: tuple[int, ...] = ()
    outputs: tuple[Path, ...] = ()
    note: str = ""
    inputs: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "case": self.name,
            "status": self.status,
            "inputs": list(self.inputs),
            "outputs": [str(p) for p in self.outputs],
            "seconds": round(self.seconds, 3),
            "error": self.error,
            "note": self.note,
        }


@dataclass
class BatchReport:
    """What a batch command did, case by case, plus what it found but could not process
    (``problems``: ``(what, reason)``)."""

    output: Path
    cases: list[CaseOutcome] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)
    #: the verb of the summary line ("predicted", "converted", "evaluated", "measured")
    verb: str = "predicted"

    @property
    def done(self) -> list[CaseOutcome]:
        return [c for c in self.cases if c.status == "done"]

    @property
    def existing(self) -> list[CaseOutcome]:
        return [c for c in self.cases if c.status == "exists"]

    @property
    def failed(self) -> list[CaseOutcome]:
        return [c for c in self.cases if c.status == "failed"]

    @property
    def ok(self) -> bool:
        """True when every input was processed (now or by an earlier run)."""
        return not self.failed and not self.problems

    def summary(self) -> str:
        lines = [
            f"{len(self.done)} {self.verb}, {len(self.existing)} already done, "
            f"{len(self.failed) + len(self.problems)} failed; outputs in {self.output}"
        ]
        for c in self.failed:
            lines.append(f"  failed: {c.name}: {c.error}")
        for what, why in self.problems:
            lines.append(f"  not {self.verb}: {what}: {why}")
        return "\n".join(lines)

    def to_csv(self) -> str:
        """One row per case (:data:`CASE_FIELDS`), then one ``failed`` row per problem."""
        rows = [c.as_dict() for c in self.cases]
        rows += [CaseOutcome(what, "failed", error=why).as_dict() for what, why in self.problems]
        return rows_to_csv(rows, CASE_FIELDS)

    def as_json(self) -> dict[str, Any]:
        return {
            "output": str(self.output),
            "n_done": len(self.done),
            "n_existing": len(self.existing),
            "n_failed": len(self.failed) + len(self.problems),
            "cases": [c.as_dict() for c in self.cases],
            "problems": [{"what": w, "error": e} for w, e in self.problems],
        }


__all__ = [
    "CASE_FIELDS",
    "BatchReport",
    "CaseOutcome",
    "csv_text_cell",
    "rows_to_csv",
]
