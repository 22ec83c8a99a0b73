"""Awkward filesystem objects for tests: read-only folders, FIFOs, link loops, stray temps.

:func:`read_only_dir` makes a folder in which no file can be created *for the current user*:
``chmod 0555`` is enough for an ordinary user; root ignores permissions, so the folder is
then also made immutable (``chattr +i``, where the filesystem and capabilities allow). When
neither works the context yields ``None`` and the caller simulates the refusal instead (see
:func:`simulate_read_only`), so the test still runs, against the same code path.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


def _writable(folder: Path) -> bool:
    try:
        fd, name = tempfile.mkstemp(dir=folder)
    except OSError:
        return False
    os.close(fd)
    os.unlink(name)
    return True


def _chattr(flag: str, folder: Path) -> bool:
    exe = shutil.which("chattr")
    if exe is None:
        return False
    res = subprocess.run([exe, flag, str(folder)], capture_output=True, check=False)
    return res.returncode == 0


@contextlib.contextmanager
def read_only_dir(folder: Path) -> Iterator[Path | None]:
    """Make ``folder`` (created if needed) read-only for this process; yields it, or ``None``
    when this process can write anywhere (root without ``chattr``). Restored on exit."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o555)
    immutable = False
    try:
        if _writable(folder):
            immutable = _chattr("+i", folder)
        yield None if _writable(folder) else folder
    finally:
        if immutable:
            _chattr("-i", folder)
        folder.chmod(0o755)


def simulate_read_only(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """Make creating files in ``folder`` fail with EROFS (for root without ``chattr``)."""
    real = tempfile.mkstemp

    def mkstemp(*args: object, **kwargs: object) -> tuple[int, str]:
        d = kwargs.get("dir")
        if d is not None and Path(str(d)).resolve() == folder.resolve():
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(folder))
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)


@contextlib.contextmanager
def unwritable_dir(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder in which no file can be created: really read-only where the process can be
    denied, else simulated. Yields the folder."""
    with read_only_dir(folder) as ro:
        if ro is None:
            simulate_read_only(monkeypatch, folder)
        yield folder


def make_fifo(path: Path) -> Path:
    """A named pipe at ``path`` (opening it for reading would block forever)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    return path


def make_link_loop(path: Path) -> Path:
    """A symbolic link pointing at itself."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(path.name, path)
    return path


def make_dangling_link(path: Path) -> Path:
    """A symbolic link whose target does not exist."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(path.parent / f"{path.name}.missing-target", path)
    return path


def stray_files(root: Path) -> list[Path]:
    """Temporary files left under ``root``: medseg's ``.part`` files and probes."""
    return sorted(p for p in root.rglob("*") if ".part" in p.name or ".probe." in p.name)
