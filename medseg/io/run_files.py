"""A run's own files (tables, reports) written and recorded in its run manifest
(:func:`write_run_files`); a case's outputs are committed by
:meth:`medseg.io.manifest.RunManifest.commit_case` instead."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from medseg.io.atomic import atomic_write_text
from medseg.io.manifest import RunManifest


def write_run_files(
    manifest: RunManifest, texts: Mapping[Path, str], *, overwrite: bool
) -> dict[Path, Path]:
    """Write a run's files (tables, reports; ``{path: text}``, paths from
    :func:`~medseg.io.outputs.output_path`) and record them in ``manifest``.

    Every path is checked before anything is written (:meth:`RunManifest.check_replaceable`:
    a file medseg did not write is never replaced; one it wrote only with ``overwrite``).
    With ``overwrite``, files an earlier run of the command recorded and this run does not
    produce (e.g. a ``lesions.csv`` of an earlier lesion-wise evaluation) are removed; no
    other file is touched. Returns ``{path: path}`` of the files written."""
    for path in texts:
        manifest.check_replaceable(path, overwrite)
    written: dict[Path, Path] = {}
    for path, text in texts.items():
        written[path] = atomic_write_text(path, text, overwrite=True)
    if overwrite:
        keep = {manifest.rel(p) for p in texts}
        stale = [manifest.folder / f for f in manifest.files if f not in keep]
        if stale:
            manifest.forget_files(stale)
    manifest.record_files(list(written))
    return written


__all__ = ["write_run_files"]
