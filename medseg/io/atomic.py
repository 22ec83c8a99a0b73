"""Atomic output: write to a temporary file beside the target, then rename over it.

An interrupted write therefore never leaves a partial file under the final name. The shared
rules for every output medseg writes live here:

* :func:`check_writable` / :func:`check_output_dir` check an output file / folder *before*
  any long computation: an existing output without ``overwrite``, a folder where a file is
  expected (or the reverse), a parent that is a file, a read-only location. Each problem is
  one :class:`~medseg.errors.OutputError` naming the path and the operating system's reason.
* A failed write (disk full, quota, I/O error) becomes an ``OutputError`` naming the target;
  the temporary file is removed.
* Outputs get the usual mode of a new file, ``0666 & ~umask`` (not ``mkstemp``'s ``0600``).
* Temporary files are named ``.<name>.medseg-<host>-<pid>-<random>.part<suffix>``. They are
  registered while they exist, so :func:`remove_temporaries` (called by the CLI on SIGTERM)
  removes them; a temporary left behind by a process that was killed (SIGKILL, power loss) is
  removed the next time medseg writes into that folder, with a warning.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from medseg.errors import MedsegError, OutputError, OutputExistsError

log = logging.getLogger(__name__)

#: Temporary paths created by this process and not yet renamed or removed: path -> pid.
_LIVE: dict[Path, int] = {}
#: Folders already cleaned of stale temporaries by this process.
_CLEANED: set[Path] = set()
#: Folders this process created for outputs (outermost first).
_CREATED: list[Path] = []
_STALE_RE = re.compile(r"^\..*\.medseg-(?P<host>[A-Za-z0-9]+)-(?P<pid>\d+)-[a-z0-9_]+\.part")


def full_suffix(path: Path) -> str:
    """``.nii.gz`` for ``a.nii.gz``, ``.nrrd`` for ``a.nrrd`` (compound suffixes kept)."""
    name = path.name.lower()
    for compound in (".nii.gz", ".tar.gz"):
        if name.endswith(compound):
            return compound
    return path.suffix.lower()


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:24] or "host"


def _temp_prefix(target: Path) -> str:
    return f".{target.name[:100]}.medseg-{_host()}-{os.getpid()}-"


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


def usual_file_mode() -> int:
    """The mode a new file gets from ``open()``: ``0o666 & ~umask``."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # no thread-safe way to read it elsewhere
    os.umask(mask)
    return 0o666 & ~mask


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def clean_stale_temporaries(folder: Path) -> list[Path]:
    """Remove temporaries of medseg's naming in ``folder`` whose process (on this host) no
    longer exists; each removal is logged as a warning. Returns the paths removed."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    host, me = _host(), os.getpid()
    for e in entries:
        m = _STALE_RE.match(e.name)
        if m is None or m["host"] != host:
            continue
        pid = int(m["pid"])
        if pid == me or _alive(pid):
            continue
        p = Path(e.path)
        try:
            if e.is_dir(follow_symlinks=False):
                shutil.rmtree(p)
            else:
                p.unlink()
        except OSError:
            continue
        removed.append(p)
        log.warning(
            "removed %s: a temporary file left by an interrupted medseg run (process %d)", p, pid
        )
    return removed


def _clean_once(folder: Path) -> None:
    key = folder.absolute()
    if key not in _CLEANED:
        _CLEANED.add(key)
        clean_stale_temporaries(folder)


def _ensure_folder(folder: Path) -> None:
    """Create ``folder`` (and parents) or raise :class:`OutputError` with the reason."""
    if folder.is_dir():
        return
    if folder.exists() or folder.is_symlink():
        raise OutputError(folder, "exists and is not a folder; expected a folder for the output")
    missing = [q for q in [folder, *folder.parents] if not q.exists()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _CREATED.extend(reversed(missing))
    except (FileExistsError, NotADirectoryError):
        blocker = next((q for q in folder.parents if q.exists() and not q.is_dir()), None)
        what = f"{blocker} is a file, not a folder" if blocker is not None else "not a folder"
        raise OutputError(folder, f"cannot create the output folder: {what}") from None
    except OSError as exc:
        raise OutputError(folder, f"cannot create the output folder: {_reason(exc)}") from None


def _probe(folder: Path) -> None:
    """Create and remove one temporary file in ``folder``: refuses read-only locations."""
    try:
        fd, name = tempfile.mkstemp(
            prefix=f".probe.medseg-{_host()}-{os.getpid()}-", suffix=".part", dir=folder
        )
    except OSError as exc:
        raise OutputError(folder, f"cannot write in this folder: {_reason(exc)}") from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(name)


def _check_target(p: Path, overwrite: bool) -> None:
    if p.is_dir():
        raise OutputError(
            p, "is a folder; expected a file path for this output (a folder is never replaced)"
        )
    if (p.exists() or p.is_symlink()) and not overwrite:
        raise OutputExistsError(p)


def check_writable(path: str | Path, overwrite: bool, *, probe: bool = True) -> Path:
    """Check that the output file ``path`` can be written, before computing it.

    Refuses (:class:`~medseg.errors.OutputExistsError`) an existing file unless ``overwrite``;
    refuses (:class:`~medseg.errors.OutputError`) a target that is a folder, a parent that
    cannot be created (a file in the way, no permission) and, with ``probe``, a folder in
    which no file can be created (read-only). Creates the parent folder. Stale temporaries of
    interrupted runs in that folder are removed (with a warning).
    """
    p = Path(path)
    _check_target(p, overwrite)
    _ensure_folder(p.parent)
    _clean_once(p.parent)
    if probe:
        _probe(p.parent)
    return p


def check_output_dir(
    folder: str | Path, *, overwrite: bool = False, files: Iterable[str] = ()
) -> Path:
    """Check an output folder up front: create it, make sure files can be written in it, and
    refuse existing ``files`` (names inside it) unless ``overwrite``. Raises
    :class:`~medseg.errors.OutputError` naming the path (e.g. ``--out`` is a file) or
    :class:`~medseg.errors.OutputExistsError`."""
    d = Path(folder)
    _ensure_folder(d)
    _clean_once(d)
    _probe(d)
    for name in files:
        _check_target(d / name, overwrite)
    return d


def remove_created_folders() -> list[Path]:
    """Remove the output folders this process created that are still empty (innermost
    first): a refused or failed run leaves no empty output folder behind."""
    removed = []
    while _CREATED:
        d = _CREATED.pop()
        try:
            d.rmdir()
        except OSError:
            continue
        removed.append(d)
    return removed


def forget_created_folders() -> None:
    """Keep the folders created so far (the run succeeded)."""
    _CREATED.clear()


def _register(p: Path) -> None:
    _LIVE[p] = os.getpid()


def _unregister(p: Path) -> None:
    _LIVE.pop(p, None)


def remove_temporaries() -> list[Path]:
    """Remove every temporary file or folder this process created and has not finished
    (for signal handlers: a terminated run leaves nothing behind). Returns the paths."""
    me = os.getpid()
    removed = []
    for p, pid in list(_LIVE.items()):
        if pid != me:  # inherited by a forked worker: not ours to remove
            continue
        with contextlib.suppress(OSError):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink()
            removed.append(p)
        _LIVE.pop(p, None)
    return removed


@contextlib.contextmanager
def _wrap_os_errors(target: Path) -> Iterator[None]:
    try:
        yield
    except MedsegError:
        raise
    except OSError as exc:
        raise OutputError(target, f"cannot write: {_reason(exc)}") from exc


@contextlib.contextmanager
def atomic_path(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path (same folder, same suffix) and move it onto ``path`` on success.

    The temporary file is removed if the body raises. ``OutputExistsError`` is raised up front
    when ``path`` exists and ``overwrite`` is false; an ``OSError`` while writing (disk full,
    read-only, ...) becomes an ``OutputError`` naming ``path``. The result gets the usual mode
    of a new file (``0666 & ~umask``).
    """
    target = check_writable(path, overwrite, probe=False)
    with _wrap_os_errors(target):
        fd, tmp_name = tempfile.mkstemp(
            prefix=_temp_prefix(target), suffix=f".part{full_suffix(target)}", dir=target.parent
        )
    tmp = Path(tmp_name)
    _register(tmp)
    try:
        os.close(fd)
        with _wrap_os_errors(target):
            yield tmp
            if not overwrite and target.exists():
                raise OutputExistsError(target)
            os.chmod(tmp, usual_file_mode())
            os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        _unregister(tmp)


@contextlib.contextmanager
def atomic_files(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """For formats that write several files named after ``path`` (``.mhd`` + ``.zraw``):
    yield a temporary folder; write ``folder / path.name`` (and its companions) there. On
    success every file is moved beside ``path``, companions first and ``path`` last, so the
    main file never points at a missing companion. No file is replaced unless ``overwrite``:
    an existing companion is refused like the main file, before anything is moved."""
    target = check_writable(path, overwrite, probe=False)
    with _wrap_os_errors(target):
        tmpdir = Path(
            tempfile.mkdtemp(prefix=_temp_prefix(target), suffix=".part", dir=target.parent)
        )
    _register(tmpdir)
    try:
        with _wrap_os_errors(target):
            yield tmpdir
            written = sorted(tmpdir.iterdir(), key=lambda q: q.name == target.name)
            for f in written:
                _check_target(target.parent / f.name, overwrite)
            mode = usual_file_mode()
            for f in written:
                os.chmod(f, mode)
                os.replace(f, target.parent / f.name)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
        _unregister(tmpdir)


def _temp_suffix(target: Path) -> str:
    name = target.name.lower()
    return ".seg.nrrd" if name.endswith(".seg.nrrd") else full_suffix(target)


def reserve_temporary(target: str | Path) -> Path:
    """A fresh temporary name beside ``target`` (same suffix; medseg's temporary naming, so
    it is removed on SIGTERM and, if the process is killed, by the next run writing there).
    Nothing exists under the name yet; write it, then rename it onto ``target``."""
    t = Path(target)
    _ensure_folder(t.parent)
    _clean_once(t.parent)
    with _wrap_os_errors(t):
        fd, name = tempfile.mkstemp(
            prefix=_temp_prefix(t), suffix=f".part{_temp_suffix(t)}", dir=t.parent
        )
        os.close(fd)
        os.unlink(name)
    _register(Path(name))
    return Path(name)


def discard_temporary(tmp: Path) -> None:
    """Remove a temporary of :func:`reserve_temporary` (if it is still there)."""
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    _unregister(tmp)


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


__all__ = [
    "atomic_files",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_output_dir",
    "check_writable",
    "clean_stale_temporaries",
    "discard_temporary",
    "full_suffix",
    "remove_temporaries",
    "reserve_temporary",
    "usual_file_mode",
]
