"""Telling DICOM Part 10 files from other files by their first 132 bytes, without parsing.

:func:`is_dicom_file` answers yes or no; :func:`sniff_dicom` also refuses files too short or
unreadable to tell (a truncated slice must not silently drop out of a series).
"""

from __future__ import annotations

from pathlib import Path

from medseg.errors import UnreadableDicomError
from medseg.io.files import path_problem

#: Suffixes under which a file shorter than the DICOM preamble is taken for a truncated slice.
_DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
_PREAMBLE = 132


def is_dicom_file(path: Path) -> bool:
    """True when ``path`` is a regular file with the DICOM Part 10 header (128-byte preamble +
    ``DICM``). Reads at most 132 bytes; never opens a FIFO, socket or device."""
    if path_problem(path) is not None:
        return False
    try:
        with open(path, "rb") as f:
            head = f.read(_PREAMBLE)
    except OSError:
        return False
    return len(head) == _PREAMBLE and head[128:132] == b"DICM"


def sniff_dicom(path: Path) -> bool:
    """Whether the regular file ``path`` is a DICOM Part 10 file (True) or certainly not one
    (False); reads at most 132 bytes.

    Raises :class:`~medseg.errors.UnreadableDicomError` when it cannot tell: the file cannot be
    opened, is empty, or is shorter than the 132-byte preamble + ``DICM`` marker while its
    content (all NUL bytes, as a DICOM preamble usually is) or its suffix (``.dcm``,
    ``.dicom``, ``.ima``) says it may be the beginning of a DICOM file. A folder holding such
    a file is refused rather than read with a slice possibly missing. Short hidden files
    (``.gitkeep``) are not DICOM.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(_PREAMBLE)
    except OSError as exc:
        raise UnreadableDicomError(path, f"cannot open: {exc.strerror or exc}") from None
    if len(head) == _PREAMBLE:
        return head[128:132] == b"DICM"
    if path.name.startswith("."):  # .gitkeep, .lock, ...: no scanner writes slices like that
        return False
    if not head:
        raise UnreadableDicomError(
            path, "empty file (0 bytes): too short to tell whether it is a DICOM file"
        )
    if head.count(0) == len(head) or path.name.lower().endswith(_DICOM_SUFFIXES):
        raise UnreadableDicomError(
            path,
            f"truncated: {len(head)} bytes, shorter than the 132-byte DICOM preamble + 'DICM' "
            "marker, so it cannot be read or told apart from a DICOM slice",
        )
    return False


__all__ = ["is_dicom_file", "sniff_dicom"]
