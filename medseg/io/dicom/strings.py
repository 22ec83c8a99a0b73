"""Values medseg generates for the DICOM objects it writes, made valid for their value
representation (DICOM PS3.5 section 6.2).

Text copied from a source header (a series description) or given by a user (label names,
an algorithm name) may hold characters or lengths its VR does not allow: a NUL or another
control character, a backslash (the value separator: one description would become two
values), more than 64 characters in an LO. :func:`dicom_text` removes what the VR forbids
and shortens to its maximum length; :func:`is_valid_is` checks an IS value's range.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

#: Maximum length in characters of the text VRs medseg writes.
MAX_LENGTH = {"CS": 16, "SH": 16, "LO": 64, "ST": 1024, "LT": 10240, "UT": 2**32 - 2}
#: IS (Integer String) range: a signed 32-bit integer, at most 12 characters.
IS_MIN, IS_MAX = -(2**31), 2**31 - 1

#: C0 and C1 control characters and DEL. ESC (0x1B) is allowed in text VRs only to switch
#: character sets (ISO 2022), which medseg never does in a value it builds, so it goes too.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CS_FORBIDDEN = re.compile(r"[^A-Z0-9 _]")


def dicom_text(value: str, vr: str) -> str:
    """``value`` made valid for the text VR ``vr`` (``"CS"``, ``"SH"``, ``"LO"``, ``"ST"``,
    ``"LT"``, ``"UT"``).

    Control characters become spaces (so words stay apart), runs of spaces one space, leading
    and trailing spaces are dropped; in single-valued VRs (CS, SH, LO) a backslash becomes
    ``/``; CS is upper-cased and keeps only ``A-Z 0-9 space _``; the result is cut to the VR's
    maximum length. May return ``""``.
    """
    if vr not in MAX_LENGTH:
        raise ValueError(f"vr: expected one of {sorted(MAX_LENGTH)}, found {vr!r}")
    text = _CONTROL.sub(" ", str(value))
    if vr in ("CS", "SH", "LO"):
        text = text.replace("\\", "/")
    if vr == "CS":
        text = _CS_FORBIDDEN.sub("_", text.upper())
    text = re.sub(" {2,}", " ", text).strip(" ")
    return text[: MAX_LENGTH[vr]].rstrip(" ")


def fits_character_set(value: str, charset: str | Sequence[str] | None) -> bool:
    """Whether ``value`` can be written in the Specific Character Set ``charset`` (absent:
    the default repertoire, ASCII). Code extensions (several values) count as ASCII only."""
    if value.isascii():
        return True
    from pydicom.charset import python_encoding

    names = [charset] if isinstance(charset, str) else list(charset or [])
    codec = python_encoding.get(names[0]) if len(names) == 1 else None
    if codec is None:
        return False
    try:
        value.encode(codec)
    except UnicodeEncodeError:
        return False
    return True


def ascii_text(value: str) -> str:
    """``value`` in ASCII: accents dropped (``"Läsion"`` -> ``"Lasion"``), other characters
    that have no ASCII form replaced by ``?``."""
    folded = unicodedata.normalize("NFKD", value)
    folded = "".join(c for c in folded if not unicodedata.combining(c))
    return folded.encode("ascii", errors="replace").decode("ascii")


def is_valid_is(value: int) -> bool:
    """Whether ``value`` fits DICOM's IS VR (``-2**31 .. 2**31 - 1``, at most 12 characters)."""
    return IS_MIN <= value <= IS_MAX


__all__ = [
    "IS_MAX",
    "IS_MIN",
    "MAX_LENGTH",
    "ascii_text",
    "dicom_text",
    "fits_character_set",
    "is_valid_is",
]
