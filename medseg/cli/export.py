"""``medseg export MODEL OUT --format onnx``: a trained model folder (medseg's, a cascade's or
an nnU-Net v2 one) as a portable folder of ONNX graphs (see :func:`medseg.export.export_onnx`)."""

from __future__ import annotations

import argparse
from typing import Any

from medseg.cli._args import ranged


def register(sub: Any) -> None:
    p = sub.add_parser(
        "export",
        help="export a trained model to ONNX (for ONNX Runtime / OpenVINO)",
        description="Write OUT, a portable model folder: one ONNX graph per fold (opset >= 17, "
        "dynamic batch axis, the plan's patch size on the spatial axes), the plan and label "
        "records beside each, the model's post-processing choice and the sha256 of every file "
        "(checked when loaded). `medseg predict --model OUT` runs it with ONNX Runtime or "
        "OpenVINO (pip install 'medseg[onnx]'). An nnU-Net v2 model folder exports the same "
        "way, with its plans.json, dataset.json and postprocessing.json; its export runs with "
        "nnU-Net's preprocessing and sliding window, as the folder does.",
    )
    p.add_argument(
        "model",
        metavar="MODEL",
        help="model folder (medseg train, or an nnU-Net v2 results folder) or checkpoint",
    )
    p.add_argument("out", metavar="OUT", help="output folder (must not exist)")
    p.add_argument("--format", choices=("onnx",), default="onnx", help="export format (onnx)")
    p.add_argument("--folds", metavar="K,L|all", help="folds to export (default: the CV folds)")
    p.add_argument(
        "--checkpoint",
        choices=("last", "final", "best"),
        default="last",
        help="final weights (default; final is nnU-Net's name) or the best validation epoch",
    )
    p.add_argument(
        "--opset", type=ranged("opset"), default=17, help="ONNX operator set (default 17)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an earlier export at OUT")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from medseg.errors import ConfigError
    from medseg.export import export_onnx
    from medseg.inference.onnx_folder import read_manifest

    folds: list[int | str] | None = None
    if args.folds:
        try:
            folds = ["all"] if args.folds == "all" else [int(x) for x in args.folds.split(",")]
        except ValueError:
            raise ConfigError(
                f"--folds: expected a list like 0,2 or 'all', found {args.folds!r}"
            ) from None
    out = export_onnx(
        args.model,
        args.out,
        folds=folds,
        checkpoint=args.checkpoint,
        opset=args.opset,
        overwrite=args.overwrite,
    )
    manifest = read_manifest(out)
    print(f"wrote {out}: {len(manifest['folds'])} ONNX graph(s), opset {manifest['opset']}")
    return 0
