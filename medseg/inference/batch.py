"""Batch prediction over scans: :func:`predict_folder`, the Python API behind ``medseg predict``.

One segmentation per input case, on the case's own grid (same shape and affine as its first
channel), named after it (:mod:`medseg.inference.inputs`), in NIfTI, NRRD, 3D Slicer
``.seg.nrrd`` or DICOM SEG (:func:`medseg.io.segmentation.write_segmentation`, with
``labels.json`` beside). The batch:

* reads the next case while the current one is predicted and the previous one written
  (one reader and one writer thread);
* reports and skips a case that fails (unreadable, wrong channels, refused DICOM series) and
  goes on; :attr:`~medseg.io.report.BatchReport.ok` is false then;
* names every output through :mod:`medseg.io.outputs` (sanitised, proven inside the output
  folder, unique per case and format, never one of the inputs: all checked before anything
  is written);
* commits each case's files together (all or none) and records them in the run manifest
  ``predict.json`` (:mod:`medseg.io.manifest`): a rerun skips the cases done by the same
  model with the same options, completes interrupted ones, and refuses a folder made by
  another model or options; ``overwrite`` replaces exactly the files the manifest records;
* splits the cases into independent parts (``num_parts``/``part_id``, e.g. a Slurm job
  array) and, under ``torchrun``, across the ranks (each rank its own GPU): no case is lost or
  done twice.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medseg.errors import ConfigError, MedsegError
from medseg.inference.inputs import CaseInput, find_cases, shard
from medseg.inference.load import SegmentationModel
from medseg.io.manifest import CaseCommit, CaseEntry, RunManifest
from medseg.io.outputs import check_not_inputs, check_unique, output_path
from medseg.io.report import BatchReport, CaseOutcome
from medseg.postprocess import (
    LabelChoice,
    Postprocessing,
    apply_postprocessing,
    requested_postprocessing,
)
from medseg.volume import LabelMap, Volume

log = logging.getLogger("medseg.inference")

#: output format -> file suffix
SUFFIXES = {
    "nii.gz": ".nii.gz",
    "nii": ".nii",
    "nrrd": ".nrrd",
    "seg.nrrd": ".seg.nrrd",
    "dicom-seg": ".dcm",
}
PROBABILITIES_SUFFIX = ".probabilities.npz"


@dataclass(frozen=True)
class PredictOptions:
    """How :func:`predict_folder` writes (the model's own settings, e.g. overlap and
    test-time mirroring, are given to :func:`~medseg.inference.load.load_model`).

    Attributes:
        output_format: ``nii.gz``, ``nii``, ``nrrd``, ``seg.nrrd`` or ``dicom-seg``, or several
            (each case predicted once, written in each format; ``dicom-seg``: DICOM inputs
            only).
        dicom_encoding: ``binary`` or ``labelmap`` (DICOM SEG).
        save_probabilities: also write ``<case>.probabilities.npz`` (float16 per class, on
            the original grid, before post-processing).
        keep_largest, min_volume_ml, fill_holes: post-processing per label (label lists or
            ``"all"``; mL for one or every label; see
            :func:`medseg.postprocess.requested_postprocessing`), after the model's own.
        num_parts, part_id: predict only this part of the cases (the parts together hold
            every case once); under ``torchrun`` each rank takes its share of the part.
        overwrite: redo the cases done before and replace the files the run manifest
            records (never any other file).
        progress: a progress bar on stderr.
    """

    output_format: str | tuple[str, ...] = "nii.gz"
    dicom_encoding: str = "binary"
    save_probabilities: bool = False
    keep_largest: LabelChoice = None
    min_volume_ml: float | dict[int, float] | None = None
    fill_holes: LabelChoice = None
    num_parts: int = 1
    part_id: int = 0
    overwrite: bool = False
    progress: bool = False

    @property
    def formats(self) -> list[str]:
        f = self.output_format
        return [f] if isinstance(f, str) else list(f)

    def check(self) -> None:
        """Refuse bad values, naming the field."""
        formats = self.formats
        bad = [f for f in formats if f not in SUFFIXES]
        if bad or not formats or len(set(formats)) != len(formats):
            raise ConfigError(
                f"output_format: expected distinct formats of {', '.join(SUFFIXES)}, "
                f"found {', '.join(formats) or 'none'}"
            )
        if self.dicom_encoding not in ("binary", "labelmap"):
            raise ConfigError(
                f"dicom_encoding: expected binary or labelmap, found {self.dicom_encoding!r}"
            )

    def recorded(self) -> dict[str, Any]:
        """The options that change the outputs (compared when a run resumes)."""
        d = asdict(self)
        for k in ("num_parts", "part_id", "overwrite", "progress"):
            d.pop(k)
        d["output_format"] = self.formats
        return d


def _rank() -> tuple[int, int]:
    """This process's rank and the number of ranks (``torchrun``; :mod:`medseg.runtime`)."""
    from medseg.runtime import dist_info

    info = dist_info()
    return info.rank, info.world_size


def _read(case: CaseInput) -> list[Volume]:
    from medseg.io import read_volume

    return [read_volume(c.path, series=c.series) for c in case.channels]


def _outputs(
    case: CaseInput, out_dir: Path, formats: Sequence[str], probabilities: bool
) -> list[Path]:
    """One path per format, then the probabilities file when asked."""
    paths = [output_path(out_dir, case.name, SUFFIXES[f]) for f in formats]
    if probabilities:
        paths.append(output_path(out_dir, case.name, PROBABILITIES_SUFFIX))
    return paths


def _inputs(case: CaseInput) -> list[str]:
    return [c.describe() for c in case.channels]


def _write(
    case: CaseInput,
    seg: LabelMap,
    probs: NDArray[Any] | None,
    targets: list[Path],
    options: PredictOptions,
    manifest: RunManifest,
    t0: float,
) -> tuple[tuple[int, ...], str, list[Path]]:
    """Write and commit the case's outputs together; returns the empty labels, a note (a
    DICOM SEG needs at least one segment: an empty prediction gets none, said in the note)
    and the files written."""
    from medseg.io.segmentation import write_segmentation

    formats = options.formats
    src = case.channels[0]
    _write_label_table(seg.label_names, manifest)
    empty: tuple[int, ...] = ()
    c: CaseCommit
    with manifest.commit_case(
        case.name, targets, inputs=_inputs(case), overwrite=options.overwrite
    ) as c:
        if probs is not None:
            names = [seg.label_names.get(k, f"label_{k}") for k in range(probs.shape[0])]
            with c.temporary(targets[-1]).open("wb") as fh:
                np.savez_compressed(fh, **{n: probs[k] for k, n in enumerate(names)})
        for fmt, path in zip(formats, targets, strict=False):
            kw: dict[str, Any] = {}
            if fmt == "dicom-seg":
                if not seg.array.any():
                    c.note = "nothing segmented: no DICOM SEG written (it needs a segment)"
                    continue
                kw = {"source": src.path, "series": src.series, "encoding": options.dicom_encoding}
            written = write_segmentation(seg, c.temporary(path), format=fmt, table_name=None, **kw)
            empty = tuple(written.empty_labels)
        c.seconds = time.perf_counter() - t0
    return empty, c.note, list(c.committed)


def predict_folder(
    model: SegmentationModel,
    inputs: str | Path,
    output: str | Path,
    *,
    options: PredictOptions | None = None,
) -> BatchReport:
    """Segment every case under ``inputs`` with ``model`` and write one output per case into
    the folder ``output`` (see the module docstring).

    Args:
        model: a loaded model (:func:`medseg.inference.load.load_model`).
        inputs: a file, a folder of image files / DICOM series, or a CSV listing
            (:func:`medseg.inference.inputs.find_cases`).
        output: the output folder (created; apart from ``inputs``).
        options: :class:`PredictOptions` (default: NIfTI, no post-processing of the user's).

    Raises (before any case is predicted): :class:`~medseg.errors.MedsegError` for a bad
    input, output location or option, colliding output names, an output that is an input,
    or an output folder made by another model or options. Problems of single cases are in
    the report instead.
    """
    opts = options or PredictOptions()
    opts.check()
    formats = opts.formats
    src, out = Path(inputs), Path(output)
    check_not_inputs([src], folder=out)
    rank, world = _rank()
    asked = requested_postprocessing(
        [v for v in sorted(model.label_names) if v != 0],
        keep_largest=opts.keep_largest,
        min_volume_ml=opts.min_volume_ml,
        fill_holes=opts.fill_holes,
    )
    found = find_cases(src, len(model.channel_names))
    planned = {c.name: _outputs(c, out, formats, opts.save_probabilities) for c in found.cases}
    check_unique((p, f"case {k} ({p.name})") for k, ps in planned.items() for p in ps)
    check_not_inputs(
        [src, *(ch.path for c in found.cases for ch in c.channels)],
        files=[p for ps in planned.values() for p in ps],
    )
    manifest = RunManifest.open(
        out,
        "predict",
        model=model.identity,
        options=opts.recorded(),
        device=str(getattr(model, "device", "")) or None,
        overwrite=opts.overwrite,
    )
    mine = shard(found.cases, opts.num_parts, opts.part_id)[rank::world]
    report = BatchReport(out, problems=found.problems if (opts.part_id, rank) == (0, 0) else [])
    todo: list[CaseInput] = []
    for case in mine:
        targets = planned[case.name]
        problem = ""
        if "dicom-seg" in formats and not case.dicom:
            problem = f"{case.channels[0].path}: a DICOM SEG output needs a DICOM series input"
        elif not opts.overwrite and (change := manifest.other_inputs(case.name, _inputs(case))):
            problem = f"{targets[0]}: {change}; overwrite=True replaces it"
        elif manifest.done(case.name) and not opts.overwrite:
            report.cases.append(CaseOutcome(case.name, "exists", targets[0]))
            continue
        else:
            try:
                for t in targets:
                    manifest.check_replaceable(t, opts.overwrite, case.name)
            except MedsegError as exc:
                problem = str(exc)
        if problem:
            report.cases.append(CaseOutcome(case.name, "failed", error=problem))
            manifest.record_case(
                case.name, CaseEntry("failed", _inputs(case), error=problem), lazy=True
            )
        else:
            todo.append(case)
    log.info(
        "%d case(s) to predict (%d already done, part %d/%d, rank %d/%d)",
        len(todo),
        len(report.existing),
        opts.part_id + 1,
        opts.num_parts,
        rank + 1,
        world,
    )
    _run(model, todo, planned, asked, opts, manifest, report)
    report.cases.sort(key=lambda c: c.name)
    return report


def _write_label_table(names: dict[int, str], manifest: RunManifest) -> None:
    """``labels.json``, shared by the segmentations of the folder (a run-level output,
    written before the first case is committed)."""
    from medseg.io.labels import build_label_table, label_table_text, write_label_table

    path = output_path(manifest.folder, "labels", ".json")
    table = build_label_table(names, sorted(names))
    background = names.get(0, "background")
    text = label_table_text(table, background)
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        if not manifest.owns(path):  # written by a parallel part or rank of this run
            manifest.record_files([path])
        return
    manifest.check_replaceable(path, True)
    write_label_table(table, path, background=background, overwrite=True)
    manifest.record_files([path])


def _run(
    model: SegmentationModel,
    todo: Sequence[CaseInput],
    planned: dict[str, list[Path]],
    asked: Postprocessing | None,
    opts: PredictOptions,
    manifest: RunManifest,
    report: BatchReport,
) -> None:
    from tqdm import tqdm

    bar = tqdm(
        total=len(todo), desc="predict", unit="case", file=sys.stderr, disable=not opts.progress
    )
    with ThreadPoolExecutor(1) as reader, ThreadPoolExecutor(1) as writer:
        pending: _Pending | None = None
        nxt = reader.submit(_read, todo[0]) if todo else None
        for i, case in enumerate(todo):
            assert nxt is not None
            t0 = time.perf_counter()
            seg: LabelMap | None = None
            probs: NDArray[Any] | None = None
            try:
                images = nxt.result()
            except (MedsegError, OSError, MemoryError) as exc:
                images, error = None, _message(exc, case)
            nxt = reader.submit(_read, todo[i + 1]) if i + 1 < len(todo) else None
            if images is not None:
                try:
                    seg, probs = model.predict_case(
                        images, with_probabilities=opts.save_probabilities
                    )
                    if asked is not None:
                        arr = apply_postprocessing(seg.array, asked, images[0].voxel_volume_ml)
                        seg = LabelMap(arr, seg.affine, seg.source, seg.meta, seg.label_names)
                    error = ""
                except (MedsegError, MemoryError) as exc:
                    seg, probs, error = None, None, _message(exc, case)
            if pending is not None:
                _finish(pending, report, manifest)
                pending = None
            if seg is None:
                report.cases.append(CaseOutcome(case.name, "failed", error=error))
                manifest.record_case(
                    case.name, CaseEntry("failed", _inputs(case), error=error), lazy=True
                )
                log.warning("case %s failed: %s", case.name, error)
            else:
                targets = planned[case.name]
                fut = writer.submit(_write, case, seg, probs, targets, opts, manifest, t0)
                pending = (case, t0, fut)
            bar.update(1)
        if pending is not None:
            _finish(pending, report, manifest)
    bar.close()


_Pending = tuple[CaseInput, float, "Future[tuple[tuple[int, ...], str, list[Path]]]"]


def _finish(pending: _Pending, report: BatchReport, manifest: RunManifest) -> None:
    case, t0, fut = pending
    try:
        empty, written_note, written = fut.result()
    except (MedsegError, OSError) as exc:
        error = _message(exc, case)
        report.cases.append(CaseOutcome(case.name, "failed", error=error))
        manifest.record_case(case.name, CaseEntry("failed", _inputs(case), error=error), lazy=True)
        log.warning("case %s failed: %s", case.name, error)
        return
    dt = time.perf_counter() - t0
    report.cases.append(
        CaseOutcome(
            case.name,
            "done",
            written[0] if written else None,
            dt,
            empty_labels=empty,
            outputs=tuple(written),
            note=written_note,
        )
    )
    note = f" (labels {list(empty)} empty)" if empty else ""
    note += f"; {written_note}" if written_note else ""
    log.info("case %s: %.1f s -> %s%s", case.name, dt, written[0] if written else "-", note)


def _message(exc: BaseException, case: CaseInput) -> str:
    if isinstance(exc, MemoryError):
        return f"{case.channels[0].describe()}: out of memory"
    text = str(exc)
    return text if str(case.channels[0].path) in text else f"{case.channels[0].describe()}: {text}"


__all__ = [
    "PROBABILITIES_SUFFIX",
    "SUFFIXES",
    "PredictOptions",
    "predict_folder",
]
