"""A damaged training cache entry (a truncated array, an object-dtype array, a header that is
not a .npy) is rebuilt for that case only, never unpickled and never a traceback."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from support.plans import tiny_plan

import medseg.cache as cache_mod
from medseg.cache import cache_folder, ensure_cached, npy_problem
from medseg.datasets import Case

SHAPE = (12, 10, 8)
UNPICKLED: list[str] = []


class _Marker:
    """Unpickling this records it: the cache must never do so."""

    def __reduce__(self) -> tuple[object, ...]:
        return (UNPICKLED.append, ("unpickled",))


def _cases(root: Path) -> list[Case]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(2):
        lab = np.zeros(SHAPE, np.uint8)
        lab[3:6, 3:6, 3:5] = 1
        img = root / f"c{i}.nii.gz"
        nib.save(nib.Nifti1Image(rng.normal(0, 1, SHAPE).astype(np.float32), np.eye(4)), img)
        lp = root / f"c{i}_label.nii.gz"
        nib.save(nib.Nifti1Image(lab, np.eye(4)), lp)
        out.append(Case(f"c{i}", (img,), lp))
    return out


def _truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[:-100])


def _object_dtype(p: Path) -> None:
    np.save(p, np.array([_Marker(), 1], dtype=object), allow_pickle=True)


def _not_npy(p: Path) -> None:
    p.write_bytes(pickle.dumps(_Marker()))


def _wrong_dtype(p: Path) -> None:
    np.save(p, np.zeros((2, 2), dtype="<U3"))


@pytest.mark.parametrize("damage", [_truncate, _object_dtype, _not_npy, _wrong_dtype])
@pytest.mark.parametrize("which", ["image", "label", "fg"])
def test_damaged_entry_is_rebuilt(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    damage: Callable[[Path], None],
    which: str,
) -> None:
    cases = _cases(tmp_path)
    prep = tiny_plan(labels={0: "background", 1: "x"}).preprocessing
    first = ensure_cached(prep, cases, tmp_path / "cache")
    want = (np.array(first[1].load_image()), np.array(first[1].load_label()))
    victim = cache_folder(prep, tmp_path / "cache") / f"c1.{which}.npy"
    assert npy_problem(victim, "fiu") is None
    damage(victim)
    assert npy_problem(victim, "f" if which == "image" else "iu") is not None
    calls: list[str] = []
    real = cache_mod.cache_case

    def spy(prep_, case, cache_dir, seed=0):  # type: ignore[no-untyped-def]
        calls.append(case.case_id)
        return real(prep_, case, cache_dir, seed)

    monkeypatch.setattr(cache_mod, "cache_case", spy)
    again = ensure_cached(prep, cases, tmp_path / "cache")
    assert calls == ["c1"]  # only the damaged case is rebuilt
    assert np.array_equal(np.array(again[1].load_image()), want[0])
    assert np.array_equal(np.array(again[1].load_label()), want[1])
    assert again[1].foreground().dtype == np.int32
    assert UNPICKLED == []
