"""Output names and paths: the one place where medseg turns a name into a path it writes.

Every command that writes (``predict``, ``segment``, ``convert``, ``evaluate``,
``volumetry``, ``train``, ``demo``) builds its output paths here:

* :func:`safe_name` turns any untrusted text (a file name, a case id from a CSV listing, a
  DICOM series description, a label name) into ONE safe path component: no separators, no
  ``.``/``..``, no absolute path, no NUL or control characters, no characters Windows
  refuses, no Windows-reserved device name (``CON``, ``NUL``, ``COM1`` ...), no leading dot
  (hidden files, medseg's temporaries) and at most :data:`MAX_NAME_BYTES` bytes of UTF-8 (a
  longer name is cut and keeps a short hash of the whole, so two long names stay distinct).
* :func:`output_path` joins a folder, a sanitised name and a suffix, resolves the result
  (following any link already there) and proves that it lies inside the resolved output
  folder; otherwise :class:`~medseg.errors.OutputError`.
* :func:`case_stem` (a file's name without its format suffix) and :func:`series_name` (a
  DICOM series' name, built from the series, never from folder or patient names) are the
  one way to name a case.
* :func:`check_unique` refuses two outputs of one run that would land on one file (also on
  a case-insensitive file system), before anything is written.
* :func:`check_not_inputs` refuses an output that is one of the run's inputs, and an output
  folder that is, contains or lies inside an input folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import unicodedata
from collections.abc import Iterable
from pathlib import Path

from medseg.errors import OutputError
from medseg.io.atomic import full_suffix

#: Longest output name (UTF-8 bytes, without its suffix); file systems allow 255 per name.
MAX_NAME_BYTES = 120
_WINDOWS_RESERVED = {
    "CON",
    "PRN",
    "AUX",
    "NUL",
    *(f"COM{i}" for i in range(10)),
    *(f"LPT{i}" for i in range(10)),
}
_BAD_CHARS = re.compile(r'[\\/:*?"<>|]')
_SUFFIX = re.compile(r"^(\.[A-Za-z0-9_-]+)*$")


def _real(p: str | Path) -> Path:
    """``p`` with every link followed (a link loop is left as it is, never an exception)."""
    return Path(os.path.realpath(p))


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def safe_name(text: str, *, fallback: str = "case") -> str:
    """``text`` as one safe file-name component (see the module docstring).

    Letters of any script, digits and ``._-+=@`` ... are kept; separators, control characters
    and characters Windows refuses become ``_``; surrounding dots and spaces are dropped. A
    name changed in a way that could make two names equal (cut for length) gets ``_`` and 8
    hex digits of a hash of the original. An empty result is ``fallback``.
    """
    text = unicodedata.normalize("NFC", str(text))
    chars = [
        "_" if unicodedata.category(c).startswith("C") or _BAD_CHARS.match(c) else c for c in text
    ]
    name = "".join(chars).strip(" .")
    if not name:
        return fallback
    if name.split(".")[0].upper().rstrip(" ") in _WINDOWS_RESERVED:
        name = "_" + name
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        cut = name.encode("utf-8", "surrogatepass")[: MAX_NAME_BYTES - 9]
        name = cut.decode("utf-8", "ignore").rstrip(" .") + "_" + _digest(text)
    return name


def case_stem(path: str | Path) -> str:
    """A case's name from its file: the name without its format suffix (``case_01.nii.gz``
    -> ``case_01``; ``.seg.nrrd``, ``.nii``, ``.nrrd``, ``.mha``, ``.mhd``, ``.dcm``, ...), or
    a folder's name. Not sanitised: it is a matching key; :func:`output_path` sanitises it."""
    p = Path(path)
    if p.is_dir():
        return p.name
    suffix = ".seg.nrrd" if p.name.lower().endswith(".seg.nrrd") else full_suffix(p)
    return p.name[: -len(suffix)] if suffix else p.name


def series_name(series_number: int | None, description: str | None, key: str) -> str:
    """A DICOM series' case name, e.g. ``s003_CT_Body_3.0_1a2b3c4d``: the series number, the
    description (file-name safe, at most 40 characters) and 8 hex digits of a hash of the
    series key (SeriesInstanceUID + split suffix), unique within a study. Used by every
    command that names outputs after a series (``predict``, ``convert --all``)."""
    num = f"s{series_number:03d}" if series_number is not None and series_number >= 0 else "s"
    desc = re.sub(r"[^A-Za-z0-9._-]+", "_", description or "").strip("._-")[:40]
    digest = hashlib.sha1(key.encode()).hexdigest()[:8]
    return "_".join(x for x in (num, desc, digest) if x)


def output_path(
    folder: str | Path, name: str, suffix: str = "", *, subdir: str | None = None
) -> Path:
    """``folder/[subdir/]<safe_name(name)><suffix>``, proven to lie inside ``folder``.

    Args:
        folder: the output folder (it may not exist yet).
        name: any text; it is passed through :func:`safe_name`.
        suffix: ``""`` or dot-separated alphanumeric parts (``.nii.gz``, ``.labels.json``).
        subdir: an optional sub-folder name (also sanitised), e.g. ``statistics``.

    Raises:
        OutputError: the resolved path (a link already at the path is followed) is not
            inside the resolved ``folder``, or ``suffix`` is not a plain suffix.
    """
    if not _SUFFIX.match(suffix):
        raise OutputError(Path(folder), f"suffix: expected e.g. '.nii.gz', found {suffix!r}")
    base = Path(folder)
    parent = base / safe_name(subdir, fallback="sub") if subdir is not None else base
    candidate = parent / f"{safe_name(name)}{suffix}"
    root = _real(base)
    resolved = _real(candidate)
    if resolved.parent != _real(parent) or root not in resolved.parents:
        raise OutputError(
            candidate, f"resolves to {resolved}, outside the output folder {base}; refused"
        )
    return candidate


def _key(path: Path) -> str:
    return os.path.normcase(str(path.absolute())).casefold()


def check_unique(outputs: Iterable[tuple[Path, str]]) -> None:
    """Refuse two outputs of one run on one file, before anything is written.

    ``outputs``: each planned output path and what it is for (``"case a (a.nrrd)"``); two
    paths equal after case folding (a case-insensitive file system would make them one
    file) are an :class:`~medseg.errors.OutputError` naming both."""
    seen: dict[str, tuple[Path, str]] = {}
    for path, what in outputs:
        k = _key(path)
        if k in seen and seen[k][1] != what:
            raise OutputError(
                path,
                f"would hold both {seen[k][1]} and {what}; rename one of the inputs (or "
                "choose other output formats): nothing was written",
            )
        seen[k] = (path, what)


def check_not_inputs(
    inputs: Iterable[str | Path],
    *,
    folder: str | Path | None = None,
    files: Iterable[str | Path] = (),
) -> None:
    """Refuse to write onto an input: any of ``files`` that is (or links to, or is a hard
    link of) an input file, and an output ``folder`` that is an input folder, lies inside
    one or contains one. Raises :class:`~medseg.errors.OutputError` naming both paths."""
    ins = [Path(p) for p in inputs]
    if folder is not None:
        out = _real(folder)
        for p in ins:
            if not p.is_dir():
                continue
            r = _real(p)
            if out == r or r in out.parents or out in r.parents:
                how = "is" if out == r else ("lies inside" if r in out.parents else "contains")
                raise OutputError(
                    Path(folder),
                    f"the output folder {how} the input folder {p}; choose an output folder "
                    "apart from the inputs (an input is never an output)",
                )
    in_files = [p for p in ins if not p.is_dir()]
    by_path = {_real(p): p for p in in_files}
    by_inode: dict[tuple[int, int], Path] = {}
    for p in in_files:
        with contextlib.suppress(OSError):
            st = p.stat()
            by_inode[(st.st_dev, st.st_ino)] = p
    for f in map(Path, files):
        hit = by_path.get(_real(f))
        if hit is None and by_inode:
            with contextlib.suppress(OSError):
                st = f.stat()
                hit = by_inode.get((st.st_dev, st.st_ino))
        if hit is not None:
            raise OutputError(f, f"is an input ({hit}); an input is never replaced by an output")


__all__ = [
    "MAX_NAME_BYTES",
    "case_stem",
    "check_not_inputs",
    "check_unique",
    "output_path",
    "safe_name",
    "series_name",
]
