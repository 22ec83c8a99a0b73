"""Conversion of images: one DICOM series or any supported volume file to NIfTI, NRRD or
MHA/MHD (:func:`convert`), or every series of a DICOM folder (:func:`convert_series`),
geometry kept exactly; what ``medseg convert`` runs. Outputs are named by
:mod:`medseg.io.outputs` and recorded in the run manifest ``convert.json``."""

from __future__ import annotations

import time
from pathlib import Path

from medseg.errors import InputError, MedsegError, UnsupportedFormatError
from medseg.io import WRITE_SUFFIXES, detect_format, read_volume, write_volume
from medseg.io.atomic import check_output_dir, check_writable, full_suffix
from medseg.io.manifest import CaseEntry, RunManifest
from medseg.io.outputs import check_not_inputs, check_unique, output_path, series_name
from medseg.io.report import BatchReport, CaseOutcome
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
    ``dst`` (format by suffix; ``label``: as an integer label map), recorded in the run
    manifest ``convert.json`` beside it. Returns ``dst``.

    The output is checked first (suffix, not the input, an existing file only if medseg
    wrote it and ``overwrite``, writable folder), so a bad output path fails before a long
    read."""
    src, dst = Path(src), Path(dst)
    if full_suffix(dst) not in WRITE_SUFFIXES:
        raise UnsupportedFormatError(
            dst,
            f"cannot write '{full_suffix(dst) or dst.name}'; "
            f"expected one of {', '.join(WRITE_SUFFIXES)}",
        )
    detect_format(src)  # a missing or unsupported input is named before the output is touched
    check_not_inputs([src], files=[dst])
    check_writable(dst, True)  # a folder in the way, a read-only location
    manifest = RunManifest.open(dst.parent, "convert", compare=False)
    manifest.check_replaceable(dst, overwrite, dst.name)
    vol = read_volume(src, channel=channel, series=series)
    if label:
        vol = LabelMap.from_volume(vol)
    with manifest.commit_case(dst.name, [dst], inputs=[str(src)], overwrite=overwrite) as c:
        write_volume(vol, c.temporary(dst))
    return dst


def convert_series(
    src: str | Path, out: str | Path, *, suffix: str, label: bool = False, overwrite: bool = False
) -> BatchReport:
    """Write every series of the DICOM folder ``src`` into the folder ``out``, one file per
    series named by :func:`medseg.io.outputs.series_name` (as ``medseg predict`` names
    them), each committed and recorded in ``convert.json``. Series converted by an earlier
    run are kept (``overwrite``: redone); a series that fails leaves no file."""
    from medseg.io.dicom import read_dicom, scan_dicom_folder

    src, out = Path(src), Path(out)
    scan = scan_dicom_folder(src)
    if not scan.series:
        raise InputError(
            src, f"no DICOM series found ({len(scan.skipped)} non-image file(s) skipped)"
        )
    check_not_inputs([src], folder=out)
    names = {s.index: series_name(s.series_number, s.description, s.key) for s in scan.series}
    targets = {i: output_path(out, n, suffix) for i, n in names.items()}
    check_unique((p, f"series [{i}]") for i, p in targets.items())
    check_output_dir(out)
    manifest = RunManifest.open(
        out, "convert", options={"label": label, "format": suffix}, overwrite=overwrite
    )
    report = BatchReport(out, verb="converted")
    for s in scan.series:
        name, dst = names[s.index], targets[s.index]
        inputs = [f"{src} (series {s.key})"]
        if s.problem is not None:
            report.cases.append(
                CaseOutcome(name, "failed", error=f"series [{s.index}]: {s.problem}")
            )
            continue
        if manifest.done(name) and not overwrite:
            report.cases.append(CaseOutcome(name, "exists", dst))
            continue
        t0 = time.perf_counter()
        try:
            manifest.check_replaceable(dst, overwrite, name)
            vol = read_dicom(src, series=s.index, scan=scan)
            if label:
                vol = LabelMap.from_volume(vol)
            with manifest.commit_case(name, [dst], inputs=inputs, overwrite=overwrite) as c:
                write_volume(vol, c.temporary(dst))
                c.seconds = time.perf_counter() - t0
        except MedsegError as exc:
            error = f"series [{s.index}]: {exc}"
            report.cases.append(CaseOutcome(name, "failed", error=error))
            manifest.record_case(name, CaseEntry("failed", inputs, error=error), lazy=True)
            continue
        report.cases.append(
            CaseOutcome(name, "done", dst, time.perf_counter() - t0, outputs=(dst,))
        )
    return report


__all__ = ["convert", "convert_series"]
