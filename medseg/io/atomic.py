"""Atomic output: write to a temporary file beside the target, then rename over it.

An interrupted write therefore never leaves a partial file under the final name.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from medseg.errors import OutputExistsError


def full_suffix(path: Path) -> str:
    """``.nii.gz`` for ``a.nii.gz``, ``.nrrd`` for ``a.nrrd`` (compound suffixes kept)."""
    name = path.name.lower()
    for compound in (".nii.gz", ".tar.gz"):
        if name.endswith(compound):
            return compound
    return path.suffix.lower()


def check_writable(path: str | Path, overwrite: bool) -> Path:
    """Refuse an existing output unless ``overwrite``; create the parent folder."""
    p = Path(path)
    if p.exists() and not overwrite:
        raise OutputExistsError(p)
    p.parent.mkdir(parents=True, exist_ok=True)
    return p


@contextlib.contextmanager
def atomic_path(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path (same folder, same suffix) and move it onto ``path`` on success.

    The temporary file is removed if the body raises. ``OutputExistsError`` is raised up front
    when ``path`` exists and ``overwrite`` is false.
    """
    target = check_writable(path, overwrite)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=f".part{full_suffix(target)}", dir=target.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if not overwrite and target.exists():
            raise OutputExistsError(target)
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def atomic_write_text(path: str | Path, text: str, overwrite: bool = False) -> Path:
    """Write a text file atomically (UTF-8)."""
    with atomic_path(path, overwrite) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def atomic_write_bytes(path: str | Path, data: bytes, overwrite: bool = False) -> Path:
    """Write a binary file atomically."""
    with atomic_path(path, overwrite) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def check_output_dir(folder: str | Path) -> Path:
    """Create an output folder up front; an existing file at that path is an error naming it."""
    d = Path(folder)
    if d.exists() and not d.is_dir():
        raise OutputExistsError(d, hint="expected an output folder, found a file")
    d.mkdir(parents=True, exist_ok=True)
    return d
