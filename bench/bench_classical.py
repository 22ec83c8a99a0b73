"""Benchmark: classical segmentation baselines scored against references on real cases.

Each applicable method of :mod:`medseg.classical` runs on real cases from ``../shared/data``
(or ``$MEDSEG_SHARED_DATA``) and on the spleen CT shipped with medseg, and is scored with
:func:`medseg.metrics.evaluate_arrays` (Dice, HD95 in mm, border voxels) and, for the lesion
masks, :func:`medseg.metrics.lesion_wise_scores` (BraTS 2023 lesion-wise Dice). One table:

==========================  ==============================================================
case set                    methods (the structure scored)
==========================  ==============================================================
spleen CT (MSD, shipped)    window 60–160 HU (+ smoothing, opening, largest component);
                            region growing from a seed (connected threshold; confidence
                            connected) — spleen
TotalSegmentator CT (2)     threshold >= 300 HU; >= 150 HU + closing + hole filling —
                            bones (model-made reference: vertebrae, ribs, ...)
MS FLAIR, MNI (3)           k-means and multi-Otsu inside the brain, brightest class, small
                            components removed — white-matter lesions
BraTS FLAIR (6)             k-means and multi-Otsu (K = 3) inside the brain, brightest class;
                            confidence-connected growing — whole tumour
==========================  ==============================================================

Seeds for region growing are the reference's deepest voxel (a stand-in for a user's click:
these rows say what growing achieves from a good seed, not a fully automatic method).

There is no trained network to compare with yet: ``--network-predictions DIR`` scores label
maps named ``<case>.nii.gz`` (case names as printed) as a ``network`` row of the same table,
and the ``vs network`` column gives each method's mean Dice minus the network's.

Usage::

    python bench/bench_classical.py            # every case set found
    python bench/bench_classical.py --smoke    # seconds: the shipped spleen CT + a tiny
                                               # synthetic lesion volume, all code paths
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from medseg.classical import PostOptions, segment  # noqa: E402
from medseg.io import read_label_map, read_volume  # noqa: E402
from medseg.metrics import evaluate_arrays, lesion_wise_scores  # noqa: E402
from medseg.volume import Volume  # noqa: E402

SHARED = Path(os.environ.get("MEDSEG_SHARED_DATA", REPO.parent / "shared" / "data"))
SAMPLE = REPO / "medseg" / "sample_data"

Method = Callable[[Volume, dict[str, np.ndarray]], np.ndarray]


@dataclass
class Case:
    """One image, the structure to find (``ref``) and helper masks (``brain``)."""

    group: str
    name: str
    image: Volume
    ref: np.ndarray
    masks: dict[str, np.ndarray] = field(default_factory=dict)
    lesions: bool = False


@dataclass
class Row:
    group: str
    method: str
    dice: list[float] = field(default_factory=list)
    hd95: list[float] = field(default_factory=list)
    lesion_dice: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)


def deepest(mask: np.ndarray, spacing: tuple[float, float, float]) -> tuple[float, ...]:
    from scipy import ndimage

    d = ndimage.distance_transform_edt(mask, sampling=spacing)
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(d)), mask.shape))


def seed_mm(case_image: Volume, ref: np.ndarray) -> list[tuple[float, float, float]]:
    x, y, z = case_image.voxel_to_world(deepest(ref, case_image.spacing))
    return [(float(x), float(y), float(z))]


def brightest(labels: np.ndarray) -> np.ndarray:
    return labels == labels.max()


def grown(
    v: Volume, m: dict[str, np.ndarray], radius_mm: float, smooth_mm: float, post=None
) -> np.ndarray:
    """Confidence-connected growing (k = 2.5, 2 iterations) from the reference's deepest voxel."""
    return (
        segment(
            v,
            "confidence-connected",
            seeds_mm=seed_mm(v, m["ref"]),
            multiplier=2.5,
            iterations=2,
            radius_mm=radius_mm,
            smooth_mm=smooth_mm,
            post=post,
        ).array
        > 0
    )


# --- methods per case set ----------------------------------------------------------------------


def spleen_methods() -> dict[str, Method]:
    post = PostOptions(opening_mm=3.0, keep_largest=True)
    return {
        "window 60-160 HU": lambda v, m: segment(v, "threshold", lower=60, upper=160).array > 0,
        "window + smooth 1.5 + open 3 + largest": lambda v, m: (
            segment(v, "threshold", lower=60, upper=160, smooth_mm=1.5, post=post).array > 0
        ),
        "region growing 60-160 (+ same post)": lambda v, m: (
            segment(
                v,
                "connected-threshold",
                seeds_mm=seed_mm(v, m["ref"]),
                lower=60,
                upper=160,
                smooth_mm=1.5,
                post=post,
            ).array
            > 0
        ),
        "confidence connected k=2.5": lambda v, m: grown(v, m, 5.0, 1.5),
    }


def bone_methods() -> dict[str, Method]:
    return {
        ">= 300 HU": lambda v, m: segment(v, "threshold", lower=300).array > 0,
        ">= 150 HU + close 3 + fill": lambda v, m: (
            segment(
                v, "threshold", lower=150, post=PostOptions(closing_mm=3.0, fill_holes=True)
            ).array
            > 0
        ),
    }


def lesion_methods(k: int) -> dict[str, Method]:
    post = PostOptions(min_component_ml=0.01)
    return {
        f"k-means K={k}, brightest, > 0.01 mL": lambda v, m: brightest(
            segment(v, "kmeans", classes=k, mask=m["brain"], post=post).array
        ),
        f"multi-Otsu K={k}, brightest, > 0.01 mL": lambda v, m: brightest(
            segment(v, "multi-otsu", classes=k, mask=m["brain"], post=post).array
        ),
    }


def tumour_methods() -> dict[str, Method]:
    return {
        "k-means K=3, brightest": lambda v, m: brightest(
            segment(v, "kmeans", classes=3, mask=m["brain"]).array
        ),
        "multi-Otsu K=3, brightest": lambda v, m: brightest(
            segment(v, "multi-otsu", classes=3, mask=m["brain"]).array
        ),
        "confidence connected k=2.5 (+ fill)": lambda v, m: grown(
            v, m, 3.0, 1.0, PostOptions(fill_holes=True)
        ),
    }


# --- cases -------------------------------------------------------------------------------------


def spleen_cases() -> Iterator[Case]:
    ct = read_volume(SAMPLE / "spleen_ct.nii.gz")
    ref = read_label_map(SAMPLE / "spleen_ct_label.nii.gz").array > 0
    yield Case("spleen CT (MSD crop)", "spleen_2", ct, ref)


def bone_cases() -> Iterator[Case]:
    import json

    root = SHARED / "totalsegmentator_example"
    if not root.is_dir():
        return
    names = json.loads((root / "label_map_total_and_total_mr.json").read_text())["total"]
    keys = ("vertebra", "rib_", "sacrum", "sternum", "hip", "femur", "scapula", "clavicula")
    for ct_name, seg_name in (
        ("example_ct_sm", "example_seg"),
        ("example_ct", "example_seg_fast_force_split"),
    ):
        seg = read_label_map(root / f"{seg_name}.nii.gz").array
        bone = [int(v) for v in np.unique(seg) if v and any(k in names[str(v)] for k in keys)]
        ct = read_volume(root / f"{ct_name}.nii.gz")
        yield Case("TotalSegmentator CT bones", ct_name, ct, np.isin(seg, bone))


def ms_cases() -> Iterator[Case]:
    root = SHARED / "ms_lesions_ljubljana" / "mni"
    for p in sorted(root.glob("patient*")) if root.is_dir() else []:
        flair = read_volume(p / "FLAIR.nii.gz")
        ref = read_label_map(p / "GOLD_STANDARD.nii.gz").array > 0
        yield Case("MS FLAIR lesions (MNI)", p.name, flair, ref, {"brain": flair.array != 0}, True)


def brats_cases() -> Iterator[Case]:
    root = SHARED / "brats2015_deepmedic"
    for p in sorted(root.glob("*/brats_*")) if root.is_dir() else []:
        flair = read_volume(p / "Flair_subtrMeanDivStd.nii.gz")
        ref = read_label_map(p / "OTMultiClass.nii.gz").array > 0
        brain = read_volume(p / "brainmask.nii.gz").array > 0.5
        yield Case("BraTS FLAIR whole tumour", p.name, flair, ref, {"brain": brain})


def smoke_lesion_case() -> Iterator[Case]:
    """A tiny synthetic FLAIR-like volume: brain ball, bright lesions (1 mm)."""
    rng = np.random.default_rng(0)
    shape = (40, 44, 36)
    g = np.indices(shape)
    brain = ((g - np.array(shape)[:, None, None, None] / 2) ** 2).sum(0) <= 16**2
    ref = np.zeros(shape, bool)
    for c in ((15, 20, 18), (25, 25, 15), (20, 30, 22)):
        ref |= ((g - np.array(c)[:, None, None, None]) ** 2).sum(0) <= 9
    img = np.where(brain, 60.0, 0.0) + np.where(ref, 50.0, 0.0) + rng.normal(0, 4, shape)
    img[~brain] = 0
    vol = Volume.from_geometry(img.astype(np.float32), (1.0, 1.0, 1.0))
    yield Case("synthetic lesions (smoke)", "synthetic", vol, ref, {"brain": brain}, True)


# --- scoring -----------------------------------------------------------------------------------


def score(case: Case, pred: np.ndarray, row: Row, seconds: float | None) -> None:
    (rec,) = evaluate_arrays(
        pred.astype(np.uint8), case.ref.astype(np.uint8), case.image.spacing, labels=[1]
    )
    row.dice.append(rec.dice)
    row.hd95.append(rec.hd95_mm)
    if case.lesions:
        lw = lesion_wise_scores(pred, case.ref, case.image.spacing)
        row.lesion_dice.append(lw.lesion_dice)
    if seconds is not None:
        row.seconds.append(seconds)


def network_prediction(folder: Path | None, case: Case) -> np.ndarray | None:
    if folder is None:
        return None
    path = folder / f"{case.name}.nii.gz"
    if not path.exists():
        return None
    lab = read_label_map(path)
    case.image.check_same_grid(lab)
    return np.asarray(lab.array) > 0


def run(smoke: bool, network: Path | None) -> list[Row]:
    sets: list[tuple[Callable[[], Iterator[Case]], dict[str, Method]]] = [
        (spleen_cases, spleen_methods())
    ]
    if smoke:
        sets.append((smoke_lesion_case, lesion_methods(3)))
    else:
        sets += [
            (bone_cases, bone_methods()),
            (ms_cases, lesion_methods(5)),
            (brats_cases, tumour_methods()),
        ]
    rows: dict[tuple[str, str], Row] = {}
    for cases, methods in sets:
        for case in cases():
            masks = {"ref": case.ref, **case.masks}
            for name, method in methods.items():
                row = rows.setdefault((case.group, name), Row(case.group, name))
                t0 = time.perf_counter()
                pred = method(case.image, masks)
                score(case, pred, row, time.perf_counter() - t0)
            net = network_prediction(network, case)
            if net is not None:
                score(
                    case,
                    net,
                    rows.setdefault((case.group, "network"), Row(case.group, "network")),
                    None,
                )
            print(f"  {case.group}: {case.name} done", file=sys.stderr)
    return list(rows.values())


def fmt_mean(values: list[float], digits: int = 3) -> str:
    if not values:
        return "—"
    a = np.asarray(values, dtype=np.float64)
    if len(a) == 1:
        return f"{a[0]:.{digits}f}"
    return f"{a.mean():.{digits}f} ({a.min():.{digits}f}–{a.max():.{digits}f})"


def table(rows: list[Row]) -> str:
    head = (
        "| case set | method | cases | Dice mean (min–max) | HD95 mm mean | lesion-wise Dice "
        "| s / case | vs network (Δ Dice) |\n|---|---|---|---|---|---|---|---|"
    )
    net = {r.group: float(np.mean(r.dice)) for r in rows if r.method == "network" and r.dice}
    lines = [head]
    for r in rows:
        delta = "—"
        if r.group in net and r.method != "network":
            delta = f"{float(np.mean(r.dice)) - net[r.group]:+.3f}"
        lines.append(
            f"| {r.group} | {r.method} | {len(r.dice)} | {fmt_mean(r.dice)} | "
            f"{fmt_mean(r.hd95, 1)} | {fmt_mean(r.lesion_dice)} | "
            f"{fmt_mean(r.seconds, 2) if r.seconds else '—'} | {delta} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="seconds: shipped spleen + synthetic")
    ap.add_argument(
        "--network-predictions",
        type=Path,
        metavar="DIR",
        help="label maps <case>.nii.gz of a network, scored as a 'network' row",
    )
    args = ap.parse_args(argv)
    print(
        f"machine: {platform.machine()} {platform.processor() or ''} {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}; shared data: "
        f"{SHARED if SHARED.is_dir() else 'absent'}",
        file=sys.stderr,
    )
    t0 = time.perf_counter()
    rows = run(args.smoke, args.network_predictions)
    print(table(rows))
    print(f"\n{time.perf_counter() - t0:.0f} s in all", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
