"""The run manifest ``OUTPUT/<command>.json``: what made the outputs of a folder, and which
files of the folder medseg wrote.

Every command that writes a folder keeps one (``predict.json``, ``evaluate.json``,
``volumetry.json``, ``convert.json``, ``segment.json``, ``train.json``, ``demo.json``)::

    {"format": "medseg-run-manifest", "version": 1, "command": "predict",
     "medseg_version": "0.2.0", "runtime": {"python": ..., "platform": ..., "device": ...},
     "model": {...predictor.identity...} | null, "options": {...},
     "files": ["labels.json", ...],                      # outputs of the run as a whole
     "cases": {"case_01": {"status": "done", "inputs": [...], "files": ["case_01.nii.gz"],
                           "seconds": 3.2, "error": "", "note": ""}, ...}}

* Inputs are recorded as the paths given (DICOM series by the series key, never a patient
  name or ID); files as names relative to the folder.
* It is written atomically and updated as cases complete, under an advisory lock on the
  folder (parallel parts of one run, ``torchrun`` ranks), each update merged into the
  current file.
* :meth:`RunManifest.owns` tells ``--overwrite`` which files it may replace: exactly the
  recorded ones; any other file of the folder is never replaced or removed.
* :meth:`RunManifest.open` refuses to resume a folder made with another model or other
  options, naming what differs; with ``overwrite`` the earlier cases are marked ``stale``
  (they no longer count as done, their files may be replaced).
* A case is committed with :meth:`RunManifest.commit_case`: its files are written to
  temporaries first; the entry is recorded as ``pending`` with the final names, the files
  are renamed, then the entry becomes ``done``. A run killed between two renames leaves a
  ``pending`` entry whose files the next run replaces; a case that fails leaves none of
  its files.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medseg._version import __version__
from medseg.errors import OutputError, OutputExistsError
from medseg.io.atomic import (
    atomic_write_text,
    check_output_dir,
    discard_temporary,
    reserve_temporary,
    usual_file_mode,
)
from medseg.io.report import BatchReport

FORMAT_TAG = "medseg-run-manifest"
VERSION = 1


def runtime_facts(device: str | None = None) -> dict[str, Any]:
    """Python, platform, the torch version when torch is already imported, and ``device``."""
    facts: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
    }
    torch = sys.modules.get("torch")
    if torch is not None:
        facts["torch"] = str(getattr(torch, "__version__", "unknown"))
    if device is not None:
        facts["device"] = device
    return facts


def _jsonable(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, set, frozenset)):
        items = [_jsonable(x) for x in v]
        return sorted(items, key=str) if isinstance(v, (set, frozenset)) else items
    if isinstance(v, Path):
        return str(v)
    if isinstance(v, float) and v != v:
        return None
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return str(v)


@dataclass
class CaseEntry:
    """One case of a run: ``status`` ``done``, ``failed``, ``pending`` (being committed) or
    ``stale`` (made by an earlier run with another model/options)."""

    status: str
    inputs: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    seconds: float = 0.0
    error: str = ""
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "inputs": self.inputs,
            "files": self.files,
            "seconds": round(self.seconds, 3),
            "error": self.error,
            "note": self.note,
        }


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """An advisory lock on ``folder`` (POSIX ``flock`` on the folder itself; no lock file)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: one writer per folder
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _differences(old: Any, new: Any, prefix: str) -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for k in sorted(set(old) | set(new)):
            out += _differences(old.get(k), new.get(k), f"{prefix}.{k}" if prefix else k)
        return out
    return [] if old == new else [f"{prefix} ({old!r} then, {new!r} now)"]


def _plain_relative(name: Any) -> bool:
    """True for a POSIX path relative to the folder, without ``..``, ``.`` or empty parts."""
    if not isinstance(name, str) or not name or name.startswith("/") or "\\" in name:
        return False
    return all(part not in ("", ".", "..") for part in name.split("/"))


def _same_input(old: str, new: str) -> bool:
    """Whether the recorded input ``old`` may be ``new`` (``path`` or ``path (series K)``)."""
    (po, _, so), (pn, _, sn) = old.partition(" (series "), new.partition(" (series ")
    if so != sn or Path(po).name != Path(pn).name:
        return False
    if os.path.realpath(po) == os.path.realpath(pn):
        return True
    return not os.path.exists(po)  # a relative path recorded from another working folder


def _where_free(model: Any) -> Any:
    """A model identity without its location: a model folder that moved is the same model."""
    return {k: v for k, v in model.items() if k != "path"} if isinstance(model, dict) else model


class RunManifest:
    """The manifest of one command in one output folder (see the module docstring)."""

    def __init__(
        self,
        folder: str | Path,
        command: str,
        *,
        model: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
        device: str | None = None,
    ) -> None:
        self.folder = Path(folder)
        self.command = command
        self.path = self.folder / f"{command}.json"
        self.model = None if model is None else _jsonable(model)
        self.options = _jsonable(dict(options or {}))
        self.runtime = runtime_facts(device)
        self.files: list[str] = []
        self.cases: dict[str, CaseEntry] = {}
        #: further top-level entries of the document (e.g. the demo's results)
        self.extra: dict[str, Any] = {}
        self._mine: set[str] = set()  # cases this process recorded
        self._forgotten: set[str] = set()  # files this process removed

    # --- reading and writing --------------------------------------------------------------
    @classmethod
    def open(
        cls,
        folder: str | Path,
        command: str,
        *,
        model: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
        device: str | None = None,
        overwrite: bool = False,
        compare: bool = True,
    ) -> RunManifest:
        """The manifest of ``command`` in ``folder`` (the folder is created; the file is
        written at the first record).

        With ``compare`` (commands that resume case by case), an existing manifest made with
        another ``model`` identity or other ``options`` is an :class:`~medseg.errors.
        OutputError` naming the differences, unless ``overwrite``: then its cases become
        ``stale``. Its recorded files stay owned (replaceable)."""
        check_output_dir(folder)
        m = cls(folder, command, model=model, options=options, device=device)
        with _locked(m.folder):
            old = m._read()
            if old is not None:
                diff = _differences(_where_free(old.get("model")), _where_free(m.model), "model")
                diff += _differences(old.get("options"), m.options, "options")
                m.files = list(old.get("files", []))
                m.cases = {k: CaseEntry(**v) for k, v in old.get("cases", {}).items()}
                if diff and compare and not overwrite:
                    raise OutputError(
                        m.path,
                        "the outputs in this folder were made by another run: "
                        + "; ".join(diff[:6])
                        + ("; ..." if len(diff) > 6 else "")
                        + ". Use another output folder, the same model and options, or "
                        "overwrite=True to redo the cases",
                    )
                if diff:
                    for e in m.cases.values():
                        e.status = "stale" if e.status == "done" else e.status
                    m._write()
        return m

    def _read(self) -> dict[str, Any] | None:
        if not self.path.exists():
            return None
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise OutputError(self.path, f"unreadable run manifest ({exc}); move it away") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT_TAG:
            raise OutputError(
                self.path,
                f"expected a medseg run manifest ('{FORMAT_TAG}'), found another file; "
                "move it away or choose another output folder",
            )
        cases = doc.get("cases", {})
        for name in [
            *doc.get("files", []),
            *(
                f
                for e in (cases.values() if isinstance(cases, dict) else ())
                for f in (e.get("files", []) if isinstance(e, dict) else [])
            ),
        ]:
            if not _plain_relative(name):
                raise OutputError(
                    self.path,
                    f"records {name!r}, not a file inside this folder (edited by hand?); "
                    "medseg never replaces or removes it: move the manifest away",
                )
        return doc

    def as_dict(self) -> dict[str, Any]:
        return {
            **_jsonable(self.extra),
            "format": FORMAT_TAG,
            "version": VERSION,
            "command": self.command,
            "medseg_version": __version__,
            "runtime": self.runtime,
            "model": self.model,
            "options": self.options,
            "files": sorted(set(self.files)),
            "cases": {k: self.cases[k].as_dict() for k in sorted(self.cases)},
        }

    def _write(self) -> None:
        """The document, one case a line (readable, and fast to rewrite as cases complete)."""
        doc = self.as_dict()
        cases = doc.pop("cases")
        head = [f"  {json.dumps(k)}: {json.dumps(v, allow_nan=False)}," for k, v in doc.items()]
        body = ",\n".join(
            f"    {json.dumps(k)}: {json.dumps(v, allow_nan=False)}" for k, v in cases.items()
        )
        text = "{\n" + "\n".join(head) + '\n  "cases": {\n' + body + "\n  }\n}\n"
        atomic_write_text(self.path, text, overwrite=True)

    def _update(self, change: Callable[[], None]) -> None:
        """Apply ``change`` to the current file's content and write it, under the lock: the
        entries other processes wrote meanwhile (parallel parts) are kept."""
        with _locked(self.folder):
            old = self._read()
            if old is not None:
                for k, v in old.get("cases", {}).items():
                    if k not in self._mine:
                        self.cases[k] = CaseEntry(**v)
                disk = set(old.get("files", [])) - self._forgotten
                self.files = sorted(set(self.files) | disk)
            change()
            self._write()

    # --- queries ----------------------------------------------------------------------------
    def rel(self, path: Path) -> str:
        """``path`` relative to the folder, POSIX style."""
        full = Path(os.path.abspath(path))
        return full.relative_to(os.path.abspath(self.folder)).as_posix()

    def owns(self, path: Path) -> bool:
        """True when ``path`` is a file this folder's runs of this command wrote."""
        name = self.rel(path)
        return name in self.files or any(name in e.files for e in self.cases.values())

    def done(self, case: str) -> bool:
        """True when ``case`` was completed by a run with this model and options and every
        file it recorded is still there."""
        e = self.cases.get(case)
        return (
            e is not None
            and e.status == "done"
            and all((self.folder / f).is_file() for f in e.files)
        )

    def other_inputs(self, case: str, inputs: Sequence[str]) -> str:
        """``""`` when ``case`` was recorded from ``inputs`` (or not recorded), else what
        differs: the same case name made from another file (another input folder with the
        same file names) never counts as done. A recorded relative path that no longer
        resolves here (a run started from another folder) is not held against it."""
        e = self.cases.get(case)
        if e is None or e.status != "done" or list(e.inputs) == list(inputs):
            return ""
        if len(e.inputs) == len(inputs) and all(
            _same_input(a, b) for a, b in zip(e.inputs, inputs, strict=True)
        ):
            return ""
        return (
            f"made from {', '.join(e.inputs)} (recorded in {self.path.name}), not from "
            f"{', '.join(inputs)}"
        )

    def check_replaceable(self, path: Path, overwrite: bool, case: str | None = None) -> None:
        """Refuse to replace an existing ``path`` that medseg did not write (whatever
        ``overwrite`` says), or one it wrote when neither ``overwrite`` nor an unfinished
        entry of ``case`` (pending, stale, failed) allows it."""
        if not (path.exists() or path.is_symlink()):
            return
        if not self.owns(path):
            raise OutputExistsError(
                path,
                hint=f"it is not recorded in {self.path.name} (not written by medseg "
                f"{self.command}), so it is never replaced; move it away or choose another "
                "output folder",
            )
        entry = self.cases.get(case) if case is not None else None
        unfinished = entry is not None and entry.status != "done"
        if not overwrite and not unfinished:
            raise OutputExistsError(path)

    # --- recording ----------------------------------------------------------------------------
    def record_files(self, paths: Sequence[Path]) -> None:
        """Record run-level outputs (tables, reports) as written by this command."""
        names = [self.rel(p) for p in paths]
        self._forgotten -= set(names)
        self._update(lambda: self.files.extend(n for n in names if n not in self.files))

    def forget_files(self, paths: Sequence[Path]) -> None:
        """Remove recorded run-level outputs from the folder and the manifest (only ones
        this command wrote: a stale table an ``overwrite`` run does not produce again)."""
        names = {self.rel(p) for p in paths} & set(self.files)
        root = os.path.realpath(self.folder)
        for n in names:
            real = os.path.realpath(self.folder / n)  # never through a link out of the folder
            if os.path.commonpath([root, real]) != root or real == root:
                raise OutputError(
                    self.folder / n, f"resolves to {real}, outside the output folder; refused"
                )
            with contextlib.suppress(FileNotFoundError):
                (self.folder / n).unlink()
        self._forgotten |= names
        self._update(lambda: setattr(self, "files", [f for f in self.files if f not in names]))

    def record_case(self, case: str, entry: CaseEntry, *, lazy: bool = False) -> None:
        """Record ``case`` (e.g. a failure), replacing an earlier entry. A failure never
        takes the earlier files out of the manifest (they stay medseg's, replaceable with
        ``overwrite``): it leaves a ``done`` entry as it is (its outputs are whole) and
        keeps the files of an unfinished one. ``lazy``: while the manifest file does not
        exist, keep the entry for the next write (a run that writes nothing leaves no
        manifest behind)."""

        def change() -> None:
            old = self.cases.get(case)
            if entry.status == "failed" and old is not None and old.files:
                if old.status == "done":
                    return
                entry.files = [*entry.files, *(f for f in old.files if f not in entry.files)]
            self.cases[case] = entry

        self._mine.add(case)
        if lazy and not self.path.exists():
            change()
            return
        self._update(change)

    def record_report(self, report: BatchReport) -> None:
        """Record the cases of a run-level command (evaluate, volumetry), replacing the
        earlier run's (their files are the run's files, recorded by :func:`write_run_files`)."""
        entries = {
            c.name: CaseEntry(
                c.status,
                list(c.inputs),
                [self.rel(p) for p in c.outputs],
                c.seconds,
                c.error,
                c.note,
            )
            for c in report.cases
        }

        def change() -> None:
            self.cases = entries

        self._mine |= set(entries)
        self._update(change)

    @contextlib.contextmanager
    def commit_case(
        self,
        case: str,
        targets: Sequence[Path],
        *,
        inputs: Sequence[str] = (),
        overwrite: bool = False,
    ) -> Iterator[CaseCommit]:
        """Write a case's outputs together: yields a :class:`CaseCommit` whose
        ``temporary(target)`` paths the body writes; on success every file written is
        renamed onto its target and the case recorded ``done`` (with what was written and
        the body's ``note``); if the body raises, no target is touched and every temporary
        is removed. Existing targets are checked first (:meth:`check_replaceable`)."""
        for t in targets:
            self.check_replaceable(t, overwrite, case)
        commit = CaseCommit({t: reserve_temporary(t) for t in targets})
        try:
            try:
                yield commit
            except OutputError as exc:  # name the target, not its temporary
                back = {tmp: t for t, tmp in commit.temps.items()}
                if exc.path in back:
                    raise OutputError(back[exc.path], exc.problem) from exc
                raise
            written = [t for t in targets if commit.written(t)]
            commit.committed = written
            entry = CaseEntry(
                "pending", list(inputs), [self.rel(t) for t in written], note=commit.note
            )
            self.record_case(case, entry)
            mode = usual_file_mode()
            moved: list[Path] = []
            try:
                for t in written:
                    tmp = commit.temps[t]
                    os.chmod(tmp, mode)
                    os.replace(tmp, t)
                    moved.append(t)
            except OSError:  # all or none: take back what this commit renamed
                for t in moved:
                    with contextlib.suppress(OSError):
                        t.unlink()
                raise
            entry.status = "done"
            entry.seconds = commit.seconds
            self.record_case(case, entry)
        finally:
            for tmp in commit.temps.values():
                discard_temporary(tmp)


@dataclass
class CaseCommit:
    """The temporaries of one case being committed (see :meth:`RunManifest.commit_case`)."""

    temps: dict[Path, Path]
    note: str = ""
    seconds: float = 0.0
    #: the targets written, once the body has run (in target order)
    committed: list[Path] = field(default_factory=list)

    def temporary(self, target: Path) -> Path:
        """Where to write ``target``'s content (same folder, same suffix)."""
        return self.temps[target]

    def written(self, target: Path) -> bool:
        """True once the body has written ``target``'s temporary (before the renames)."""
        return self.temps[target].is_file()


__all__ = [
    "FORMAT_TAG",
    "CaseCommit",
    "CaseEntry",
    "RunManifest",
    "runtime_facts",
]
