"""Input files: what a path is before anything opens it, and text files read safely.

Nothing here opens a path that is not a regular file: a FIFO, socket or device would block a
read forever or return endless data, so such paths are reported, never read. Symbolic links
are followed; a dangling link or a link loop is reported with the reason.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from medseg.errors import InputError

_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def _kind(mode: int) -> str:
    for test, name in _KINDS:
        if test(mode):
            return name
    return "not a regular file or folder"


def path_problem(path: str | Path, *, allow_dir: bool = False) -> str | None:
    """Why ``path`` cannot be read as a regular file (or a folder, with ``allow_dir``), or
    ``None`` when it can. Never opens the path.

    Reasons: missing, dangling symbolic link, symbolic-link loop, no permission to look at it,
    a folder (without ``allow_dir``), or a FIFO / socket / device.
    """
    p = Path(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        if os.path.islink(p):
            return f"dangling symbolic link (its target {os.readlink(p)!r} does not exist)"
        return "no such file or folder"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symbolic link loop (the link resolves to itself)"
        return f"cannot access: {exc.strerror or exc}"
    if stat.S_ISREG(st.st_mode):
        return None
    if stat.S_ISDIR(st.st_mode):
        return None if allow_dir else "is a folder; expected a file"
    return f"{_kind(st.st_mode)}; expected a regular file (not opened)"


def require_regular_file(path: str | Path, what: str = "file") -> Path:
    """``path`` as a :class:`Path` when it is a regular file; else :class:`InputError`
    naming it, e.g. ``"x.csv: a FIFO (named pipe); expected a regular file (not opened)"``."""
    p = Path(path)
    problem = path_problem(p)
    if problem is not None:
        if problem == "no such file or folder":
            problem = f"{what} not found"
        raise InputError(p, problem)
    return p


def read_text_file(path: str | Path, what: str = "text file") -> str:
    """The contents of a UTF-8 text file (a leading byte-order mark is dropped).

    Raises :class:`InputError` naming the file when it is missing, not a regular file,
    unreadable, or binary (NUL bytes, or bytes that are not UTF-8), with one-line messages
    such as ``"cases.csv: binary data (NUL byte at offset 10); expected a UTF-8 text CSV"``.
    """
    p = require_regular_file(path, what)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise InputError(p, f"cannot read {what}: {exc.strerror or exc}") from None
    nul = data.find(b"\x00")
    if nul >= 0:
        raise InputError(p, f"binary data (NUL byte at offset {nul}); expected a UTF-8 text {what}")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(
            p,
            f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            f"expected a UTF-8 text {what}",
        ) from None


def walk_files(root: Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Every regular file under ``root`` (recursively, sorted, symbolic links to files
    followed) and the entries skipped with the reason: dangling links, link loops, FIFOs,
    sockets, devices, symbolic links to folders (not followed, so a tree is never walked
    twice) and folders that cannot be listed."""
    files: list[Path] = []
    skipped: list[tuple[Path, str]] = []

    def onerror(exc: OSError) -> None:
        where = Path(exc.filename) if exc.filename else root
        skipped.append((where, f"cannot list folder: {exc.strerror or exc}"))

    for dirpath, dirnames, filenames in os.walk(root, onerror=onerror):
        dirnames.sort()
        here = Path(dirpath)
        for d in list(dirnames):
            if os.path.islink(here / d):
                dirnames.remove(d)
                skipped.append((here / d, "symbolic link to a folder (not followed)"))
        for name in sorted(filenames):
            p = here / name
            problem = path_problem(p)
            if problem is None:
                files.append(p)
            else:
                skipped.append((p, problem))
    return files, skipped


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes (read in 1 MiB blocks): the identity of weights and
    graphs in run manifests and export folders."""
    import hashlib

    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


__all__ = ["path_problem", "read_text_file", "require_regular_file", "sha256_file", "walk_files"]
