"""Conversion of one image: a DICOM series or any supported volume file to NIfTI, NRRD or
MHA/MHD, geometry kept exactly (:func:`convert`, what ``medseg convert`` runs)."""

from __future__ import annotations

from pathlib import Path

from medseg.errors import UnsupportedFormatError
from medseg.io import WRITE_SUFFIXES, detect_format, read_volume, write_volume
from medseg.io.atomic import check_writable, full_suffix
from medseg.volume import LabelMap


def convert(
    src: str | Path,
    dst: str | Path,
    *,
    series: str | int | None = None,
    channel: int | None = None,
    label: bool = False,
    overwrite: bool = False,
) -> Path:
    """Read ``src`` (``series`` of a DICOM folder, ``channel`` of a 4-D image) and write it to
    ``dst`` (format by suffix; ``label``: as an integer label map). Returns ``dst``.

    The output is checked first (suffix, existing file, writable folder), so a bad output
    path fails before a long read."""
    src, dst = Path(src), Path(dst)
    if full_suffix(dst) not in WRITE_SUFFIXES:
        raise UnsupportedFormatError(
            dst,
            f"cannot write '{full_suffix(dst) or dst.name}'; "
            f"expected one of {', '.join(WRITE_SUFFIXES)}",
        )
    detect_format(src)  # a missing or unsupported input is named before the output is touched
    check_writable(dst, overwrite)
    vol = read_volume(src, channel=channel, series=series)
    if label:
        vol = LabelMap.from_volume(vol)
    return write_volume(vol, dst, overwrite=overwrite)


__all__ = ["convert"]
