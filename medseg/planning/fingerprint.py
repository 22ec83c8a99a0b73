"""The dataset fingerprint: what the planning rules need to know about a dataset.

:func:`collect_fingerprint` reads every case once (through :func:`medseg.datasets.read_case`)
and summarises it: spacings and shapes after reorientation to closest-canonical RAS, shapes
after cropping to the non-zero region, foreground intensity statistics per channel, per-label
volumes. The result is stored in the plan (``fingerprint:``), so a plan documents its data.

:func:`check_plan_fits_dataset` checks, before training, that a dataset is the kind of data a
plan was made for (channels, labels, and for absolute intensity schemes the intensity range),
so a plan made for one dataset is never silently trained on another.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medseg.datasets import Case, Dataset, read_case
from medseg.errors import ConfigError, InputError
from medseg.plan.schema import ChannelStats, Fingerprint, Plan
from medseg.transforms.spatial import Reorientation, nonzero_box


def _case_fingerprint(
    case: Case, n_channels: int, voxels: int, rng: np.random.Generator
) -> dict[str, Any]:
    vols, lab = read_case(case)
    ref = vols[0]
    reo = Reorientation.from_affine(ref.affine)
    stack = np.stack([np.asarray(v.array) for v in vols])
    box = nonzero_box(stack)
    crop_shape = reo.shape([hi - lo for lo, hi in box])
    values: NDArray[Any] = np.zeros((n_channels, 0), dtype=np.float32)
    volumes: dict[int, float] = {}
    if lab is not None:
        flat = lab.array.ravel()
        fg = np.flatnonzero(flat > 0)
        if fg.size:
            pick = rng.choice(fg, size=min(voxels, fg.size), replace=False)
            values = stack.reshape(n_channels, -1)[:, pick].astype(np.float32)
        counts = np.bincount(flat[flat > 0].astype(np.int64))
        volumes = {int(v): float(c) * ref.voxel_volume_ml for v, c in enumerate(counts) if c}
    return {
        "spacing": reo.spacing(ref.spacing),
        "shape": reo.shape(ref.shape),
        "crop_shape": crop_shape,
        "values": values,
        "volumes": volumes,
    }


def _sig(x: Any) -> float:
    """Round to 7 significant digits (plan.yaml stays readable; float32 data hold no more)."""
    return float(f"{float(x):.7g}")


def collect_fingerprint(ds: Dataset, *, voxels_per_case: int = 20000, seed: int = 0) -> Fingerprint:
    """Read every case once and summarise it.

    Collects spacings and shapes (after reorientation to closest-canonical RAS), shapes after
    cropping to the non-zero region, foreground (label > 0) intensity statistics per channel
    from at most ``voxels_per_case`` randomly chosen voxels per case (seeded, so repeatable),
    and per-label volumes (mL).
    """
    rng = np.random.default_rng(seed)
    n_ch = len(ds.channel_names)
    per_case = [_case_fingerprint(c, n_ch, voxels_per_case, rng) for c in ds.cases]
    values = np.concatenate([p["values"] for p in per_case], axis=1)
    stats = []
    for c, name in enumerate(ds.channel_names):
        v = values[c].astype(np.float64)
        if v.size == 0:
            raise InputError(
                ds.source,
                "no foreground (label > 0) voxels in any case; cannot compute intensity statistics",
            )
        p005, p50, p995 = np.percentile(v, [0.5, 50.0, 99.5])
        stats.append(
            ChannelStats(
                channel=name,
                mean=_sig(v.mean()),
                std=_sig(v.std()),
                median=_sig(p50),
                percentile_00_5=_sig(p005),
                percentile_99_5=_sig(p995),
                min=_sig(v.min()),
                max=_sig(v.max()),
            )
        )
    spacings = np.array([p["spacing"] for p in per_case], dtype=np.float64)
    shapes = np.array([p["shape"] for p in per_case], dtype=np.int64)
    vols: dict[int, list[float]] = {}
    for p in per_case:
        for k, ml in p["volumes"].items():
            vols.setdefault(k, []).append(ml)
    med_sp = np.median(spacings, axis=0)
    med_sh = np.median(shapes, axis=0)
    return Fingerprint(
        n_cases=len(per_case),
        spacings=[(float(a), float(b), float(c)) for a, b, c in spacings],
        shapes=[(int(a), int(b), int(c)) for a, b, c in shapes],
        shapes_after_crop=[tuple(int(x) for x in p["crop_shape"]) for p in per_case],  # type: ignore[misc]
        median_spacing=(float(med_sp[0]), float(med_sp[1]), float(med_sp[2])),
        median_shape=(int(med_sh[0]), int(med_sh[1]), int(med_sh[2])),
        intensity=stats,
        label_volume_ml_median={k: _sig(np.median(v)) for k, v in sorted(vols.items())},
        label_case_count={k: len(v) for k, v in sorted(vols.items())},
        modalities=list(ds.channel_names),
    )


#: Share of a case's foreground voxels that must lie within the plan's foreground intensity
#: range (its 0.5 to 99.5 percentiles) for a channel normalised on an absolute scale (``ct``,
#: ``window``); data of the planned kind have ~99 %.
MIN_SHARE_IN_RANGE = 0.5


def _names(d: dict[int, str]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(d.items()))


def check_plan_fits_dataset(plan: Plan, ds: Dataset, plan_source: str | Path) -> None:
    """Refuse a dataset that is not the kind of data ``plan`` was made for.

    Compared: the channel names (count and names, case-insensitive, e.g. ``CT`` vs ``MRI``),
    the label names (values and names), and, for channels the plan normalises on an absolute
    scale (``ct``, ``window``) and when the plan has a fingerprint, the intensity range: at
    least :data:`MIN_SHARE_IN_RANGE` of the first case's foreground voxels must lie within the
    plan's foreground 0.5-99.5 percentile range (one case is read). Z-score and percentile
    schemes normalise each case, so their absolute range is not compared.

    Raises:
        ConfigError: naming the plan file and the dataset, what the plan expects and what the
            dataset has.
    """
    where = f"{plan_source}: the plan does not fit the dataset {ds.source}"
    hint = "; plan this dataset (medseg plan) or train on the data the plan was made for"
    plan_ch = [c.lower() for c in plan.channel_names]
    if plan_ch != [c.lower() for c in ds.channel_names]:
        raise ConfigError(
            f"{where}: the plan's channels are {plan.channel_names}, the dataset's "
            f"{ds.channel_names}{hint}"
        )
    if dict(plan.label_names) != dict(ds.label_names):
        raise ConfigError(
            f"{where}: the plan's labels are {{{_names(plan.label_names)}}}, the dataset's "
            f"{{{_names(ds.label_names)}}}{hint}"
        )
    absolute = [
        i for i, n in enumerate(plan.preprocessing.normalization) if n.scheme in ("ct", "window")
    ]
    if plan.fingerprint is None or not absolute or not ds.cases:
        return
    case = ds.cases[0]
    vols, lab = read_case(case)
    if lab is None:
        return
    fg = np.asarray(lab.array) > 0
    if not fg.any():
        return
    for i in absolute:
        stats = plan.fingerprint.intensity[i]
        lo, hi = stats.percentile_00_5, stats.percentile_99_5
        values = np.asarray(vols[i].array)[fg]
        share = float(np.mean((values >= lo) & (values <= hi)))
        if share < MIN_SHARE_IN_RANGE:
            med = float(np.median(values))
            raise ConfigError(
                f"{where}: channel {plan.channel_names[i]!r} is normalised on an absolute scale "
                f"({plan.preprocessing.normalization[i].scheme}) for foreground intensities "
                f"{lo:g} to {hi:g}, but {share:.0%} of case {case.case_id!r}'s foreground lies "
                f"there (median {med:g}){hint}"
            )


__all__ = ["MIN_SHARE_IN_RANGE", "check_plan_fits_dataset", "collect_fingerprint"]
