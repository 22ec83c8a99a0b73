"""Output formatting of the evaluation: JSON-safe values, the ``summary.json`` document and the
terminal table; CSV text through the one CSV writer, :func:`medseg.io.report.rows_to_csv`."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from medseg.evaluation.cases import CaseFailure
from medseg.io.report import rows_to_csv
from medseg.metrics import MetricSummary


def json_safe(v: Any) -> Any:
    """``v`` with non-finite floats as ``None``, paths as strings, mappings and sequences
    converted recursively (for ``json.dumps``)."""
    if isinstance(v, float):
        return None if not math.isfinite(v) else v
    if isinstance(v, Mapping):
        return {str(k): json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [json_safe(x) for x in v]
    if isinstance(v, Path):
        return str(v)
    return v


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
    doc: dict[str, Any] = json_safe(
        {
            "n_cases": n_cases,
            "n_failed": len(failures),
            "labels": list(labels.values()),
            "failures": [f.as_dict() for f in failures],
        }
    )
    return doc


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


__all__ = ["format_table", "json_safe", "rows_to_csv", "summary_to_json"]
