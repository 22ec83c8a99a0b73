"""Pictures for the volumetry report (matplotlib, Agg backend), returned as PNG data URIs so
that the HTML file embeds them and opens with no network access.

Orthogonal slices follow the **radiological display convention**: axial slices are seen from
the patient's feet (patient's right on the image's left, anterior at the top), coronal slices
from the front (right on the left, superior at the top), sagittal slices from the patient's
left side (anterior on the left, superior at the top). The array axis nearest to each
anatomical axis is used (from the affine's orientation code), so oblique acquisitions are shown
in their own planes nearest to axial, coronal and sagittal. Pixels are drawn with their real
size in mm (``spacing``), so the aspect ratio is correct on anisotropic grids.
"""

from __future__ import annotations

import base64
import io
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from medseg.volume import LabelMap, Volume
from medseg.volumetry.change import STATUS_BOTH, ComparisonRecord, percent_of_mean
from medseg.volumetry.stats import LabelStats

log = logging.getLogger(__name__)

#: CT display window (HU) used when the image's units are HU: soft tissue, level 40, width 400.
CT_WINDOW: tuple[float, float] = (-160.0, 240.0)
#: Margin around a label's box in each panel (mm), and the smallest field of view shown (mm).
MARGIN_MM = 15.0
MIN_FOV_MM = 60.0
OUTLINE_COLOUR = "#ff3b30"
_DPI = 80
_PLOT_DPI = 110


@dataclass(frozen=True)
class ViewSpec:
    """How one view maps array axes to the screen."""

    name: str  # axial, coronal, sagittal
    slice_axis: int
    rows_axis: int  # drawn top to bottom
    cols_axis: int  # drawn left to right
    flip_rows: bool
    flip_cols: bool
    edges: tuple[str, str, str, str]  # anatomical letters at the left, right, top, bottom


def view_specs(orientation: str) -> list[ViewSpec]:
    """The axial, coronal and sagittal views of a grid with orientation code ``orientation``
    (e.g. ``"RAS"``, ``"LPS"``), in the radiological convention (module docstring)."""
    axis_of = {}
    for a, letter in enumerate(orientation):
        for pair in ("RL", "AP", "SI"):
            if letter in pair:
                axis_of[pair] = (a, letter)
    lr, lr_letter = axis_of["RL"]
    ap, ap_letter = axis_of["AP"]
    si, si_letter = axis_of["SI"]
    # Screen columns run towards the patient's left (axial, coronal) or posterior (sagittal);
    # screen rows run towards posterior (axial) or inferior (coronal, sagittal).
    return [
        ViewSpec("axial", si, ap, lr, ap_letter == "A", lr_letter == "R", ("R", "L", "A", "P")),
        ViewSpec("coronal", ap, si, lr, si_letter == "S", lr_letter == "R", ("R", "L", "S", "I")),
        ViewSpec("sagittal", lr, si, ap, si_letter == "S", ap_letter == "A", ("A", "P", "S", "I")),
    ]


def png_data_uri(fig: Any, dpi: int = _DPI) -> str:
    """Render a matplotlib Figure to a ``data:image/png;base64,...`` URI."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def display_window(image: Volume | None) -> tuple[float, float, str]:
    """``(low, high, description)`` of the grey-scale window: the CT soft-tissue window for
    images in HU, else the image's 1st-99th percentiles."""
    if image is None:
        return 0.0, 1.0, "no image: label map shown (grey: other labels, white: this label)"
    if (image.meta.units or "") == "HU":
        lo, hi = CT_WINDOW
        return lo, hi, f"CT window level {(lo + hi) / 2:g} HU, width {hi - lo:g} HU"
    arr = image.array
    step = max(1, arr.size // 2_000_000)
    sample = arr.ravel()[::step].astype(np.float64)
    lo, hi = (float(v) for v in np.percentile(sample, [1.0, 99.0]))
    if hi <= lo:
        hi = lo + 1.0
    return (
        lo,
        hi,
        (
            f"window from the image's 1st to 99th percentile ({lo:.4g} to {hi:.4g}); for CT in a "
            "file that does not record HU, give the units (--image-units HU) for the CT window"
        ),
    )


def plane(arr: npt.NDArray[Any], spec: ViewSpec, index: int) -> npt.NDArray[Any]:
    """Slice ``index`` of ``arr`` (``(I, J, K)``) along ``spec.slice_axis`` as a 2-D array in
    screen order: rows top to bottom, columns left to right (radiological convention)."""
    sl: list[Any] = [slice(None)] * 3
    sl[spec.slice_axis] = index
    plane = arr[tuple(sl)]
    remaining = [a for a in range(3) if a != spec.slice_axis]
    if remaining.index(spec.rows_axis) == 1:
        plane = plane.T
    if spec.flip_rows:
        plane = plane[::-1, :]
    if spec.flip_cols:
        plane = plane[:, ::-1]
    result: npt.NDArray[Any] = plane
    return result


def _crop_range(lo: int, hi: int, n: int, spacing: float) -> tuple[int, int]:
    """Index range ``[a, b)`` around ``[lo, hi]`` with the margin and minimum field of view."""
    margin = math.ceil(MARGIN_MM / spacing)
    a, b = lo - margin, hi + 1 + margin
    need = math.ceil(MIN_FOV_MM / spacing)
    if b - a < need:
        extra = need - (b - a)
        a -= extra // 2
        b += extra - extra // 2
    return max(a, 0), min(b, n)


def _nearest_slice(counts: npt.NDArray[np.integer], wanted: int) -> int:
    nz = np.flatnonzero(counts)
    return int(nz[np.argmin(np.abs(nz - wanted))])


def label_figure(
    labels: LabelMap,
    image: Volume | None,
    record: LabelStats,
    window: tuple[float, float],
) -> tuple[str, str]:
    """Axial, coronal and sagittal slices through the label's centroid (the nearest slice that
    holds the label when the centroid's slice does not), cropped around the label, with its
    outline drawn over the image. Returns ``(data URI, caption)``."""
    from matplotlib.figure import Figure

    assert record.bbox_index is not None
    box = tuple(slice(lo, hi + 1) for lo, hi in record.bbox_index)
    mask_box = labels.array[box] == record.label
    centre = labels.world_to_voxel(np.asarray(record.centroid_mm))
    specs = view_specs(labels.orientation)
    spacing = labels.spacing
    shape = labels.shape

    fig = Figure(figsize=(7.8, 2.7))
    parts = []
    for n, spec in enumerate(specs):
        s_lo = record.bbox_index[spec.slice_axis][0]
        other = tuple(a for a in range(3) if a != spec.slice_axis)
        counts = np.count_nonzero(mask_box, axis=other)
        want = int(np.clip(round(float(centre[spec.slice_axis])) - s_lo, 0, len(counts) - 1))
        index = s_lo + (want if counts[want] else _nearest_slice(counts, want))
        crop: list[Any] = [slice(None)] * 3
        for a in (spec.rows_axis, spec.cols_axis):
            lo, hi = record.bbox_index[a]
            crop[a] = slice(*_crop_range(lo, hi, shape[a], spacing[a]))
        crop[spec.slice_axis] = slice(index, index + 1)
        c = tuple(crop)
        lab = labels.array[c]
        mask = plane(lab == record.label, spec, 0)
        if image is not None:
            back = plane(image.array[c], spec, 0).astype(np.float64)
        else:
            back = plane(np.where(lab > 0, 0.35, 0.0) + (lab == record.label) * 0.65, spec, 0)
        h_mm = back.shape[0] * spacing[spec.rows_axis]
        w_mm = back.shape[1] * spacing[spec.cols_axis]
        extent = (0.0, w_mm, h_mm, 0.0)
        ax = fig.add_subplot(1, 3, n + 1)
        ax.imshow(
            back,
            cmap="gray",
            vmin=window[0],
            vmax=window[1],
            extent=extent,
            interpolation="nearest",
            aspect="equal",
        )
        if mask.any() and not mask.all() and min(mask.shape) >= 2:
            ax.contour(
                mask.astype(np.float32),
                levels=[0.5],
                colors=[OUTLINE_COLOUR],
                linewidths=1.1,
                origin="upper",
                extent=extent,
            )
        left, right, top, bottom = spec.edges
        style: dict[str, Any] = {
            "color": "#ffd60a",
            "fontsize": 8,
            "fontweight": "bold",
            "bbox": {"facecolor": "black", "alpha": 0.55, "pad": 1.0, "linewidth": 0},
        }
        ax.text(0.02, 0.5, left, transform=ax.transAxes, ha="left", va="center", **style)
        ax.text(0.98, 0.5, right, transform=ax.transAxes, ha="right", va="center", **style)
        ax.text(0.5, 0.98, top, transform=ax.transAxes, ha="center", va="top", **style)
        ax.text(0.5, 0.02, bottom, transform=ax.transAxes, ha="center", va="bottom", **style)
        ax.set_title(f"{spec.name} (slice {index} of axis {'ijk'[spec.slice_axis]})", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
        parts.append(f"{spec.name} {'ijk'[spec.slice_axis]}={index}")
        if index != round(float(centre[spec.slice_axis])):
            parts[-1] += " (nearest slice holding the label)"
    fig.subplots_adjust(left=0.01, right=0.99, top=0.9, bottom=0.02, wspace=0.04)
    caption = f"{record.name}: " + ", ".join(parts)
    return png_data_uri(fig), caption


#: Pictures drawn per case at most: those of the largest structures (a case with thousands of
#: labels would otherwise take hours); the report and the log say which were left out.
MAX_FIGURES_PER_CASE = 24


def figure_labels(records: Sequence[LabelStats], limit: int | None = None) -> list[LabelStats]:
    """The present labels that get a picture: the ``limit`` (default
    :data:`MAX_FIGURES_PER_CASE`) largest by voxel count, then by label value; in label
    order."""
    limit = MAX_FIGURES_PER_CASE if limit is None else limit
    present = [r for r in records if not r.absent]
    chosen = sorted(present, key=lambda r: (-r.voxels, r.label))[:limit]
    return sorted(chosen, key=lambda r: r.label)


def case_figures(
    labels: LabelMap, image: Volume | None, records: Sequence[LabelStats]
) -> tuple[dict[int, tuple[str, str]], str]:
    """``({label: (data URI, caption)}, description)`` for the present labels, at most
    :data:`MAX_FIGURES_PER_CASE` (the largest, :func:`figure_labels`). The description gives
    the display window and, when labels were left out, how many pictures of how many
    structures were drawn (also logged)."""
    lo, hi, desc = display_window(image)
    chosen = figure_labels(records)
    n_present = sum(not r.absent for r in records)
    if len(chosen) < n_present:
        note = (
            f"pictures of the {len(chosen)} largest of {n_present} structures (the others are "
            "in the table)"
        )
        log.info("%s: %s", labels.name, note)
        desc = f"{desc}; {note}"
    out = {r.label: label_figure(labels, image, r, (lo, hi)) for r in chosen}
    return out, desc


def log_ticks(lo: float, hi: float, max_ticks: int = 6) -> list[float]:
    """Tick values for a log axis from ``lo`` to ``hi`` (both > 0): the 1-2-5 values in
    range, or the decades (every n-th when there are too many) when those are more than
    ``max_ticks``; on a short range, round linear steps. Labelled in plain numbers, they
    do not overlap (matplotlib's own log axis labels minor ticks on short ranges)."""
    if not (0 < lo < hi):
        raise ValueError(f"lo, hi: expected 0 < lo < hi, found {lo}, {hi}")
    k0, k1 = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    for mantissas in ((1.0, 2.0, 5.0), (1.0, 3.0), (1.0,)):
        ticks = [m * 10.0**k for k in range(k0, k1 + 1) for m in mantissas]
        ticks = [t for t in ticks if lo <= t <= hi]
        if len(ticks) <= max_ticks:
            break
    ticks = ticks[:: max(1, math.ceil(len(ticks) / max_ticks))]
    if len(ticks) < 2:  # a short range: round linear steps (1, 2, 2.5, 5 x 10^k), 2 to 6 ticks
        raw = (hi - lo) / 5.0
        mag = 10.0 ** math.floor(math.log10(raw))
        step = next(m * mag for m in (1.0, 2.0, 2.5, 5.0, 10.0) if m * mag >= raw)
        ticks = [
            float(f"{k * step:.12g}") for k in range(math.ceil(lo / step), int(hi // step) + 1)
        ]
        ticks = [t for t in ticks if lo <= t <= hi]
    return ticks


def _plain_log_axis(ax: Any, axis: str) -> None:
    """Put :func:`log_ticks` on a log ``axis`` (``"x"`` or ``"y"``) of ``ax`` for its current
    limits, labelled in plain numbers (``%g``), minor ticks unlabelled."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    lo, hi = ax.get_xlim() if axis == "x" else ax.get_ylim()
    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_locator(FixedLocator(log_ticks(min(lo, hi), max(lo, hi))))
    target.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    target.set_minor_formatter(NullFormatter())


# --- batch figures --------------------------------------------------------------------------


def volume_distribution(volumes: Mapping[str, Sequence[float]]) -> str:
    """Each label's volume (mL) across cases: a box plot with the cases as dots, log scale.
    ``volumes``: ``{label name: [mL per case where present]}`` in display order."""
    from matplotlib.figure import Figure

    names = [n for n, v in volumes.items() if len(v)]
    fig = Figure(figsize=(7.8, 1.2 + 0.22 * max(len(names), 1)))
    ax = fig.add_subplot(1, 1, 1)
    data = [np.asarray(volumes[n], dtype=float) for n in names]
    if data:
        import matplotlib

        major, minor = (int(x) for x in matplotlib.__version__.split(".")[:2])
        horizontal: dict[str, Any] = (
            {"orientation": "horizontal"} if (major, minor) >= (3, 10) else {"vert": False}
        )
        ax.boxplot(data, widths=0.6, showfliers=False, **horizontal)
        rng = np.random.default_rng(0)
        for y, d in enumerate(data, start=1):
            ax.plot(d, y + rng.uniform(-0.15, 0.15, d.size), "o", ms=3, alpha=0.7, color="C0")
        ax.set_yticks(range(1, len(names) + 1), names, fontsize=7)
        ax.set_xscale("log")
        _plain_log_axis(ax, "x")
    ax.invert_yaxis()
    ax.set_xlabel("volume (mL, log scale)")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return png_data_uri(fig, _PLOT_DPI)


def change_bars(names: Sequence[str], change_percent: Sequence[float], title: str) -> str:
    """Horizontal bars of the relative volume change (% of baseline) per label."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.8, 1.2 + 0.22 * max(len(names), 1)))
    ax = fig.add_subplot(1, 1, 1)
    vals = np.asarray(change_percent, dtype=float)
    colours = ["#c0392b" if v > 0 else "#2471a3" for v in vals]
    ax.barh(range(len(names)), vals, color=colours)
    ax.set_yticks(range(len(names)), list(names), fontsize=7)
    ax.axvline(0.0, color="black", lw=0.8)
    ax.invert_yaxis()
    ax.set_xlabel("volume change (% of baseline)")
    ax.set_title(title, fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return png_data_uri(fig, _PLOT_DPI)


def agreement_plots(records: Sequence[ComparisonRecord], this_name: str, other_name: str) -> str:
    """Bland–Altman (difference as % of the pair's mean against the mean, log x) and this set
    against the other (log-log, identity line); one-sided structures are marked with crosses
    (plotted at the lower axis limit in the scatter, where log scales have no 0)."""
    from matplotlib.figure import Figure

    used = [r for r in records if r.mean_ml > 0]
    both = [r for r in used if r.status == STATUS_BOTH]
    one = [r for r in used if r.status != STATUS_BOTH]
    fig = Figure(figsize=(7.8, 3.4))
    ax1 = fig.add_subplot(1, 2, 1)
    ax2 = fig.add_subplot(1, 2, 2)
    for group, marker in ((both, "o"), (one, "x")):
        if group:
            ax1.plot(
                [r.mean_ml for r in group],
                [percent_of_mean(r) for r in group],
                marker,
                ms=3.5,
                ls="none",
                color="C0" if marker == "o" else "C3",
            )
    pct = np.array([percent_of_mean(r) for r in used], dtype=float)
    if pct.size:
        bias = float(pct.mean())
        ax1.axhline(bias, color="black", lw=1, label=f"bias {bias:.1f} %")
        if pct.size > 1:
            sd = float(pct.std(ddof=1))
            for s in (-1.96, 1.96):
                ax1.axhline(bias + s * sd, color="grey", ls="--", lw=1)
            ax1.plot([], [], color="grey", ls="--", label=f"95 % limits ±{1.96 * sd:.1f} %")
        ax1.legend(fontsize=7, loc="best")
        ax1.set_xscale("log")
        _plain_log_axis(ax1, "x")
    ax1.set_xlabel("mean of the two volumes (mL)")
    ax1.set_ylabel(f"({this_name} − {other_name}) / mean (%)")
    ax1.set_title("Bland–Altman", fontsize=9)
    vals = [v for r in used for v in (r.volume_ml, r.other_ml) if v > 0]
    if vals:
        lo, hi = min(vals) / 2.0, max(vals) * 2.0
        ax2.plot([lo, hi], [lo, hi], color="black", lw=1, label="identity")
        ax2.plot([r.other_ml for r in both], [r.volume_ml for r in both], "o", ms=3.5, color="C0")
        ax2.plot(
            [max(r.other_ml, lo) for r in one],
            [max(r.volume_ml, lo) for r in one],
            "x",
            ms=4,
            color="C3",
            label="only in one set",
        )
        ax2.set_xscale("log")
        ax2.set_yscale("log")
        ax2.set_xlim(lo, hi)
        ax2.set_ylim(lo, hi)
        ax2.set_aspect("equal")
        _plain_log_axis(ax2, "x")
        _plain_log_axis(ax2, "y")
        ax2.legend(fontsize=7, loc="upper left")
    ax2.set_xlabel(f"{other_name} volume (mL)")
    ax2.set_ylabel(f"{this_name} volume (mL)")
    ax2.set_title(f"{this_name} against {other_name}", fontsize=9)
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return png_data_uri(fig, _PLOT_DPI)


__all__ = [
    "CT_WINDOW",
    "MAX_FIGURES_PER_CASE",
    "ViewSpec",
    "agreement_plots",
    "case_figures",
    "change_bars",
    "display_window",
    "figure_labels",
    "label_figure",
    "log_ticks",
    "plane",
    "png_data_uri",
    "view_specs",
]
