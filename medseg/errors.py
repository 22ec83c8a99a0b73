"""The medseg exception hierarchy.

Every error raised on purpose by medseg is a :class:`MedsegError`. Messages name the file
(or files) concerned, what was expected and what was found, e.g.
``"case_012/label.nii.gz: shape (512, 512, 90) does not match image (512, 512, 91)"``.
The CLI turns these into one line on stderr and a non-zero exit code.
"""

from __future__ import annotations

from pathlib import Path


class MedsegError(Exception):
    """Base class of all errors medseg raises deliberately."""


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


class InvalidVolumeError(InputError):
    """Voxel data that cannot be used: NaN/inf voxels, non-integral labels, wrong rank."""


class GeometryMismatchError(MedsegError):
    """Two volumes that must share a voxel grid do not."""


class OutputExistsError(MedsegError):
    """An output file exists and ``overwrite`` was not requested (``hint`` says what to do
    instead, when ``--overwrite`` is not the remedy)."""

    def __init__(self, path: str | Path, hint: str | None = None) -> None:
        self.path = Path(path)
        self.hint = hint
        remedy = hint or "pass --overwrite (overwrite=True) to replace it"
        super().__init__(f"{path}: output exists; {remedy}")


class ConfigError(MedsegError):
    """A configuration file or mapping is invalid; the message names the key path."""
