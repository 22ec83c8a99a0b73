"""Cross-validation splits: reproducible k folds (:func:`make_splits`), written as editable
JSON (:func:`write_splits`) and read back with every fold checked (:func:`read_splits`)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from medseg.datasets.records import Dataset
from medseg.errors import ConfigError, InputError
from medseg.io.atomic import atomic_write_text


def make_splits(
    ds: Dataset | Sequence[str], n_folds: int = 5, seed: int = 0
) -> list[dict[str, list[str]]]:
    """Reproducible k-fold splits: ``[{"train": [...], "val": [...]}, ...]`` (``n_folds`` of
    them). Case ids are sorted, shuffled with ``numpy.random.default_rng(seed)`` and dealt into
    folds round-robin, so every case is in exactly one validation fold and fold sizes differ by
    at most one. The result depends only on the set of ids, ``n_folds`` and ``seed``.
    """
    ids = sorted(c.case_id for c in ds.cases) if isinstance(ds, Dataset) else sorted(ds)
    if n_folds < 2:
        raise ConfigError(f"n_folds: expected >= 2, found {n_folds}")
    if len(ids) < n_folds:
        raise ConfigError(
            f"n_folds: {n_folds} folds need at least {n_folds} cases, found {len(ids)}"
        )
    order = np.random.default_rng(seed).permutation(len(ids))
    folds: list[list[str]] = [[] for _ in range(n_folds)]
    for rank, i in enumerate(order):
        folds[rank % n_folds].append(ids[int(i)])
    out = []
    for f in range(n_folds):
        val = sorted(folds[f])
        out.append({"train": sorted(set(ids) - set(val)), "val": val})
    return out


def write_splits(
    splits: Sequence[Mapping[str, Sequence[str]]], path: str | Path, *, overwrite: bool = False
) -> Path:
    """Write splits as JSON (a list of ``{"train": [...], "val": [...]}``; user-editable)."""
    data = [{"train": list(s["train"]), "val": list(s["val"])} for s in splits]
    return atomic_write_text(path, json.dumps(data, indent=2) + "\n", overwrite=overwrite)


def read_splits(path: str | Path, ds: Dataset | None = None) -> list[dict[str, list[str]]]:
    """Read splits written by :func:`write_splits` (possibly edited by hand).

    Raises :class:`ConfigError` naming the fold and key when the structure is wrong, when a fold
    has a case in both train and val, or (given ``ds``) when a case id is unknown.
    """
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(p, f"cannot read splits: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{p}: invalid JSON: {exc}") from exc
    if not isinstance(data, list) or not data:
        raise ConfigError(f"{p}: expected a non-empty list of {{'train': [...], 'val': [...]}}")
    known = {c.case_id for c in ds.cases} if ds is not None else None
    out = []
    for i, fold in enumerate(data):
        if not isinstance(fold, dict) or set(fold) != {"train", "val"}:
            raise ConfigError(
                f"{p}: [{i}]: expected exactly the keys 'train' and 'val', found "
                f"{sorted(fold) if isinstance(fold, dict) else type(fold).__name__}"
            )
        for key in ("train", "val"):
            if not isinstance(fold[key], list) or not all(isinstance(x, str) for x in fold[key]):
                raise ConfigError(f"{p}: [{i}].{key}: expected a list of case ids")
            if known is not None:
                unknown = sorted(set(fold[key]) - known)
                if unknown:
                    raise ConfigError(f"{p}: [{i}].{key}: unknown case ids {unknown}")
        both = sorted(set(fold["train"]) & set(fold["val"]))
        if both:
            raise ConfigError(f"{p}: [{i}]: cases in both train and val: {both}")
        out.append({"train": list(fold["train"]), "val": list(fold["val"])})
    return out


__all__ = ["make_splits", "read_splits", "write_splits"]
