"""Reading raw DICOM element values and locating pixel data, faster than pydicom's value
conversion and without reading the pixels.

The conversions (:func:`as_float`, :func:`as_int`, :func:`as_str`, :func:`as_floats`) return
``None`` for absent or malformed values; callers decide whether that is an error.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Sequence
from typing import Any

#: Uncompressed transfer syntaxes whose pixel bytes can be read straight from the file.
_NATIVE_LE = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"}
_PIXEL_TAG_LE = b"\xe0\x7f\x10\x00"
#: (7FE0,0010/0008/0009) Pixel Data / Float / Double Float Pixel Data, both byte orders.
_PIXEL_TAGS = {
    _PIXEL_TAG_LE,
    b"\xe0\x7f\x08\x00",
    b"\xe0\x7f\x09\x00",
    b"\x7f\xe0\x00\x10",
    b"\x7f\xe0\x00\x08",
    b"\x7f\xe0\x00\x09",
}
DEFLATED = "1.2.840.10008.1.2.1.99"


_LONG_VRS = {b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"UN", b"SQ", b"UT", b"UC", b"UR"}


_US_KEYWORDS = frozenset(
    {"Rows", "Columns", "BitsAllocated", "BitsStored", "PixelRepresentation", "SamplesPerPixel"}
)


@functools.cache
def _tag(keyword: str) -> int:
    from pydicom.datadict import tag_for_keyword

    tag = tag_for_keyword(keyword)
    assert tag is not None, keyword
    return int(tag)


def get_value(ds: Any, keyword: str) -> Any:
    """A top-level value read from the raw element bytes: ``str`` (``list[str]`` when
    multi-valued) or ``int`` for US attributes; ``None`` when absent.

    About 10x faster than ``Dataset.get`` (no value conversion machinery); only used for
    ASCII attributes (UI, CS, DS, IS, TM, SH) and US, whose bytes need no character set.
    Elements pydicom already converted are returned through ``Dataset.get``.
    """
    elem = ds.get_item(_tag(keyword))
    if elem is None:
        return None
    value = elem.value
    if not isinstance(value, (bytes, bytearray)):
        return ds.get(keyword)
    if keyword in _US_KEYWORDS:
        if len(value) < 2:
            return None
        fmt = "<H" if getattr(elem, "is_little_endian", True) else ">H"
        return struct.unpack(fmt, value[:2])[0]
    text = value.decode("latin-1").strip(" \x00")
    return text.split("\\") if "\\" in text else text


def as_float(v: Any) -> float | None:
    if v is None or v == "":
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def as_int(v: Any) -> int | None:
    if v is None or v == "":
        return None
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def as_str(v: Any) -> str | None:
    if v is None:
        return None
    s = str(v).strip()
    return s or None


def as_text(v: Any) -> str | None:
    """A text value as one string: the values of a multi-valued one (a backslash in a
    single-valued attribute splits it) joined by backslashes again, as stored."""
    if isinstance(v, Sequence) and not isinstance(v, str | bytes):
        v = "\\".join(str(x) for x in v)
    return as_str(v)


def as_floats(v: Any, n: int) -> tuple[float, ...] | None:
    if v is None:
        return None
    if isinstance(v, str):
        v = [v]
    try:
        vals = tuple(float(x) for x in v)
    except (TypeError, ValueError):
        return None
    return vals if len(vals) == n else None


def first_item(seq_owner: Any, keyword: str) -> Any:
    """First item of sequence ``keyword`` in ``seq_owner`` (a dataset), or ``None``."""
    if seq_owner is None:
        return None
    seq = seq_owner.get(keyword)
    if seq is None or len(seq) == 0:
        return None
    return seq[0]


def lookup(groups: list[Any], seq_kw: str, attr: str) -> Any:
    """``attr`` of the first item of ``seq_kw`` in the first group that has it."""
    for g in groups:
        it = first_item(g, seq_kw)
        if it is not None and attr in it:
            return it.get(attr)
    return None


def _encapsulated_start(head: bytes, pos: int, transfer_syntax_uid: str) -> int | None:
    """Offset of the items of an encapsulated (compressed) Pixel Data element whose 12-byte
    element header ``head`` starts at ``pos``; ``None`` when it is not one."""
    if (
        transfer_syntax_uid in _NATIVE_LE
        or transfer_syntax_uid in (DEFLATED, "1.2.840.10008.1.2.2")
        or head[:4] != _PIXEL_TAG_LE
        or head[4:6] not in (b"OB", b"OW")
        or head[8:12] != b"\xff\xff\xff\xff"
    ):
        return None
    return pos + 12


def pixel_location(
    f: Any, transfer_syntax_uid: str
) -> tuple[bool, tuple[int, int] | None, int | None]:
    """After a ``stop_before_pixels`` read: whether the file continues with a pixel data
    element, the (offset, length) of its bytes when they are native little endian, and the
    offset of its items when they are encapsulated (see :func:`_encapsulated_start`)."""
    pos = f.tell()
    head = f.read(12)
    found = len(head) >= 8 and head[:4] in _PIXEL_TAGS
    enc = _encapsulated_start(head, pos, transfer_syntax_uid) if len(head) == 12 else None
    if enc is not None:
        return found, None, enc
    if not found or transfer_syntax_uid not in _NATIVE_LE or head[:4] != _PIXEL_TAG_LE:
        return found, None, None
    if transfer_syntax_uid == "1.2.840.10008.1.2":  # implicit VR
        (length,) = struct.unpack("<I", head[4:8])
        start = pos + 8
    elif head[4:6] in _LONG_VRS:
        if len(head) < 12:
            return found, None, None
        (length,) = struct.unpack("<I", head[8:12])
        start = pos + 12
    else:
        (length,) = struct.unpack("<H", head[6:8])
        start = pos + 8
    if length == 0xFFFFFFFF:
        return found, None, None
    return found, (start, int(length)), None


__all__ = [
    "DEFLATED",
    "as_float",
    "as_floats",
    "as_int",
    "as_str",
    "as_text",
    "first_item",
    "get_value",
    "lookup",
    "pixel_location",
]
