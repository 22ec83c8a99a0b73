"""Disk cache of preprocessed cases.

Layout::

    <cache_dir>/<Preprocessing.key()>/
        preprocessing.json             # the plan's preprocessing record the key was computed from
        <case_id>.image.npy            # float32 (C, X, Y, Z), memory-mappable
        <case_id>.label.npy            # uint8/int16 (X, Y, Z)
        <case_id>.fg.npy               # int32 (N, 4): (label value, x, y, z) foreground samples
        <case_id>.json                 # PreprocessInfo + source file fingerprints

The folder name changes whenever a field of the plan's ``preprocessing`` record changes, so an
edited plan never reads stale arrays; patch size, batch size and augmentation do not touch it.
A case is recomputed when any of its files' size or modification time differ from the
recorded ones. All files are written atomically, the JSON last, so a case is valid exactly when
its JSON exists and matches and each array file is whole: a ``.npy`` whose header cannot be
read, whose dtype is not the expected numeric one (an object array would need unpickling) or
whose size differs from what its header declares is logged and the case is rebuilt. Arrays are
always loaded with ``allow_pickle=False``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medseg.datasets import Case
from medseg.io.atomic import atomic_path, atomic_write_text
from medseg.plan.schema import Preprocessing
from medseg.transforms.preprocessing import PreprocessInfo

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CachedCase:
    """A cached case: paths to its arrays and its :class:`PreprocessInfo`."""

    case_id: str
    image_path: Path
    label_path: Path | None
    fg_path: Path
    info: PreprocessInfo

    def load_image(self, mmap: bool = True) -> NDArray[Any]:
        """``float32 (C, X, Y, Z)`` (memory-mapped read-only by default)."""
        result: NDArray[Any] = np.load(
            self.image_path, mmap_mode="r" if mmap else None, allow_pickle=False
        )
        return result

    def load_label(self, mmap: bool = True) -> NDArray[Any] | None:
        if self.label_path is None:
            return None
        result: NDArray[Any] = np.load(
            self.label_path, mmap_mode="r" if mmap else None, allow_pickle=False
        )
        return result

    def foreground(self) -> NDArray[Any]:
        """``int32 (N, 4)`` rows ``(label value, x, y, z)``: sampled foreground voxels."""
        result: NDArray[Any] = np.load(self.fg_path, allow_pickle=False)
        return result


def cache_folder(prep: Preprocessing, cache_dir: str | Path) -> Path:
    """``cache_dir/<prep.key()>``."""
    return Path(cache_dir) / prep.key()


CACHE_FORMAT = 1


def file_fingerprint(case: Case) -> list[list[Any]]:
    """``[[path, size, mtime_ns], ...]`` for every file of the case (missing files: -1, -1)."""
    out: list[list[Any]] = []
    for f in case.files():
        try:
            st = f.stat()
            out.append([str(f), int(st.st_size), int(st.st_mtime_ns)])
        except OSError:
            out.append([str(f), -1, -1])
    return out


def _paths(folder: Path, case_id: str) -> tuple[Path, Path, Path, Path]:
    return (
        folder / f"{case_id}.image.npy",
        folder / f"{case_id}.label.npy",
        folder / f"{case_id}.fg.npy",
        folder / f"{case_id}.json",
    )


def _save_npy(path: Path, array: NDArray[Any]) -> None:
    with atomic_path(path, overwrite=True) as tmp:
        np.save(tmp, np.ascontiguousarray(array))


def npy_problem(path: Path, kinds: str) -> str | None:
    """Why ``path`` is not a whole ``.npy`` file of a dtype kind in ``kinds`` (e.g. ``"f"``,
    ``"iu"``), or ``None``. Reads the header only (never unpickles); a file whose size differs
    from the header's offset + shape x itemsize is truncated (or padded)."""
    try:
        with open(path, "rb") as f:
            fmt: Any = np.lib.format  # numpy's header readers are untyped
            version = fmt.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = fmt.read_array_header_1_0(f)
            else:
                shape, _, dtype = fmt.read_array_header_2_0(f)
            offset = f.tell()
        size = path.stat().st_size
    except (OSError, ValueError) as exc:
        return f"unreadable header ({exc})"
    if dtype.hasobject or dtype.kind not in kinds:
        return f"dtype {dtype}, expected a numeric kind in {kinds!r}"
    expected = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if size != expected:
        return f"{size} bytes, its header declares {expected} (truncated or damaged)"
    return None


def load_cached(prep: Preprocessing, case: Case, cache_dir: str | Path) -> CachedCase | None:
    """The cached case if present and valid (same preprocessing key, same files), else
    ``None``."""
    folder = cache_folder(prep, cache_dir)
    img, lab, fg, meta = _paths(folder, case.case_id)
    if not meta.is_file():
        return None
    try:
        data = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    if data.get("format") != CACHE_FORMAT or data.get("files") != file_fingerprint(case):
        return None
    if not img.is_file() or not fg.is_file() or (data["has_label"] and not lab.is_file()):
        return None
    arrays = [(img, "f"), (fg, "iu")] + ([(lab, "iu")] if data["has_label"] else [])
    for path, kinds in arrays:
        problem = npy_problem(path, kinds)
        if problem is not None:
            log.warning("cache entry %s: %s; rebuilding case %s", path, problem, case.case_id)
            return None
    info = PreprocessInfo.from_dict(data["info"])
    return CachedCase(case.case_id, img, lab if data["has_label"] else None, fg, info)


def cache_case(prep: Preprocessing, case: Case, cache_dir: str | Path, seed: int = 0) -> CachedCase:
    """Read, preprocess and write one case (always recomputes; see :func:`ensure_cached`)."""
    from medseg.datasets import read_case
    from medseg.transforms.preprocessing import preprocess_case
    from medseg.transforms.sampling import foreground_locations

    folder = cache_folder(prep, cache_dir)
    folder.mkdir(parents=True, exist_ok=True)
    files_before = file_fingerprint(case)
    vols, label = read_case(case)
    pre = preprocess_case(vols, prep, label)
    img, lab, fg, meta = _paths(folder, case.case_id)
    _save_npy(img, pre.image)
    if pre.label is not None:
        _save_npy(lab, pre.label)
        locs = foreground_locations(pre.label, np.random.default_rng([seed, 7]))
    else:
        locs = np.zeros((0, 4), dtype=np.int32)
    _save_npy(fg, locs)
    record = {
        "format": CACHE_FORMAT,
        "case_id": case.case_id,
        "files": files_before,
        "has_label": pre.label is not None,
        "shape": list(pre.image.shape),
        "info": pre.info.to_dict(),
    }
    atomic_write_text(meta, json.dumps(record, indent=1), overwrite=True)
    return CachedCase(case.case_id, img, lab if pre.label is not None else None, fg, pre.info)


def _cache_job(args: tuple[Preprocessing, Case, str]) -> CachedCase:
    return cache_case(args[0], args[1], args[2])


def ensure_cached(
    prep: Preprocessing, cases: Sequence[Case], cache_dir: str | Path, *, num_workers: int = 0
) -> list[CachedCase]:
    """Preprocess every case not yet (validly) cached and return all cached cases, in order.

    ``num_workers > 0`` preprocesses missing cases in that many processes. Concurrent callers
    (e.g. DDP ranks) are safe: every file is written atomically and identical work gives
    identical files.
    """
    folder = cache_folder(prep, cache_dir)
    folder.mkdir(parents=True, exist_ok=True)
    key_file = folder / "preprocessing.json"
    if not key_file.exists():
        atomic_write_text(key_file, prep.model_dump_json(indent=1), overwrite=True)
    found: dict[str, CachedCase] = {}
    todo = []
    for c in cases:
        hit = load_cached(prep, c, cache_dir)
        if hit is not None:
            found[c.case_id] = hit
        else:
            todo.append(c)
    if todo:
        log.info("caching %d of %d case(s) in %s", len(todo), len(cases), folder)
        if num_workers > 0 and len(todo) > 1:
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(max_workers=min(num_workers, len(todo))) as pool:
                for cc in pool.map(_cache_job, [(prep, c, str(cache_dir)) for c in todo]):
                    found[cc.case_id] = cc
        else:
            for c in todo:
                found[c.case_id] = cache_case(prep, c, cache_dir)
    return [found[c.case_id] for c in cases]


__all__ = [
    "CachedCase",
    "cache_case",
    "cache_folder",
    "ensure_cached",
    "file_fingerprint",
    "load_cached",
    "npy_problem",
]
