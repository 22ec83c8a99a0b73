"""The medseg exception hierarchy.

Every error raised on purpose by medseg is a :class:`MedsegError`. Messages name the file
(or files) concerned, what was expected and what was found, e.g.
``"case_012/label.nii.gz: shape (512, 512, 90) does not match image (512, 512, 91)"``.
The CLI turns these into one line on stderr and a non-zero exit code.

Every error pickles and unpickles to an equal error (same type, message and attributes), so
an error raised in a worker process (DICOM decoding, data loading) reaches the parent intact.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _rebuild(cls: type[MedsegError], args: tuple[Any, ...], state: dict[str, Any]) -> MedsegError:
    """Unpickle without calling ``cls.__init__`` (whose signature varies by subclass)."""
    exc = cls.__new__(cls)
    exc.args = args
    exc.__dict__.update(state)
    return exc


class MedsegError(Exception):
    """Base class of all errors medseg raises deliberately."""

    def __reduce__(self) -> tuple[Any, ...]:
        # Exception's default (cls, self.args) would call __init__ with the formatted message
        # only, which fails for subclasses whose __init__ takes (path, problem).
        return (_rebuild, (type(self), self.args, dict(self.__dict__)))


class InputError(MedsegError):
    """An input file or folder is missing, unreadable, corrupt or of an unsupported kind."""

    def __init__(self, path: str | Path | None, problem: str) -> None:
        self.path = None if path is None else Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}" if path is not None else problem)


class UnsupportedFormatError(InputError):
    """The file's format (by extension or content) is not one medseg reads or writes."""


class DicomSeriesError(InputError):
    """A DICOM series cannot be turned into one 3-D volume (missing slices, uneven spacing,
    gantry tilt, duplicate positions, mixed geometry, ...)."""


class UnreadableDicomError(InputError):
    """A file of a DICOM folder that cannot be used: it cannot be opened, is too short to tell
    whether it is DICOM, or has the DICOM preamble but a truncated, corrupt or invalid header
    or pixel data.

    ``series_uid`` is the series it belongs to when that much of the header could be read.
    """

    def __init__(self, path: str | Path, problem: str, series_uid: str | None = None) -> None:
        super().__init__(path, problem)
        self.series_uid = series_uid


class InvalidVolumeError(InputError):
    """Voxel data that cannot be used: NaN/inf voxels, non-integral labels, wrong rank."""


class GeometryMismatchError(MedsegError):
    """Two volumes that must share a voxel grid do not."""


class OutputError(MedsegError):
    """An output path cannot be written: read-only location, disk full, a parent that is a
    file, a folder where a file is expected (or the reverse). The message names the path and
    the operating system's reason."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


class OutputExistsError(OutputError):
    """An output file exists and ``overwrite`` was not requested (``hint`` says what to do
    instead, when ``overwrite=True`` is not the remedy)."""

    def __init__(self, path: str | Path, hint: str | None = None) -> None:
        self.hint = hint
        remedy = hint or "pass overwrite=True to replace it"
        super().__init__(path, f"output exists; {remedy}")


class ConfigError(MedsegError, ValueError):
    """A configuration file, mapping or argument value is invalid; the message names the key
    path or argument. Also a :class:`ValueError`, as invalid values are.

    ``param`` is the name of the library parameter at fault (``"device"``, ``"fold"``), and the
    message then starts with ``"<param>: "``; the command line renders it as its own option
    (``--device``), as click's ``param_hint`` does. The library never names a ``--flag``."""

    def __init__(self, message: str, *, param: str | None = None) -> None:
        self.param = param
        super().__init__(message)
