"""``medseg segment INPUT OUTPUT --method M``: classical 3-D segmentation (no network).

A thin wrapper over :func:`medseg.classical.segment`: reads the image (NIfTI, NRRD/MHA or a
DICOM series), smooths, runs one method, post-processes and writes the label map on the
input's grid. Options that do not apply to the chosen method are refused, so a mistyped
command never silently ignores a parameter.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from medseg.cli._args import ranged
from medseg.errors import ConfigError
from medseg.io.outputs import case_stem, output_path

#: ``--method`` choices; ``region-growing`` and ``edges`` have two algorithms each.
CLI_METHODS: tuple[str, ...] = (
    "threshold",
    "otsu",
    "multi-otsu",
    "region-growing",
    "kmeans",
    "watershed",
    "edges",
)

#: The library methods behind each ``--method`` (:data:`medseg.classical.METHODS`).
_LIBRARY_METHODS: dict[str, tuple[str, ...]] = {
    "threshold": ("threshold",),
    "otsu": ("otsu",),
    "multi-otsu": ("multi-otsu",),
    "region-growing": ("connected-threshold", "confidence-connected"),
    "kmeans": ("kmeans",),
    "watershed": ("watershed",),
    "edges": ("sobel", "canny"),
}
#: Options whose method parameter has another name (argparse ``dest`` -> parameter).
_PARAMETER: dict[str, str] = {
    "seeds": "seeds_mm",
    "random_seed": "seed",
    "edge_closing_mm": "closing_mm",
}
#: Options that choose between the library methods of one ``--method``.
_CHOOSERS: dict[str, str] = {"growing": "region-growing", "operator": "edges"}


def applies_to(dest: str) -> tuple[str, ...]:
    """The ``--method`` values a method option (argparse ``dest``) applies to: those whose
    library methods take the parameter (their options records,
    :mod:`medseg.classical.methods`)."""
    from medseg.classical import option_names

    if dest in _CHOOSERS:
        return (_CHOOSERS[dest],)
    param = _PARAMETER.get(dest, dest)
    return tuple(
        cli
        for cli, methods in _LIBRARY_METHODS.items()
        if any(param in option_names(m) for m in methods)
    )


_METHOD_OPTIONS = "method options (each applies to the methods named)"


def _seed(text: str) -> tuple[float, float, float]:
    parts = text.replace(" ", "").split(",")
    try:
        vals = tuple(float(p) for p in parts)
    except ValueError:
        vals = ()
    if len(vals) != 3 or not all(math.isfinite(v) for v in vals):
        raise argparse.ArgumentTypeError(f"expected X,Y,Z in mm (RAS+), found {text!r}")
    return (vals[0], vals[1], vals[2])


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "segment",
        help="classical segmentation: thresholds, region growing, k-means, watershed, edges",
        description="Segment INPUT (NIfTI, NRRD/MHA or a DICOM series) with a classical method "
        "and write the label map to OUTPUT (.nii.gz, .nii, .nrrd, .mha) on the input's grid, "
        "ready for `medseg evaluate`. Sizes are in mm and volumes in mL (the voxel spacing is "
        "used), seeds are RAS+ world coordinates in mm (3D Slicer's RAS; negate x and y of "
        "ITK-SNAP's LPS). Order: --smooth-mm, the method, --opening-mm, --closing-mm, "
        "--fill-holes, --min-component-ml, --keep-largest.",
    )
    p.add_argument("input", type=Path, help="image: NIfTI/NRRD/MHA file or DICOM folder")
    p.add_argument("output", type=Path, help="label map to write (.nii.gz, .nii, .nrrd, .mha)")
    p.add_argument("--method", required=True, choices=CLI_METHODS)
    p.add_argument("--series", help="DICOM series of a multi-series folder (index or key)")
    p.add_argument("--channel", type=ranged("channel"), help="volume of a 4-D / vector input")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUTPUT")

    g = p.add_argument_group(_METHOD_OPTIONS)
    g.add_argument(
        "--lower", type=ranged("lower"), help="threshold, region-growing: window low end"
    )
    g.add_argument(
        "--upper", type=ranged("upper"), help="threshold, region-growing: window high end"
    )
    g.add_argument(
        "--classes", type=ranged("classes"), metavar="K", help="multi-otsu, kmeans: classes (3)"
    )
    g.add_argument(
        "--mask",
        type=Path,
        metavar="FILE",
        help="threshold, otsu, multi-otsu, kmeans, watershed: only voxels where FILE is "
        "non-zero (same grid); the watershed's foreground to split",
    )
    g.add_argument("--bins", type=ranged("bins"), help="otsu, multi-otsu: histogram bins (256)")
    g.add_argument(
        "--seed",
        dest="seeds",
        type=_seed,
        action="append",
        metavar="X,Y,Z",
        help="region-growing: seed point in RAS+ mm (repeatable)",
    )
    g.add_argument(
        "--growing",
        choices=("threshold", "confidence"),
        help="region-growing: connected threshold in --lower/--upper (default) or "
        "confidence connected (mean ± --multiplier std, ITK's rule)",
    )
    g.add_argument(
        "--multiplier", type=ranged("multiplier"), help="confidence: std multiplier (2.5)"
    )
    g.add_argument("--iterations", type=ranged("iterations"), help="confidence: re-estimations (1)")
    g.add_argument(
        "--radius-mm",
        type=ranged("radius_mm"),
        help="confidence: initial neighbourhood half-width, mm (2)",
    )
    g.add_argument(
        "--connectivity", type=int, choices=(6, 26), help="region-growing: 6 (default) or 26"
    )
    g.add_argument(
        "--random-seed", type=ranged("random_seed"), help="kmeans: seed of sampling and init (0)"
    )
    g.add_argument(
        "--markers", type=Path, metavar="FILE", help="watershed: marker label map (same grid)"
    )
    g.add_argument(
        "--min-distance-mm",
        type=ranged("min_distance_mm"),
        help="watershed: distance-peak ball radius, mm (5)",
    )
    g.add_argument(
        "--min-peak-mm", type=ranged("min_peak_mm"), help="watershed: minimum peak depth, mm (0)"
    )
    g.add_argument(
        "--landscape",
        choices=("gradient", "distance"),
        help="watershed: flood the gradient magnitude (default) or minus the distance to the "
        "mask's background (touching objects of one intensity)",
    )
    g.add_argument(
        "--sigma-mm",
        type=ranged("sigma_mm"),
        help="watershed: Gaussian before the gradient (1); edges/canny: Gaussian (1), mm",
    )
    g.add_argument("--operator", choices=("sobel", "canny"), help="edges: operator (sobel)")
    g.add_argument("--low", type=ranged("low"), help="edges: gradient threshold, intensity/mm")
    g.add_argument(
        "--high", type=ranged("high"), help="edges: upper hysteresis threshold (canny: needed)"
    )
    g.add_argument(
        "--region",
        action="store_true",
        default=None,
        help="edges: output the region the edges enclose (holes filled) instead of the edges",
    )
    g.add_argument(
        "--edge-closing-mm",
        type=ranged("edge_closing_mm"),
        help="edges --region: close the edges first, mm (0)",
    )

    s = p.add_argument_group("shared options")
    s.add_argument(
        "--smooth-mm", type=ranged("smooth_mm"), default=0.0, help="Gaussian sigma before, mm (0)"
    )
    s.add_argument(
        "--opening-mm", type=ranged("opening_mm"), default=0.0, help="opening ball radius, mm (0)"
    )
    s.add_argument(
        "--closing-mm", type=ranged("closing_mm"), default=0.0, help="closing ball radius, mm (0)"
    )
    s.add_argument("--fill-holes", action="store_true", help="fill 3-D holes of each label")
    s.add_argument(
        "--min-component-ml",
        type=ranged("min_component_ml"),
        default=0.0,
        help="remove components smaller than this, mL (0)",
    )
    s.add_argument(
        "--keep-largest", action="store_true", help="keep the largest component of each label"
    )
    s.add_argument(
        "--component-connectivity",
        type=int,
        choices=(6, 18, 26),
        default=26,
        help="connectivity of the component steps (26)",
    )
    p.set_defaults(func=run, method_dests=tuple(a.dest for a in g._group_actions))


def _check_applicable(args: argparse.Namespace) -> None:
    wrong = [
        "--" + dest.replace("_", "-").replace("seeds", "seed")
        for dest in args.method_dests
        if getattr(args, dest) is not None and args.method not in applies_to(dest)
    ]
    if wrong:
        raise ConfigError(f"--method {args.method}: {', '.join(wrong)} does not apply to it")


def method_params(args: argparse.Namespace, volume: Any) -> tuple[str, dict[str, Any]]:
    """The :data:`medseg.classical.METHODS` key and keyword arguments for ``args``."""
    from medseg.io import read_label_map, read_volume

    _check_applicable(args)
    m = args.method
    params: dict[str, Any] = {}

    def put(key: str, value: Any) -> None:
        if value is not None:
            params[key] = value

    if args.mask is not None:
        params["mask"] = read_volume(args.mask)
    if m == "threshold":
        if args.lower is None and args.upper is None:
            raise ConfigError("--method threshold: give --lower, --upper or both")
        put("lower", args.lower)
        put("upper", args.upper)
        return "threshold", params
    if m in ("otsu", "multi-otsu"):
        put("bins", args.bins)
        if m == "multi-otsu":
            put("classes", args.classes)
        return m, params
    if m == "kmeans":
        put("classes", args.classes)
        put("seed", args.random_seed)
        return "kmeans", params
    if m == "region-growing":
        if not args.seeds:
            raise ConfigError("--method region-growing: give at least one --seed X,Y,Z (mm)")
        params["seeds_mm"] = args.seeds
        put("connectivity", args.connectivity)
        if args.growing == "confidence":
            if args.lower is not None or args.upper is not None:
                raise ConfigError(
                    "--growing confidence chooses its own window; --lower/--upper apply to "
                    "--growing threshold"
                )
            put("multiplier", args.multiplier)
            put("iterations", args.iterations)
            put("radius_mm", args.radius_mm)
            return "confidence-connected", params
        given = [
            o for o in ("multiplier", "iterations", "radius_mm") if getattr(args, o) is not None
        ]
        if given:
            opts = ", ".join("--" + o.replace("_", "-") for o in given)
            raise ConfigError(f"{opts} apply to --growing confidence only")
        if args.lower is None and args.upper is None:
            raise ConfigError("--growing threshold: give --lower, --upper or both")
        put("lower", args.lower)
        put("upper", args.upper)
        return "connected-threshold", params
    if m == "watershed":
        if args.markers is not None:
            params["markers"] = read_label_map(args.markers)
        put("min_distance_mm", args.min_distance_mm)
        put("min_peak_mm", args.min_peak_mm)
        put("sigma_mm", args.sigma_mm)
        put("landscape", args.landscape)
        return "watershed", params
    # edges
    if args.low is None:
        raise ConfigError("--method edges: give --low (gradient threshold, intensity per mm)")
    params["low"] = args.low
    put("high", args.high)
    params["region"] = bool(args.region)
    put("closing_mm", args.edge_closing_mm)
    if (args.operator or "sobel") == "canny":
        if args.high is None:
            raise ConfigError("--operator canny: give --high (upper hysteresis threshold) too")
        put("sigma_mm", args.sigma_mm)
        return "canny", params
    if args.sigma_mm is not None:
        raise ConfigError("--sigma-mm applies to --operator canny (use --smooth-mm for sobel)")
    return "sobel", params


def _targets(path: Path) -> tuple[Path, Path]:
    """The label map and its label table (``<name>.labels.json``: each method names its
    labels differently), both in the folder the user chose."""
    return path, output_path(path.parent, case_stem(path), ".labels.json")


def write_labels(
    labels: Any, path: Path, *, overwrite: bool, source: Path, series: str | int | None
) -> Path:
    """Write the label map as ``medseg predict`` writes segmentations (format by the suffix
    of ``path``: NIfTI, NRRD, 3D Slicer ``.seg.nrrd`` or a DICOM SEG ``.dcm`` referencing the
    DICOM input), with its label table beside; both are committed together and recorded in
    the run manifest ``segment.json`` of the folder."""
    from medseg.io.labels import build_label_table, write_label_table
    from medseg.io.manifest import RunManifest
    from medseg.io.segmentation import format_from_path, write_segmentation

    fmt = format_from_path(path)
    kw: dict[str, Any] = {"source": source, "series": series} if fmt == "dicom-seg" else {}
    targets = _targets(path)
    manifest = RunManifest.open(path.parent, "segment", compare=False)
    table = build_label_table(labels.label_names, labels.labels_present())
    with manifest.commit_case(
        path.name, list(targets), inputs=[str(source)], overwrite=overwrite
    ) as c:
        write_segmentation(
            labels, c.temporary(path), format=fmt, table_name=None, label_table=table, **kw
        )
        background = labels.label_names.get(0, "background")
        write_label_table(table, c.temporary(targets[1]), background=background)
    return path


def _check_output(args: argparse.Namespace) -> None:
    """Before any work: the output is not an input, and replaces only what medseg wrote."""
    from medseg.io.atomic import check_writable
    from medseg.io.manifest import RunManifest
    from medseg.io.outputs import check_not_inputs

    targets = _targets(args.output)
    inputs = [p for p in (args.input, args.mask, args.markers) if p is not None]
    check_not_inputs(inputs, files=targets)
    check_writable(args.output, True)
    manifest = RunManifest.open(args.output.parent, "segment", compare=False)
    for t in targets:
        manifest.check_replaceable(t, args.overwrite, args.output.name)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from medseg.classical import PostOptions, segment
    from medseg.io import read_volume
    from medseg.io.segmentation import format_from_path

    format_from_path(args.output)  # .nii.gz, .nii, .nrrd, .seg.nrrd or .dcm (DICOM SEG)
    _check_output(args)
    series: str | int | None = args.series
    if isinstance(series, str) and series.isdigit():
        series = int(series)
    volume = read_volume(args.input, series=series, channel=args.channel)
    post = PostOptions(
        opening_mm=args.opening_mm,
        closing_mm=args.closing_mm,
        fill_holes=args.fill_holes,
        min_component_ml=args.min_component_ml,
        keep_largest=args.keep_largest,
        connectivity=args.component_connectivity,
    )
    name, params = method_params(args, volume)
    labels = segment(volume, name, smooth_mm=args.smooth_mm, post=post, **params)
    out = write_labels(
        labels, args.output, overwrite=args.overwrite, source=args.input, series=series
    )
    found = {
        k: v
        for k, v in labels.meta.extra.items()
        if k
        in ("thresholds", "centres", "lower", "upper", "low", "high", "mean", "std", "n_objects")
    }
    details = ", ".join(f"{k} {_fmt(v)}" for k, v in found.items())
    print(f"{name}: {details}" if details else name)
    counts = np.bincount(np.asarray(labels.array).ravel().astype(np.int64))
    for v in range(1, len(counts)):
        if counts[v] and v <= 20:
            ml = counts[v] * labels.voxel_volume_ml
            print(f"  {v:>3}  {labels.name_of(v):<16} {counts[v]:>10} voxels  {ml:10.2f} mL")
    n_labels = int(np.count_nonzero(counts[1:]))
    if n_labels > 20:
        print(f"  ... {n_labels} labels in all")
    print(f"wrote {out}")
    return 0


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return str(v)
