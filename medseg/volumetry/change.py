"""Volume changes between two time points and volume agreement between two segmentation sets:
pure functions over per-label volumes, returning frozen records.

* :func:`longitudinal_change` — per label of one case, the follow-up volume against the
  baseline: absolute change (mL) and relative change (% of the baseline volume; NaN when the
  baseline volume is 0, i.e. a new structure), a ``status`` and a per-case flag when the two
  scans' sets of present labels differ.
* :func:`compare_volumes` — per label of one case, this set's volume against the other set's
  (e.g. prediction against reference): difference (this − other, mL), relative difference
  (% of the other volume; NaN when that is 0) and the mean of the two (the x axis of a
  Bland–Altman plot).
* :func:`agreement` — Bland–Altman statistics per label and over all labels: bias (mean
  difference), its standard deviation (``ddof=1``) and the 95 % limits of agreement
  (bias ± 1.96 SD), in mL and as a percentage of the pair's mean volume.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medseg.errors import InputError
from medseg.volumetry.stats import LabelStats

#: ``status`` values of a change or comparison record.
STATUS_BOTH = "present_in_both"
STATUS_ABSENT = "absent_in_both"
STATUS_NEW = "new"  # longitudinal: only at follow-up
STATUS_GONE = "disappeared"  # longitudinal: only at baseline
STATUS_ONLY_THIS = "only_this"  # comparison: only in this set
STATUS_ONLY_OTHER = "only_other"  # comparison: only in the other set


@dataclass(frozen=True)
class VolumeEntry:
    """The volume of one label of one case (from a :class:`LabelStats` or a ``volumes.csv``)."""

    label: int
    name: str
    voxels: int
    volume_mm3: float

    @property
    def volume_ml(self) -> float:
        return self.volume_mm3 / 1000.0

    @property
    def present(self) -> bool:
        return self.voxels > 0


def entries(records: Iterable[LabelStats]) -> dict[int, VolumeEntry]:
    """``{label: VolumeEntry}`` of one case's records."""
    return {r.label: VolumeEntry(r.label, r.name, r.voxels, r.volume_mm3) for r in records}


def read_volumes_csv(path: str | Path) -> dict[str, dict[int, VolumeEntry]]:
    """``{case: {label: VolumeEntry}}`` from a ``volumes.csv`` written by medseg volumetry."""
    p = Path(path)
    need = ("case", "label", "name", "voxels", "volume_mm3")
    out: dict[str, dict[int, VolumeEntry]] = {}
    try:
        with p.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = [c for c in need if c not in (reader.fieldnames or [])]
            if missing:
                raise InputError(
                    p,
                    f"expected a medseg volumes.csv with columns {', '.join(need)}; "
                    f"missing {', '.join(missing)}",
                )
            for n, row in enumerate(reader, start=2):
                try:
                    e = VolumeEntry(
                        int(row["label"]), row["name"], int(row["voxels"]), float(row["volume_mm3"])
                    )
                except (TypeError, ValueError):
                    raise InputError(
                        p,
                        f"line {n}: expected integer label and voxels and a "
                        f"numeric volume_mm3, found {row!r:.120}",
                    ) from None
                out.setdefault(row["case"], {})[e.label] = e
    except OSError as exc:
        raise InputError(p, f"cannot read: {exc}") from None
    return out


@dataclass(frozen=True)
class ChangeRecord:
    """Change of one label's volume between a baseline and a follow-up scan of one case."""

    case: str
    baseline_case: str
    label: int
    name: str
    baseline_voxels: int
    followup_voxels: int
    baseline_ml: float
    followup_ml: float
    change_ml: float
    change_percent: float
    status: str
    label_set_differs: bool

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


CHANGE_FIELDS: tuple[str, ...] = tuple(ChangeRecord.__dataclass_fields__)


def _relative(diff: float, ref: float) -> float:
    return 100.0 * diff / ref if ref > 0 else math.nan


@dataclass(frozen=True)
class _Pair:
    """One label in two volume tables ``a`` and ``b`` (0 voxels where a table lacks it)."""

    label: int
    name: str
    a_voxels: int
    a_mm3: float
    b_voxels: int
    b_mm3: float

    def status(self, only_a: str, only_b: str) -> str:
        if self.a_voxels and self.b_voxels:
            return STATUS_BOTH
        if self.a_voxels:
            return only_a
        return only_b if self.b_voxels else STATUS_ABSENT


def _pairs(a: Mapping[int, VolumeEntry], b: Mapping[int, VolumeEntry]) -> list[_Pair]:
    """The union of both tables' labels, ascending."""
    out = []
    for v in sorted(set(a) | set(b)):
        ea, eb = a.get(v), b.get(v)
        name = ea.name if ea is not None else eb.name if eb is not None else f"label_{v}"
        out.append(
            _Pair(
                v,
                name,
                ea.voxels if ea is not None else 0,
                ea.volume_mm3 if ea is not None else 0.0,
                eb.voxels if eb is not None else 0,
                eb.volume_mm3 if eb is not None else 0.0,
            )
        )
    return out


def longitudinal_change(
    case: str,
    followup: Mapping[int, VolumeEntry],
    baseline: Mapping[int, VolumeEntry],
    baseline_case: str = "",
) -> list[ChangeRecord]:
    """Per label (union of both scans' labels, ascending): baseline and follow-up volumes, the
    change (follow-up − baseline, mL), the relative change (% of baseline) and the status."""
    present_f = {v for v, e in followup.items() if e.present}
    present_b = {v for v, e in baseline.items() if e.present}
    differs = present_f != present_b
    return [
        ChangeRecord(
            case,
            baseline_case or case,
            p.label,
            p.name,
            p.b_voxels,
            p.a_voxels,
            p.b_mm3 / 1000.0,
            p.a_mm3 / 1000.0,
            (p.a_mm3 - p.b_mm3) / 1000.0,
            _relative(p.a_mm3 - p.b_mm3, p.b_mm3),
            p.status(STATUS_NEW, STATUS_GONE),
            differs,
        )
        for p in _pairs(followup, baseline)
    ]


@dataclass(frozen=True)
class ComparisonRecord:
    """One label's volume in this set against the other set, for one case."""

    case: str
    label: int
    name: str
    voxels: int
    other_voxels: int
    volume_ml: float
    other_ml: float
    difference_ml: float
    difference_percent: float
    mean_ml: float
    status: str

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


COMPARISON_FIELDS: tuple[str, ...] = tuple(ComparisonRecord.__dataclass_fields__)


def compare_volumes(
    case: str, this: Mapping[int, VolumeEntry], other: Mapping[int, VolumeEntry]
) -> list[ComparisonRecord]:
    """Per label (union of both sets' labels, ascending): the two volumes, their difference
    (this − other, mL), the relative difference (% of the other volume) and their mean."""
    return [
        ComparisonRecord(
            case,
            p.label,
            p.name,
            p.a_voxels,
            p.b_voxels,
            p.a_mm3 / 1000.0,
            p.b_mm3 / 1000.0,
            (p.a_mm3 - p.b_mm3) / 1000.0,
            _relative(p.a_mm3 - p.b_mm3, p.b_mm3),
            (p.a_mm3 + p.b_mm3) / 2000.0,
            p.status(STATUS_ONLY_THIS, STATUS_ONLY_OTHER),
        )
        for p in _pairs(this, other)
    ]


@dataclass(frozen=True)
class Agreement:
    """Bland–Altman statistics of one label (``label`` 0 and name ``all``: every label pooled)
    over the cases where at least one of the two sets has the structure."""

    label: int
    name: str
    n_pairs: int
    n_one_sided: int
    bias_ml: float
    sd_ml: float
    loa_low_ml: float
    loa_high_ml: float
    bias_percent: float
    sd_percent: float
    loa_low_percent: float
    loa_high_percent: float

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


AGREEMENT_FIELDS: tuple[str, ...] = tuple(Agreement.__dataclass_fields__)


def percent_of_mean(r: ComparisonRecord) -> float:
    """The Bland–Altman relative difference: 100 × (this − other) / mean of the two."""
    return 100.0 * r.difference_ml / r.mean_ml if r.mean_ml > 0 else math.nan


def _agreement(label: int, name: str, recs: Sequence[ComparisonRecord]) -> Agreement:
    used = [r for r in recs if r.status != STATUS_ABSENT]
    d = np.array([r.difference_ml for r in used], dtype=np.float64)
    pct = np.array([percent_of_mean(r) for r in used], dtype=np.float64)
    one_sided = sum(1 for r in used if r.status != STATUS_BOTH)

    def stats(x: NDArray[Any]) -> tuple[float, float, float, float]:
        if x.size == 0:
            return (math.nan,) * 4
        bias = float(x.mean())
        sd = float(x.std(ddof=1)) if x.size > 1 else math.nan
        return bias, sd, bias - 1.96 * sd, bias + 1.96 * sd

    return Agreement(label, name, len(used), one_sided, *stats(d), *stats(pct))


def agreement(records: Sequence[ComparisonRecord]) -> list[Agreement]:
    """Bland–Altman statistics per label (ascending), then pooled over all labels
    (``label=0, name="all"``). Labels absent from both sets are not used."""
    by_label: dict[int, list[ComparisonRecord]] = {}
    for r in records:
        by_label.setdefault(r.label, []).append(r)
    out = [_agreement(v, recs[0].name, recs) for v, recs in sorted(by_label.items())]
    out.append(_agreement(0, "all", list(records)))
    return out


__all__ = [
    "AGREEMENT_FIELDS",
    "CHANGE_FIELDS",
    "COMPARISON_FIELDS",
    "Agreement",
    "ChangeRecord",
    "ComparisonRecord",
    "VolumeEntry",
    "agreement",
    "compare_volumes",
    "entries",
    "longitudinal_change",
    "percent_of_mean",
    "read_volumes_csv",
]
