"""Batch prediction over scans: :func:`predict_folder`, the Python API behind ``medseg predict``.

One segmentation per input case, on the case's own grid (same shape and affine as its first
channel), named after it (:mod:`medseg.inference.inputs`), in NIfTI, NRRD, 3D Slicer
``.seg.nrrd`` or DICOM SEG (:func:`medseg.io.segmentation.write_segmentation`, with
``labels.json`` beside). The batch:

* reads the next case while the current one is predicted and the previous one written
  (one reader and one writer thread);
* reports and skips a case that fails (unreadable, wrong channels, refused DICOM series) and
  goes on; :attr:`PredictReport.ok` is false then;
* writes every file atomically and skips the cases whose outputs exist (``overwrite`` to
  redo), so an interrupted batch resumes and a half-written file never counts as finished;
* splits the cases into independent parts (``num_parts``/``part_id``, e.g. a Slurm job
  array) and, under ``torchrun``, across the ranks (each rank its own GPU): no case is lost or
  done twice.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medseg.errors import InputError, MedsegError
from medseg.inference.inputs import CaseInput, find_cases, shard
from medseg.inference.predictor import Predictor, resolve_device
from medseg.postprocess import LabelChoice, Postprocessing, requested_postprocessing
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
class CaseResult:
    """One case of a batch: ``status`` is ``"done"``, ``"exists"`` (skipped: its outputs were
    already there) or ``"failed"`` (``error`` says why). ``output`` is the segmentation in
    the first output format."""

    name: str
    status: str
    output: Path | None = None
    seconds: float = 0.0
    error: str = ""
    empty_labels: tuple[int, ...] = ()
    #: every file written for the case (one per format, then the probabilities)
    outputs: tuple[Path, ...] = ()
    note: str = ""


@dataclass
class PredictReport:
    """What :func:`predict_folder` did, case by case, plus what it found but could not
    predict (``problems``: ``(what, reason)``)."""

    output: Path
    cases: list[CaseResult] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)

    @property
    def done(self) -> list[CaseResult]:
        return [c for c in self.cases if c.status == "done"]

    @property
    def existing(self) -> list[CaseResult]:
        return [c for c in self.cases if c.status == "exists"]

    @property
    def failed(self) -> list[CaseResult]:
        return [c for c in self.cases if c.status == "failed"]

    @property
    def ok(self) -> bool:
        """True when every input was predicted (now or by an earlier run)."""
        return not self.failed and not self.problems

    def summary(self) -> str:
        lines = [
            f"{len(self.done)} predicted, {len(self.existing)} already done, "
            f"{len(self.failed) + len(self.problems)} failed; outputs in {self.output}"
        ]
        for c in self.failed:
            lines.append(f"  failed: {c.name}: {c.error}")
        for what, why in self.problems:
            lines.append(f"  not predicted: {what}: {why}")
        return "\n".join(lines)


def _rank() -> tuple[int, int]:
    """``(rank, world size)`` under ``torchrun`` (or any launcher setting them), else (0, 1)."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def _read(case: CaseInput) -> list[Volume]:
    from medseg.io import read_volume

    return [read_volume(c.path, series=c.series) for c in case.channels]


def _outputs(
    case: CaseInput, out_dir: Path, formats: Sequence[str], probabilities: bool
) -> list[Path]:
    """One path per format, then the probabilities file when asked."""
    paths = [out_dir / f"{case.name}{SUFFIXES[f]}" for f in formats]
    return [*paths, out_dir / f"{case.name}{PROBABILITIES_SUFFIX}"] if probabilities else paths


def _write(
    case: CaseInput,
    seg: LabelMap,
    probs: np.ndarray | None,
    paths: list[Path],
    formats: Sequence[str],
    encoding: str,
    overwrite: bool,
) -> tuple[tuple[int, ...], str]:
    """Write the case's outputs; returns the empty labels and a note (a DICOM SEG needs at
    least one segment: an empty prediction gets none, said in the note)."""
    from medseg.io.atomic import atomic_path
    from medseg.io.segmentation import write_segmentation

    if probs is not None:
        names = [seg.label_names.get(k, f"label_{k}") for k in range(probs.shape[0])]
        with atomic_path(paths[-1], overwrite=overwrite) as tmp, tmp.open("wb") as fh:
            np.savez_compressed(fh, **{n: probs[k] for k, n in enumerate(names)})
    src = case.channels[0]
    empty: tuple[int, ...] = ()
    note = ""
    for fmt, path in zip(formats, paths, strict=False):
        kw: dict[str, Any] = {}
        if fmt == "dicom-seg":
            if not seg.array.any():
                note = "nothing segmented: no DICOM SEG written (it needs a segment)"
                continue
            kw = {"source": src.path, "series": src.series, "encoding": encoding}
        written = write_segmentation(seg, path, format=fmt, overwrite=overwrite, **kw)
        empty = tuple(written.empty_labels)
    return empty, note


def predict_folder(
    model: str | Path | Sequence[str | Path],
    inputs: str | Path,
    output: str | Path,
    *,
    folds: Sequence[int | str] | None = None,
    checkpoint: str = "last",
    output_format: str | Sequence[str] = "nii.gz",
    dicom_encoding: str = "binary",
    overlap: float = 0.5,
    tta: bool = False,
    batch_size: int = 2,
    device: str = "auto",
    runtime: str = "auto",
    save_probabilities: bool = False,
    keep_largest: LabelChoice = None,
    min_volume_ml: float | dict[int, float] | None = None,
    fill_holes: LabelChoice = None,
    model_postprocessing: bool = True,
    num_parts: int = 1,
    part_id: int = 0,
    overwrite: bool = False,
    progress: bool = False,
) -> PredictReport:
    """Segment every case under ``inputs`` with ``model`` and write one output per case into
    the folder ``output`` (see the module docstring).

    Args:
        model: a checkpoint file, a model folder (its folds ensembled), or several.
        inputs: a file, a folder of image files / DICOM series, or a CSV listing
            (:func:`medseg.inference.inputs.find_cases`).
        output: the output folder (created; not inside ``inputs``).
        folds, checkpoint: which folds of a model folder and which checkpoint (``"last"``,
            the final weights, or ``"best"``).
        output_format: ``nii.gz``, ``nii``, ``nrrd``, ``seg.nrrd`` or ``dicom-seg``, or several
            of them (each case predicted once, written in each format); ``dicom-seg``: DICOM
            inputs only; ``dicom_encoding`` ``binary`` or ``labelmap``).
        overlap, batch_size: sliding-window overlap (fraction) and windows per forward pass.
        tta: test-time mirroring over the axes the networks were trained to be flipped on.
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``; mixed precision on GPU.
        runtime: ``auto`` (the fastest installed for the device, logged), ``torch``,
            ``onnxruntime`` or ``openvino`` (:mod:`medseg.inference.runtimes`).
        save_probabilities: also write ``<case>.probabilities.npz`` (float16 per class, on
            the original grid, before post-processing).
        keep_largest, min_volume_ml, fill_holes: post-processing per label (label lists or
            ``"all"``; mL for one or every label; see
            :func:`medseg.postprocess.requested_postprocessing`), applied after the model
            folder's own choice (``postprocessing.json``; ``model_postprocessing=False`` skips
            it).
        num_parts, part_id: predict only this part of the cases (the parts together hold
            every case once); under ``torchrun`` each rank takes its share of the part.
        overwrite: redo (and replace) cases whose outputs exist; otherwise they are skipped.
        progress: a progress bar on stderr.

    Raises (before any case is predicted): :class:`InputError` for a bad model, input,
    output location or option. Problems of single cases are in the report instead.
    """
    from medseg.io.atomic import check_output_dir

    formats = [output_format] if isinstance(output_format, str) else list(output_format)
    bad = [f for f in formats if f not in SUFFIXES]
    if bad or not formats or len(set(formats)) != len(formats):
        raise InputError(
            None,
            f"--output-format: expected distinct formats of {', '.join(SUFFIXES)}, "
            f"found {', '.join(formats) or 'none'}",
        )
    if dicom_encoding not in ("binary", "labelmap"):
        raise InputError(
            None, f"--dicom-encoding: expected binary or labelmap, found {dicom_encoding!r}"
        )
    if batch_size < 1:
        raise InputError(None, f"--batch-size: expected >= 1, found {batch_size}")
    src, out = Path(inputs), Path(output)
    if src.is_dir():
        inside = out.resolve()
        if inside == src.resolve() or src.resolve() in inside.parents:
            raise InputError(out, f"the output folder must not be inside the input folder {src}")
    check_output_dir(out)
    dev, amp = resolve_device(device)
    rank, world = _rank()
    if dev == "cuda" and world > 1:
        dev = f"cuda:{int(os.environ.get('LOCAL_RANK', rank))}"
    paths = [model] if isinstance(model, (str, Path)) else list(model)
    kwargs: dict[str, Any] = {}
    if not model_postprocessing:
        kwargs["postprocessing"] = Postprocessing()
    predictor = Predictor.from_paths(
        paths,
        folds=folds,
        checkpoint=checkpoint,
        device=dev,
        amp_dtype=amp,
        overlap=overlap,
        batch_size=batch_size,
        tta=tta,
        runtime=runtime,
        **kwargs,
    )
    asked = requested_postprocessing(
        [v for v in sorted(predictor.label_names) if v != 0],
        keep_largest=keep_largest,
        min_volume_ml=min_volume_ml,
        fill_holes=fill_holes,
    )
    if asked is not None:
        before = predictor.postprocessing.steps if predictor.postprocessing else []
        predictor.postprocessing = Postprocessing(
            steps=[*before, *asked.steps], decided_by="the model folder's choice, then the user's"
        )
    found = find_cases(src, len(predictor.channel_names))
    mine = shard(found.cases, num_parts, part_id)[rank::world]
    report = PredictReport(out, problems=found.problems if (part_id, rank) == (0, 0) else [])
    todo: list[CaseInput] = []
    for case in mine:
        targets = _outputs(case, out, formats, save_probabilities)
        if "dicom-seg" in formats and not case.dicom:
            report.cases.append(
                CaseResult(
                    case.name,
                    "failed",
                    error=(
                        f"{case.channels[0].path}: a DICOM SEG output needs a DICOM series input"
                    ),
                )
            )
        elif not overwrite and all(p.exists() for p in targets):
            report.cases.append(CaseResult(case.name, "exists", targets[0]))
        else:
            todo.append(case)
    log.info(
        "%d case(s) to predict (%d already done, part %d/%d, rank %d/%d), %d network(s), %s",
        len(todo),
        len(report.existing),
        part_id + 1,
        num_parts,
        rank + 1,
        world,
        len(predictor.models),
        dev,
    )
    _run(
        predictor,
        todo,
        out,
        formats,
        dicom_encoding,
        save_probabilities,
        overwrite,
        progress,
        report,
    )
    report.cases.sort(key=lambda c: c.name)
    return report


def _run(
    predictor: Predictor,
    todo: Sequence[CaseInput],
    out: Path,
    formats: Sequence[str],
    encoding: str,
    probabilities: bool,
    overwrite: bool,
    progress: bool,
    report: PredictReport,
) -> None:
    from tqdm import tqdm

    bar = tqdm(total=len(todo), desc="predict", unit="case", file=sys.stderr, disable=not progress)
    with ThreadPoolExecutor(1) as reader, ThreadPoolExecutor(1) as writer:
        pending: _Pending | None = None
        nxt = reader.submit(_read, todo[0]) if todo else None
        for i, case in enumerate(todo):
            assert nxt is not None
            t0 = time.perf_counter()
            try:
                images = nxt.result()
            except (MedsegError, OSError, MemoryError) as exc:
                images, error = None, _message(exc, case)
            nxt = reader.submit(_read, todo[i + 1]) if i + 1 < len(todo) else None
            if images is not None:
                try:
                    seg, probs = predictor.predict_case(images, with_probabilities=probabilities)
                    error = ""
                except (MedsegError, MemoryError) as exc:
                    seg, probs, error = None, None, _message(exc, case)
            if pending is not None:
                _finish(pending, report)
                pending = None
            if images is None or seg is None:
                report.cases.append(CaseResult(case.name, "failed", error=error))
                log.warning("case %s failed: %s", case.name, error)
            else:
                targets = _outputs(case, out, formats, probabilities)
                fut = writer.submit(_write, case, seg, probs, targets, formats, encoding, overwrite)
                pending = (case, t0, targets, fut)
            bar.update(1)
        if pending is not None:
            _finish(pending, report)
    bar.close()


_Pending = tuple[CaseInput, float, list[Path], "Future[tuple[tuple[int, ...], str]]"]


def _finish(pending: _Pending, report: PredictReport) -> None:
    case, t0, targets, fut = pending
    try:
        empty, written_note = fut.result()
    except (MedsegError, OSError) as exc:
        report.cases.append(CaseResult(case.name, "failed", error=_message(exc, case)))
        log.warning("case %s failed: %s", case.name, report.cases[-1].error)
        return
    dt = time.perf_counter() - t0
    report.cases.append(
        CaseResult(
            case.name,
            "done",
            targets[0],
            dt,
            empty_labels=empty,
            outputs=tuple(targets),
            note=written_note,
        )
    )
    note = f" (labels {list(empty)} empty)" if empty else ""
    note += f"; {written_note}" if written_note else ""
    log.info("case %s: %.1f s -> %s%s", case.name, dt, targets[0], note)


def _message(exc: BaseException, case: CaseInput) -> str:
    if isinstance(exc, MemoryError):
        return f"{case.channels[0].describe()}: out of memory"
    text = str(exc)
    return text if str(case.channels[0].path) in text else f"{case.channels[0].describe()}: {text}"


__all__ = ["PROBABILITIES_SUFFIX", "SUFFIXES", "CaseResult", "PredictReport", "predict_folder"]
