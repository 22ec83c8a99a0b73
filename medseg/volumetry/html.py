"""The self-contained HTML report: a jinja2 template (``templates/report.html.j2``, autoescaped)
filled from a :class:`~medseg.volumetry.batch.VolumetryResult`. Pictures are PNG data URIs
(:mod:`medseg.volumetry.figures`), so the single file opens with no network access; the page
has no scripts.

Every number in a table cell carries its exact value (``data-value``, as written in the CSV
files) and the format used to display it (``data-format``, a Python format spec), so the
report can be checked against the CSV files mechanically.
"""

from __future__ import annotations

import datetime
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from medseg._version import __version__
from medseg.volumetry.batch import CaseResult, VolumetryResult
from medseg.volumetry.change import STATUS_ABSENT, STATUS_BOTH
from medseg.volumetry.stats import INTENSITY_KEYS, LabelStats

#: The display convention, stated on the page.
CONVENTION = (
    "Radiological display convention: the patient's right is on the left of the image. Axial "
    "slices are seen from the feet (anterior at the top), coronal slices from the front "
    "(superior at the top), sagittal slices from the patient's left (anterior on the left, "
    "superior at the top). Letters at the edges of each picture name the patient directions "
    "(R/L, A/P, S/I). Pixels are drawn with their size in mm, so shapes have their true "
    "aspect ratio. Oblique scans are shown in their acquisition planes nearest to axial, "
    "coronal and sagittal. The red line is the outline of the structure."
)


@dataclass(frozen=True)
class Cell:
    """One table cell: the CSV column, the exact value as in the CSV, its display format and
    the displayed text."""

    col: str
    value: str
    fmt: str
    text: str
    numeric: bool


def _exact(v: Any) -> str:
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else repr(v)
    return str(v)


def cell(col: str, v: Any, fmt: str = "") -> Cell:
    """A cell showing ``v`` formatted with ``fmt`` (NaN shown as an em dash)."""
    if isinstance(v, bool):
        return Cell(col, _exact(v), "", "yes" if v else "no", False)
    if isinstance(v, (int, float)):
        if isinstance(v, float) and math.isnan(v):
            return Cell(col, "nan", fmt, "—", True)
        return Cell(col, _exact(v), fmt, format(v, fmt), True)
    return Cell(col, _exact(v), "", str(v), False)


def _intensity_fmt(units: str) -> str:
    return ".1f" if units == "HU" else ".4g"


def _case_columns(with_image: bool) -> list[tuple[str, str]]:
    cols = [
        ("label", "label"),
        ("name", "structure"),
        ("absent", "absent"),
        ("voxels", "voxels"),
        ("volume_ml", "volume (mL)"),
        ("components", "components (26-conn.)"),
        ("largest_component_ml", "largest component (mL)"),
        ("diameter_mm", "largest diameter (mm)"),
        ("touches_border", "touches border (faces)"),
        ("centroid_x_mm", "centroid x (mm, R+)"),
        ("centroid_y_mm", "centroid y (mm, A+)"),
        ("centroid_z_mm", "centroid z (mm, S+)"),
    ]
    if with_image:
        cols += [(f"intensity_{k}", k) for k in INTENSITY_KEYS]
    return cols


_FORMATS = {
    "label": "d",
    "voxels": "d",
    "components": "d",
    "largest_component_ml": ".2f",
    "volume_ml": ".3f",
    "volume_mm3": ".1f",
    "diameter_mm": ".1f",
    "centroid_x_mm": ".1f",
    "centroid_y_mm": ".1f",
    "centroid_z_mm": ".1f",
}


def _case_rows(case: CaseResult) -> tuple[list[str], list[list[Cell]]]:
    with_image = case.image is not None
    cols = _case_columns(with_image)
    ifmt = _intensity_fmt(case.units)
    rows = []
    for r in case.records:
        d = r.as_dict()
        row = []
        for c, _ in cols:
            fmt = _FORMATS.get(c, ifmt if c.startswith("intensity_") else "")
            x = cell(c, d[c], fmt)
            if c == "touches_border" and r.border_faces:
                x = Cell(c, x.value, "", f"yes ({' '.join(r.border_faces)})", False)
            row.append(x)
        rows.append(row)
    return [h for _, h in cols], rows


def _summary(cases: Sequence[CaseResult]) -> dict[str, Any]:
    """Per label over the cases: how often present / touching the border, median, min and max
    volume; labels absent from every case are listed by name only."""
    from medseg.volumetry import figures

    by_label: dict[int, list[LabelStats]] = {}
    for c in cases:
        for r in c.records:
            by_label.setdefault(r.label, []).append(r)
    head = [
        "label",
        "structure",
        "cases present",
        "cases absent",
        "touching border",
        "median volume (mL)",
        "min volume (mL)",
        "max volume (mL)",
    ]
    rows: list[list[Cell]] = []
    dist: dict[str, list[float]] = {}
    nowhere: list[str] = []
    for v, recs in sorted(by_label.items()):
        vols = [r.volume_ml for r in recs if not r.absent]
        if not vols:
            nowhere.append(recs[0].name)
            continue
        rows.append(
            [
                cell("label", v, "d"),
                cell("name", recs[0].name),
                cell("n_present", len(vols), "d"),
                cell("n_absent", len(recs) - len(vols), "d"),
                cell("n_touching_border", sum(r.touches_border for r in recs), "d"),
                cell("median_ml", float(statistics.median(vols)), ".3f"),
                cell("min_ml", float(min(vols)), ".3f"),
                cell("max_ml", float(max(vols)), ".3f"),
            ]
        )
        dist[recs[0].name] = vols
    return {
        "head": head,
        "rows": rows,
        "absent": nowhere,
        "figure": figures.volume_distribution(dist) if dist else None,
    }


def _context(result: VolumetryResult) -> dict[str, Any]:

    settings = result.settings
    ctx: dict[str, Any] = {
        "version": __version__,
        "generated": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "inputs": [
            (k, _basename(settings.get(k)))
            for k in ("segmentations", "images", "baseline", "compare")
            if settings.get(k)
        ],
        "convention": CONVENTION,
        "n_cases": len(result.cases),
        "failures": [f.as_dict() for f in result.failures],
        "cases": [],
        "summary": None,
        "longitudinal": None,
        "comparison": None,
    }
    if len(result.cases) > 1:
        ctx["summary"] = _summary(result.cases)
    if result.longitudinal is not None:
        ctx["longitudinal"] = _longitudinal(result)
    if result.comparison is not None:
        ctx["comparison"] = _comparison(result)
    for case in result.cases:
        head, rows = _case_rows(case)
        ctx["cases"].append(
            {
                "name": case.case,
                "shape": "×".join(str(s) for s in case.shape),
                "spacing": " × ".join(f"{s:.4g}" for s in case.spacing),
                "orientation": case.orientation,
                "has_image": case.image is not None,
                "units": case.units or "the image's units (not recorded in its file)",
                "window": case.window,
                "head": head,
                "rows": rows,
                "n_present": sum(not r.absent for r in case.records),
                "n_border": sum(r.touches_border for r in case.records),
                "figures": [
                    {"label": v, "uri": uri, "caption": cap}
                    for v, (uri, cap) in sorted(case.figures.items())
                ],
            }
        )
    return ctx


def _basename(p: Any) -> str:
    s = str(p).rstrip("/")
    return s.rsplit("/", 1)[-1]


def _table(records: Sequence[Any], spec: Sequence[tuple[str, str, str]]) -> dict[str, Any]:
    """Head and rows of a table of records: ``spec`` lists ``(column, header, format)``."""
    rows = []
    for r in records:
        d = r.as_dict()
        rows.append([cell(col, d[col], fmt) for col, _, fmt in spec])
    return {"head": [h for _, h, _ in spec], "rows": rows}


_LONGITUDINAL_COLUMNS = (
    ("case", "case", ""),
    ("baseline_case", "baseline", ""),
    ("label", "label", "d"),
    ("name", "structure", ""),
    ("baseline_ml", "baseline (mL)", ".3f"),
    ("followup_ml", "follow-up (mL)", ".3f"),
    ("change_ml", "change (mL)", "+.3f"),
    ("change_percent", "change (%)", "+.1f"),
    ("status", "status", ""),
    ("label_set_differs", "label sets differ", ""),
)


def _longitudinal(result: VolumetryResult) -> dict[str, Any]:
    from medseg.volumetry import figures

    recs = result.longitudinal or []
    table = _table([r for r in recs if r.status != STATUS_ABSENT], _LONGITUDINAL_COLUMNS)
    figs = []
    for case in sorted({r.case for r in recs}):
        both = [r for r in recs if r.case == case and r.status == STATUS_BOTH]
        if both:
            figs.append(
                figures.change_bars(
                    [r.name for r in both],
                    [r.change_percent for r in both],
                    f"{case}: volume change since baseline",
                )
            )
    differs = sorted({r.case for r in recs if r.label_set_differs})
    return {**table, "figures": figs, "differs": differs}


def _comparison(result: VolumetryResult) -> dict[str, Any]:
    from medseg.volumetry import figures

    recs = result.comparison or []
    this = _basename(result.settings.get("segmentations")) or "this set"
    other = _basename(result.settings.get("compare")) or "other set"
    if this == other:
        this, other = "this set", "other set"
    spec = (
        ("case", "case", ""),
        ("label", "label", "d"),
        ("name", "structure", ""),
        ("volume_ml", f"{this} (mL)", ".3f"),
        ("other_ml", f"{other} (mL)", ".3f"),
        ("difference_ml", "difference (mL)", "+.3f"),
        ("difference_percent", "difference (% of other)", "+.1f"),
        ("status", "status", ""),
    )
    table = _table([r for r in recs if r.status != STATUS_ABSENT], spec)
    ahead = [
        "label",
        "structure",
        "pairs",
        "one-sided",
        "bias (mL)",
        "SD (mL)",
        "95 % limits (mL)",
        "bias (% of mean)",
        "95 % limits (% of mean)",
    ]
    arows = []
    for a in result.agreement or []:
        if a.n_pairs == 0:
            continue
        arows.append(
            [
                cell("label", a.label, "d"),
                cell("name", a.name),
                cell("n_pairs", a.n_pairs, "d"),
                cell("n_one_sided", a.n_one_sided, "d"),
                cell("bias_ml", a.bias_ml, "+.3f"),
                cell("sd_ml", a.sd_ml, ".3f"),
                Cell("loa_ml", "", "", _range(a.loa_low_ml, a.loa_high_ml, ".3f"), False),
                cell("bias_percent", a.bias_percent, "+.1f"),
                Cell(
                    "loa_percent",
                    "",
                    "",
                    _range(a.loa_low_percent, a.loa_high_percent, ".1f"),
                    False,
                ),
            ]
        )
    fig = figures.agreement_plots(recs, this, other) if recs else None
    return {
        "this": this,
        "other": other,
        **table,
        "ahead": ahead,
        "arows": arows,
        "figure": fig,
    }


def _range(lo: float, hi: float, fmt: str) -> str:
    if math.isnan(lo) or math.isnan(hi):
        return "—"
    return f"{format(lo, fmt)} to {format(hi, fmt)}"


def render_report(result: VolumetryResult) -> str:
    """The report as one HTML document (UTF-8 text)."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("medseg.volumetry", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env.get_template("report.html.j2").render(**_context(result))


__all__ = ["CONVENTION", "Cell", "cell", "render_report"]
