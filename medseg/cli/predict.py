"""``medseg predict --model MODEL INPUT OUTPUT``: segment scans with a trained model (see
:func:`medseg.inference.batch.predict_folder`)."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from medseg.cli._args import label_list_type, ranged


def register(sub: Any) -> None:
    p = sub.add_parser(
        "predict",
        help="segment scans (a file, a folder of NIfTI/NRRD/MHA files or DICOM series, a CSV)",
        description="Segment every case under INPUT with a trained model and write one "
        "segmentation per case into the folder OUTPUT, on the case's own grid (same shape "
        "and affine), named after it (DICOM: after the series number and description), with "
        "labels.json beside. Multi-channel cases: nnU-Net naming (case_0000.nii.gz, "
        "case_0001.nii.gz, ...) or a CSV listing. A failing case is reported and the others "
        "go on (exit 1 at the end); existing outputs are skipped (--overwrite to redo), so an "
        "interrupted run resumes. Under torchrun the cases are split across the ranks; "
        "--num-parts/--part-id split them across independent jobs.",
    )
    p.add_argument(
        "--model",
        required=True,
        action="append",
        metavar="MODEL",
        help="model folder (its folds are ensembled) or checkpoint file; repeat to ensemble",
    )
    p.add_argument("input", metavar="INPUT", help="file, folder, DICOM tree or CSV listing")
    p.add_argument("output", metavar="OUTPUT", help="output folder (not inside INPUT)")
    p.add_argument(
        "--folds",
        metavar="K,L|all",
        help="folds of the model folder to ensemble (default: its CV folds)",
    )
    p.add_argument(
        "--checkpoint",
        choices=("last", "best", "final"),
        default="last",
        help="final weights (default; 'final' for nnU-Net folders is the same) or the best "
        "validation epoch",
    )
    p.add_argument(
        "--output-format",
        default="nii.gz",
        metavar="FORMAT[,FORMAT]",
        help="nii.gz (default), nii, nrrd, seg.nrrd, dicom-seg, or several, e.g. "
        "nii.gz,dicom-seg (each case predicted once, written in each format)",
    )
    p.add_argument(
        "--dicom-encoding",
        choices=("binary", "labelmap"),
        default="binary",
        help="DICOM SEG encoding: BINARY (default, widest viewer support) or "
        "LABELMAP (Supplement 243, compact for many labels)",
    )
    p.add_argument(
        "--overlap", type=ranged("overlap"), default=0.5, help="sliding-window overlap (0.5)"
    )
    p.add_argument(
        "--tta",
        action="store_true",
        help="test-time mirroring over the axes the model was trained to be flipped "
        "on (8 passes in 3-D)",
    )
    p.add_argument(
        "--batch-size",
        type=ranged("batch_size"),
        default=2,
        help="windows per forward pass (default 2)",
    )
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument(
        "--runtime",
        default="auto",
        choices=("auto", "torch", "onnxruntime", "openvino"),
        help="runs the network: auto (default): the fastest installed for the device, as "
        "measured (CPU: openvino, onnxruntime, torch; CUDA: torch); or torch, onnxruntime, "
        "openvino (pip install 'medseg[onnx]'; a trained model is converted once per run)",
    )
    p.add_argument(
        "--save-probabilities",
        action="store_true",
        help="also write CASE.probabilities.npz (float16 per class, original grid)",
    )
    p.add_argument(
        "--keep-largest",
        nargs="?",
        const="all",
        type=label_list_type,
        metavar="LABELS",
        help="keep the largest component of these labels (default: all)",
    )
    p.add_argument(
        "--min-volume",
        metavar="[L:]ML,...",
        help="drop components smaller than ML millilitres (per label with L:ML)",
    )
    p.add_argument(
        "--fill-holes",
        nargs="?",
        const="all",
        type=label_list_type,
        metavar="LABELS",
        help="fill the 3-D holes of these labels (default: all)",
    )
    p.add_argument(
        "--no-model-postprocessing",
        action="store_true",
        help="do not apply the post-processing the model folder chose in training",
    )
    p.add_argument(
        "--num-parts", type=ranged("num_parts"), default=1, help="split the cases into N parts"
    )
    p.add_argument(
        "--part-id", type=ranged("part_id"), default=0, help="which part to predict (0..N-1)"
    )
    p.add_argument("--overwrite", action="store_true", help="redo cases whose outputs exist")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no per-case lines")
    p.set_defaults(func=run)


def _volumes(text: str | None) -> float | dict[int, float] | None:
    """``"0.5"`` (every label) or ``"1:0.5,2:2"`` (per label), in mL."""
    from medseg.errors import ConfigError

    if text is None:
        return None
    try:
        if ":" not in text:
            return float(text)
        return {int(lab): float(ml) for lab, ml in (p.split(":", 1) for p in text.split(","))}
    except ValueError:
        raise ConfigError(
            f"--min-volume: expected ML or LABEL:ML,..., e.g. 0.5 or 1:0.5,2:2, found {text!r}"
        ) from None


def run(args: argparse.Namespace) -> int:
    from medseg.errors import ConfigError
    from medseg.inference.batch import PredictOptions, predict_folder
    from medseg.inference.load import load_model

    folds: list[int | str] | None = None
    if args.folds:
        if args.folds == "all":
            folds = ["all"]
        else:
            try:
                folds = [int(x) for x in args.folds.split(",")]
            except ValueError:
                raise ConfigError(
                    f"--folds: expected a list like 0,2 or 'all', found {args.folds!r}"
                ) from None
    log = logging.getLogger("medseg.inference")  # one line per case, even without -v
    if not args.quiet and log.getEffectiveLevel() > logging.INFO:
        log.setLevel(logging.INFO)
    model = load_model(
        args.model,
        folds=folds,
        checkpoint=args.checkpoint,
        device=args.device,
        runtime=args.runtime,
        overlap=args.overlap,
        tta=args.tta,
        batch_size=args.batch_size,
        model_postprocessing=not args.no_model_postprocessing,
    )
    options = PredictOptions(
        output_format=tuple(f.strip() for f in args.output_format.split(",") if f.strip()),
        dicom_encoding=args.dicom_encoding,
        save_probabilities=args.save_probabilities,
        keep_largest=args.keep_largest,
        min_volume_ml=_volumes(args.min_volume),
        fill_holes=args.fill_holes,
        num_parts=args.num_parts,
        part_id=args.part_id,
        overwrite=args.overwrite,
        progress=not args.quiet and sys.stderr.isatty(),
    )
    options.check()
    report = predict_folder(model, args.input, args.output, options=options)
    print(report.summary(), file=sys.stdout if report.ok else sys.stderr)
    return 0 if report.ok else 1
