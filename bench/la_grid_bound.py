"""How much Dice does a coarser grid cost by itself? For each reference label map of a dataset
(default: la2018_msd's 12 left atria) and each spacing: the mask resampled to that spacing by
trilinear interpolation, back to its own grid the same way, thresholded at 0.5, and scored
against itself (Dice on the original grid). That is the best a network predicting on that grid
can do (its probabilities are restored to the original grid by the same interpolation), so the
gap between a recipe's Dice and this bound is the network's, not the grid's::

    python bench/la_grid_bound.py                      # 1.5, 1.25 and 1.0 mm
    python bench/la_grid_bound.py --spacing 2.0 1.5

The reference it is compared with is the original grid itself (Dice 1.0): the table's ratio
column is the bound over that. ``--smoke`` scores a synthetic ball (the test suite): its bound
must rise as the grid gets finer.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "la2018_msd"


def through_grid(mask: np.ndarray, zooms: tuple[float, ...], spacing: float) -> np.ndarray:
    """``mask`` (bool, voxel sizes ``zooms`` mm) to ``spacing`` mm and back, trilinear,
    thresholded at 0.5."""
    import torch
    from torch.nn import functional

    t = torch.from_numpy(mask.astype(np.float32))[None, None]
    size = [max(1, round(n * z / spacing)) for n, z in zip(mask.shape, zooms, strict=True)]
    coarse = functional.interpolate(t, size=size, mode="trilinear", align_corners=False)
    back = functional.interpolate(coarse, size=mask.shape, mode="trilinear", align_corners=False)
    return np.asarray(back[0, 0].numpy() > 0.5)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * np.logical_and(a, b).sum() / (a.sum() + b.sum()))


def ball(shape: tuple[int, int, int], radius: float) -> np.ndarray:
    grid = np.indices(shape).astype(float)
    centre = np.array([(n - 1) / 2 for n in shape])[:, None, None, None]
    return np.asarray(((grid - centre) ** 2).sum(0) <= radius**2)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="a Decathlon-layout dataset")
    ap.add_argument("--spacing", type=float, nargs="+", default=[1.5, 1.25, 1.0])
    ap.add_argument("--smoke", action="store_true", help="a synthetic ball (the test suite)")
    args = ap.parse_args()
    if args.smoke:
        masks = [("ball", ball((40, 40, 32), 9.5), (0.625, 0.625, 0.625))]
    else:
        import nibabel as nib

        files = sorted((args.data / "labelsTr").glob("*.nii.gz"))
        if not files:
            sys.exit(f"{args.data / 'labelsTr'}: no label maps (the benchmark needs ../shared)")
        masks = []
        for f in files:
            img = nib.load(str(f))
            zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
            masks.append((f.name, np.asarray(img.dataobj) > 0, zooms))
    print(f"Dice of each reference through a coarser grid and back ({len(masks)} masks)")
    print("| grid mm | mean Dice | sd | worst | ratio vs the original grid |")
    print("|---|---|---|---|---|")
    means = []
    for sp in args.spacing:
        scores = [dice(through_grid(m, z, sp), m) for _, m, z in masks]
        sd = statistics.stdev(scores) if len(scores) > 1 else 0.0
        means.append(statistics.mean(scores))
        print(f"| {sp:g} | {means[-1]:.4f} | {sd:.4f} | {min(scores):.4f} | {means[-1]:.4f} |")
    by_spacing = [m for _, m in sorted(zip(args.spacing, means, strict=True), reverse=True)]
    if args.smoke and by_spacing != sorted(by_spacing):
        sys.exit("smoke: the bound should rise as the grid gets finer")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
