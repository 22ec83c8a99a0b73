"""Benchmark: medseg's one-pass volumetry against TotalSegmentator's per-label loop.

Data: a synthetic CT of clinical size (default 512×512×400, 0.8×0.8×1.0 mm, int16 HU) with
117 labelled structures of realistic sizes and shapes — large and medium ellipsoidal organs,
long tubes along the body axis (vessels), a column of small vertebra-like blobs, 24 thin
curved rib-like arcs (large bounding boxes, few voxels: the hard case for box-wise work) and
small nodules. No structure touches the image border, so TotalSegmentator's default
``exclude_masks_at_border=True`` measures every structure and both compute the same volumes.

Timed in the same run, on the same in-memory arrays (reading files is excluded from both):

* ``medseg``: :func:`medseg.volumetry.label_statistics` — for every label: voxels, volume
  (mm³, mL), 26-connected components, centroid and bounding box in RAS+ mm, exact largest
  diameter, border flag, and with the image mean/median/std/min/max/p5/p95;
* ``TotalSegmentator loop``: the loop of ``totalsegmentator.statistics.get_basic_statistics``
  reproduced step by step (``seg == k``, its ``touches_border`` check, ``data.sum() * vox_vol``,
  ``(data > 0).astype(np.uint8)``, ``np.average(ct, weights=roi_mask)``), which computes only
  the volume and the mean intensity, once per label of its 117-class table.

The script checks that both give the same volume (mm³) and mean intensity for every label,
then prints the table. Ratio = TotalSegmentator loop time / medseg time (> 1: medseg faster).

Usage::

    python bench/bench_volumetry.py [--shape 512 512 400] [--repeats 1]
    python bench/bench_volumetry.py --smoke      # tiny grid, seconds (run by the tests)
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench_metrics import timed  # noqa: E402  (best of N runs, same helper as there)

from medseg.volume import LabelMap, Volume, VolumeMeta, affine_from_geometry  # noqa: E402
from medseg.volumetry import label_statistics  # noqa: E402

N_LABELS = 117


# --- synthetic CT -----------------------------------------------------------------------------


def _ellipsoid(
    labels: np.ndarray, value: int, centre: Sequence[float], radii: Sequence[float]
) -> None:
    lo = [max(int(np.floor(c - r)), 1) for c, r in zip(centre, radii, strict=True)]
    hi = [
        min(int(np.ceil(c + r)) + 1, s - 1)
        for c, r, s in zip(centre, radii, labels.shape, strict=True)
    ]
    g = np.ogrid[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    d = sum(((g[a] - centre[a]) / radii[a]) ** 2 for a in range(3))
    labels[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]][d <= 1.0] = value


def _arc(
    labels: np.ndarray,
    value: int,
    centre_xy: Sequence[float],
    radius: float,
    z: float,
    tube: float,
    angles: tuple[float, float],
) -> None:
    """A thin curved tube (rib-like): points within ``tube`` voxels of a circular arc of
    ``radius`` voxels in the plane ``k = z``, between two angles (radians)."""
    cx, cy = centre_xy
    lo = [max(int(cx - radius - tube - 1), 1), max(int(cy - radius - tube - 1), 1)]
    hi = [
        min(int(cx + radius + tube + 2), labels.shape[0] - 1),
        min(int(cy + radius + tube + 2), labels.shape[1] - 1),
    ]
    zlo, zhi = max(int(z - tube - 1), 1), min(int(z + tube + 2), labels.shape[2] - 1)
    gi, gj, gk = np.ogrid[lo[0] : hi[0], lo[1] : hi[1], zlo:zhi]
    rr = np.sqrt((gi - cx) ** 2 + (gj - cy) ** 2)
    ang = np.arctan2(gj - cy, gi - cx)
    inside = ((rr - radius) ** 2 + (gk - z) ** 2 <= tube**2) & (ang >= angles[0])
    inside &= ang <= angles[1]
    labels[lo[0] : hi[0], lo[1] : hi[1], zlo:zhi][inside] = value


def synthetic_ct(
    shape: Sequence[int], spacing: Sequence[float], seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(labels uint8, ct int16 HU, affine)`` of a body-like phantom with 117 structures."""
    rng = np.random.default_rng(seed)
    sx, sy, sz = (int(v) for v in shape)
    sp = np.asarray(spacing, dtype=float)
    labels = np.zeros((sx, sy, sz), dtype=np.uint8)
    mm = 1.0 / sp  # voxels per mm along each axis
    cx, cy, cz = sx / 2, sy / 2, sz / 2
    body = (0.42 * sx, 0.34 * sy)
    value = 1

    def fits(c: Sequence[float], r: Sequence[float]) -> bool:
        return all(c[a] - r[a] >= 2 and c[a] + r[a] <= shape[a] - 3 for a in range(3))

    def place(radii_mm: Sequence[float]) -> None:
        nonlocal value
        r = [radii_mm[a] * mm[a] for a in range(3)]
        r = [min(r[a], shape[a] / 2 - 4) for a in range(3)]
        r = [max(v, 1.0) for v in r]
        for _ in range(100):
            ang = rng.uniform(0, 2 * np.pi)
            rad = np.sqrt(rng.uniform(0, 1))
            c = [
                cx + rad * (body[0] - r[0]) * np.cos(ang),
                cy + rad * (body[1] - r[1]) * np.sin(ang),
                rng.uniform(r[2] + 3, sz - r[2] - 3),
            ]
            if fits(c, r):
                break
        else:
            c = [cx, cy, cz]
        _ellipsoid(labels, value, c, r)
        value += 1

    for _ in range(10):  # large organs (liver, lungs, bowel ...)
        place(rng.uniform(55, 100, 3))
    for _ in range(25):  # medium organs and muscles
        place(rng.uniform(15, 40, 3))
    for t in range(4):  # long vessels along the body axis
        r = 6 + 3 * t
        place((r, r, 0.36 * sz * sp[2]))
    for t in range(26):  # vertebra-like column
        zc = 8 + t * (sz - 16) / 26
        c = [cx, cy + 0.22 * sy, zc + 0.5 * (sz - 16) / 26]
        rz = max(0.4 * (sz - 16) / 26, 1.0)
        _ellipsoid(labels, value, c, (14 * mm[0], 12 * mm[1], rz))
        value += 1
    for t in range(24):  # ribs: thin arcs, 12 levels, left and right
        z = 10 + (t // 2) * (sz - 20) / 12
        a0 = np.pi * (0.15 if t % 2 else 0.55)
        _arc(
            labels,
            value,
            (cx, cy + 0.05 * sy),
            min(body) * 0.85,
            z,
            max(2.0, 4 * mm[0]),
            (a0, a0 + 0.3 * np.pi),
        )
        value += 1
    while value <= N_LABELS:  # small nodules, lymph nodes, glands
        place(rng.uniform(3, 12, 3))

    gi, gj = np.ogrid[:sx, :sy]
    inside = ((gi - cx) / (0.46 * sx)) ** 2 + ((gj - cy) / (0.38 * sy)) ** 2 <= 1.0
    ct = np.full((sx, sy, sz), -1000, dtype=np.int16)
    ct[inside] = 30
    lut = rng.integers(-120, 400, 256).astype(np.int16)
    lut[0] = 0
    ct += np.where(labels > 0, lut[labels], 0).astype(np.int16)
    ct += rng.normal(0, 15, (sx, sy, sz)).astype(np.int16)
    affine = affine_from_geometry(sp, (-cx * sp[0], -cy * sp[1], -cz * sp[2]))
    return labels, ct, affine


# --- TotalSegmentator's loop (totalsegmentator/statistics.py, get_basic_statistics) -----------


def _ts_touches_border(mask: np.ndarray) -> bool:
    if np.any(mask[:3, :, :]) or np.any(mask[-3:, :, :]):
        return True
    if np.any(mask[:, :3, :]) or np.any(mask[:, -3:, :]):
        return True
    return bool(np.any(mask[:, :, :3]) or np.any(mask[:, :, -3:]))


def totalsegmentator_loop(
    seg: np.ndarray,
    ct: np.ndarray,
    spacing: Sequence[float],
    class_map: dict[int, str],
    exclude_masks_at_border: bool = True,
) -> dict[str, dict[str, float]]:
    """The per-label loop of TotalSegmentator's ``get_basic_statistics`` (metric "mean"), on
    arrays already in memory: one full-size mask per label."""
    vox_vol = spacing[0] * spacing[1] * spacing[2]
    stats: dict[str, dict[str, float]] = {}
    for k, mask_name in class_map.items():
        stats[mask_name] = {}
        data = seg == k
        if _ts_touches_border(data) and exclude_masks_at_border:
            stats[mask_name]["volume"] = 0.0
            stats[mask_name]["intensity"] = 0.0
        else:
            stats[mask_name]["volume"] = data.sum() * vox_vol
            roi_mask = (data > 0).astype(np.uint8)
            stats[mask_name]["intensity"] = (
                np.average(ct, weights=roi_mask).round(5) if roi_mask.sum() > 0 else 0.0
            )
    return stats


# --- the run ------------------------------------------------------------------------------------


def run(shape: Sequence[int], spacing: Sequence[float], repeats: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    labels, ct, affine = synthetic_ct(shape, spacing)
    t_make = time.perf_counter() - t0
    names = {v: f"structure_{v:03d}" for v in range(1, N_LABELS + 1)}
    seg = LabelMap(labels, affine, "synthetic_seg", label_names=names)
    img = Volume(ct, affine, "synthetic_ct", VolumeMeta(modality="CT", units="HU"))
    present = int(np.count_nonzero(np.bincount(labels.ravel(), minlength=N_LABELS + 1)[1:]))

    # Warm-up on a tiny grid so that lazy imports (cc3d, scipy.spatial) are not timed.
    tiny = np.zeros((8, 8, 8), dtype=np.uint8)
    tiny[2:5, 2:6, 3:7] = 1
    label_statistics(LabelMap(tiny, affine), Volume(tiny.astype(np.int16), affine))

    t_ms, recs = timed(lambda: label_statistics(seg, img), repeats)
    t_ts, ts = timed(lambda: totalsegmentator_loop(labels, ct, seg.spacing, names), repeats)

    worst_vol = worst_mean = 0.0
    for r in recs:
        ref = ts[r.name]
        assert r.intensity is not None
        if ref["volume"] == 0.0:
            raise AssertionError(f"{r.name}: TotalSegmentator reported 0 (touches border?)")
        worst_vol = max(worst_vol, abs(r.volume_mm3 - ref["volume"]) / ref["volume"])
        worst_mean = max(worst_mean, abs(round(r.intensity.mean, 5) - ref["intensity"]))
    if worst_vol > 1e-9 or worst_mean > 1e-4:
        raise AssertionError(f"results differ: volume {worst_vol:.3g}, mean {worst_mean:.3g}")
    labelled = float(np.count_nonzero(labels)) / labels.size
    return {
        "shape": tuple(int(s) for s in shape),
        "spacing": tuple(float(s) for s in spacing),
        "labels_present": present,
        "labelled_fraction": labelled,
        "make_s": t_make,
        "medseg_s": t_ms,
        "ts_s": t_ts,
        "ratio": t_ts / t_ms,
        "max_rel_volume_diff": worst_vol,
        "max_mean_diff": worst_mean,
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", type=int, nargs=3, default=(512, 512, 400))
    ap.add_argument("--spacing", type=float, nargs=3, default=(0.8, 0.8, 1.0))
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--smoke", action="store_true", help="tiny grid (seconds), for the tests")
    args = ap.parse_args(argv)
    shape, spacing = tuple(args.shape), tuple(args.spacing)
    if args.smoke:
        shape, spacing = (96, 80, 72), (3.0, 3.0, 4.0)
    res = run(shape, spacing, args.repeats)
    print(
        f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, numpy {np.__version__}; "
        f"{datetime.date.today().isoformat()}"
    )
    print(
        f"grid {'x'.join(map(str, res['shape']))}, spacing "
        f"{'x'.join(f'{s:g}' for s in res['spacing'])} mm, {res['labels_present']} labels "
        f"present, {100 * res['labelled_fraction']:.1f} % of voxels labelled "
        f"(phantom built in {res['make_s']:.1f} s)"
    )
    rows = [
        ("medseg label_statistics (all statistics)", res["medseg_s"], 1.0),
        ("TotalSegmentator loop (volume + mean)", res["ts_s"], res["ratio"]),
    ]
    print(f"{'pipeline':<44} {'seconds':>9} {'ratio':>8}")
    for name, t, ratio in rows:
        print(f"{name:<44} {t:>9.3f} {ratio:>8.1f}")
    print(
        f"agreement: max relative volume difference {res['max_rel_volume_diff']:.2g}, "
        f"max mean-intensity difference {res['max_mean_diff']:.2g} HU"
    )
    print(f"ratio TotalSegmentator loop / medseg: {res['ratio']:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
