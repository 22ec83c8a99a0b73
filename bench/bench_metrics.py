"""Benchmark: medseg.metrics vs MONAI and DeepMind surface-distance on whole multi-label cases.

For each pair it times, in the same run:

* ``medseg``: :func:`medseg.metrics.evaluate_pair` — every label present, Dice/IoU/counts/volumes,
  HD, HD95, ASSD and NSD from one pass (border-voxel surfaces, the default);
* ``medseg surfels``: the same with ``surface="surfels"`` (DeepMind's definition);
* ``MONAI``: per label, ``compute_hausdorff_distance(..., spacing=sp, percentile=95)`` and the
  plain (max) call, on ``(pred == v)`` / ``(ref == v)`` masks (building the masks is included:
  a multi-label case has to be split for MONAI, and one-hot encoding 117 labels of a
  512×512×200 grid does not fit in memory);
* ``surface-distance``: per label ``compute_surface_distances`` + robust HD 95/100 + average
  distance + surface Dice at the tolerance.

Ratios are ``reference time / medseg time`` from the same run (>1: medseg faster). HD95/HD
differences are reported against the medseg mode with the same definition (border voxels for
MONAI, surfels for surface-distance).

Pairs: the TotalSegmentator 117-class CT pair (``example_seg.nii.gz`` as reference,
``example_seg_fast.nii.gz`` as prediction, 122×101×30, 3 mm), and the same pair upsampled by
nearest neighbour to 512×512×200 (spacing 0.715×0.592×0.45 mm) — a realistic multi-label
grid of clinical CT size.

Usage::

    python bench/bench_metrics.py [--big 512 512 200] [--repeats 1] [--no-deepmind]
    python bench/bench_metrics.py --smoke     # synthetic 5-label pair, 48x44x36, seconds (tests)
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from medseg.io import read_label_map  # noqa: E402
from medseg.metrics import evaluate_pair  # noqa: E402
from medseg.volume import LabelMap  # noqa: E402

SHARED = Path(os.environ.get("MEDSEG_SHARED_DATA", REPO.parent / "shared" / "data"))
TOL_MM = 2.0


def timed(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def monai_case(pred: LabelMap, ref: LabelMap, labels: list[int]) -> dict[int, tuple[float, float]]:
    import torch
    from monai.metrics import compute_hausdorff_distance

    sp = list(ref.spacing)
    out: dict[int, tuple[float, float]] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for v in labels:
            p = torch.from_numpy(pred.array == v)[None, None]
            g = torch.from_numpy(ref.array == v)[None, None]
            kw: dict[str, Any] = {"include_background": True, "spacing": sp}
            hd95 = float(compute_hausdorff_distance(p, g, percentile=95, **kw))
            hd = float(compute_hausdorff_distance(p, g, **kw))
            out[v] = (hd95, hd)
    return out


def deepmind_case(
    pred: LabelMap, ref: LabelMap, labels: list[int]
) -> dict[int, tuple[float, float]]:
    import surface_distance as sd

    out: dict[int, tuple[float, float]] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for v in labels:
            s = sd.compute_surface_distances(ref.array == v, pred.array == v, list(ref.spacing))
            hd95 = float(sd.compute_robust_hausdorff(s, 95))
            hd = float(sd.compute_robust_hausdorff(s, 100))
            sd.compute_average_surface_distance(s)
            sd.compute_surface_dice_at_tolerance(s, TOL_MM)
            out[v] = (hd95, hd)
    return out


def max_diff(recs: list[Any], ref_vals: dict[int, tuple[float, float]]) -> tuple[float, float]:
    d95 = dmax = 0.0
    for r in recs:
        if r.undefined:
            continue
        a95, amax = ref_vals[int(r.label)]
        d95 = max(d95, abs(a95 - r.hd95_mm))
        dmax = max(dmax, abs(amax - r.hd_mm))
    return d95, dmax


def synthetic_pair() -> tuple[LabelMap, LabelMap]:
    """Five ball labels (reference) and the same balls shifted by one voxel and grown by one
    (prediction), on a 40x36x30 grid of 1.5x1.5x3 mm: a tiny multi-label case."""
    shape = (40, 36, 30)
    g = np.indices(shape, dtype=float)
    ref = np.zeros(shape, np.uint8)
    pred = np.zeros(shape, np.uint8)
    centres = [(10, 10, 8), (28, 12, 10), (12, 26, 18), (30, 26, 20), (20, 18, 15)]
    for v, (c, r) in enumerate(zip(centres, (5, 4, 6, 3, 4), strict=True), start=1):
        d2 = sum((g[i] - c[i]) ** 2 for i in range(3))
        ref[d2 <= r * r] = v
        d2p = sum((g[i] - c[i] - (1 if i == 0 else 0)) ** 2 for i in range(3))
        pred[d2p <= (r + 1) ** 2] = v
    aff = np.diag([1.5, 1.5, 3.0, 1.0])
    return LabelMap(pred, aff, "synthetic_pred"), LabelMap(ref, aff, "synthetic_ref")


def load_pairs(
    big: tuple[int, int, int], smoke: bool = False
) -> list[tuple[str, LabelMap, LabelMap]]:
    if smoke:
        pred, ref = synthetic_pair()
        pairs = [("synthetic 5-label 40x36x30 @1.5x1.5x3mm", pred, ref)]
    else:
        d = SHARED / "totalsegmentator_example"
        if not d.is_dir():
            sys.exit(f"{d}: not found (set MEDSEG_SHARED_DATA); this benchmark needs the data")
        ref = read_label_map(d / "example_seg.nii.gz")
        pred = read_label_map(d / "example_seg_fast.nii.gz")
        pairs = [("TotalSeg 117-class CT 122x101x30 @3mm", pred, ref)]
    zoom = [b / s for b, s in zip(big, ref.shape, strict=True)]
    sp = [s * n / b for s, n, b in zip(ref.spacing, ref.shape, big, strict=True)]
    aff = np.diag([*sp, 1.0])
    big_ref = LabelMap(ndimage.zoom(ref.array, zoom, order=0), aff, "example_seg (upsampled)")
    big_pred = LabelMap(ndimage.zoom(pred.array, zoom, order=0), aff, "example_seg_fast (up)")
    sps = "x".join(f"{s:.3g}" for s in sp)
    pairs.append((f"same, upsampled {'x'.join(map(str, big))} @{sps}mm", big_pred, big_ref))
    return pairs


def bench_pair(
    name: str, pred: LabelMap, ref: LabelMap, args: argparse.Namespace
) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []

    def ours() -> Any:
        return evaluate_pair(pred, ref, tolerance_mm=TOL_MM)

    def ours_surfels() -> Any:
        return evaluate_pair(pred, ref, tolerance_mm=TOL_MM, surface="surfels")

    t_m, recs = timed(ours, args.repeats)
    # The references get only the labels present in both masks (less work than medseg's
    # all-labels pass; surface-distance cannot handle an empty mask under NumPy 2).
    both = [int(r.label) for r in recs if not r.undefined]
    rows.append((name, f"medseg ({len(recs)} labels, all metrics)", f"{t_m:.2f}", "1.00", "", ""))
    t_s, recs_s = timed(ours_surfels, args.repeats)
    rows.append((name, "medseg surfels (all metrics)", f"{t_s:.2f}", f"{t_m / t_s:.2f}", "", ""))
    if not args.no_monai:
        t_ref, vals = timed(lambda: monai_case(pred, ref, both), args.repeats)
        d95, dmax = max_diff(recs, vals)
        rows.append(
            (name, f"MONAI HD95 + HD ({len(both)} labels)", f"{t_ref:.2f}",
             f"{t_ref / t_m:.2f}", f"{d95:.2e}", f"{dmax:.2e}")
        )  # fmt: skip
    if not args.no_deepmind:
        t_ref, vals = timed(lambda: deepmind_case(pred, ref, both), args.repeats)
        d95, dmax = max_diff(recs_s, vals)
        rows.append(
            (name, f"surface-distance ({len(both)} labels)", f"{t_ref:.2f}",
             f"{t_ref / t_m:.2f}", f"{d95:.2e}", f"{dmax:.2e}")
        )  # fmt: skip
        rows.append((name, "  same, ratio vs medseg surfels", "", f"{t_ref / t_s:.2f}", "", ""))
    print(f"{name}: {len(recs)} labels, {len(both)} present in both", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--big", type=int, nargs=3, default=(512, 512, 200), metavar=("I", "J", "K"))
    ap.add_argument("--repeats", type=int, default=1, help="best of N for each timing")
    ap.add_argument("--no-deepmind", action="store_true", help="skip surface-distance")
    ap.add_argument("--no-monai", action="store_true", help="skip MONAI")
    ap.add_argument("--smoke", action="store_true", help="synthetic pair, tiny grid (tests)")
    args = ap.parse_args(argv)
    if args.smoke:
        args.big = (48, 44, 36)

    print(f"python {platform.python_version()}, {os.cpu_count()} CPU(s), no GPU used")
    # Warm-up outside the timings: imports (MONAI's surfel-area table pulls in torch).
    tiny = np.zeros((6, 6, 6), dtype=np.uint8)
    tiny[2:4, 2:4, 2:4] = 1
    warm = LabelMap(tiny, np.eye(4))
    evaluate_pair(warm, warm, surface="surfels")
    if not args.no_monai:
        monai_case(warm, warm, [1])
    rows: list[tuple[str, ...]] = []
    for name, pred, ref in load_pairs(tuple(args.big), smoke=args.smoke):
        rows += bench_pair(name, pred, ref, args)

    head = ("pair", "implementation", "seconds", "ref/medseg", "max|dHD95| mm", "max|dHD| mm")
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |")
    print(
        "dHD95/dHD: MONAI vs medseg border voxels (same definition); surface-distance vs medseg "
        "surfels (same definition). 'ref/medseg' > 1 means medseg is faster."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
