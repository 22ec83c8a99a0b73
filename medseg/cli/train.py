"""``medseg train PLAN_OR_CONFIG --fold K --out DIR``: train a 3-D U-Net (see
:func:`medseg.training.train`)."""

from __future__ import annotations

import argparse
import json
import logging
from typing import Any


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a segmentation network from a plan or a training config",
        description="Train MONAI DynUNet (default), UNet or SegResNet from a plan written by "
        "`medseg plan` or a training config YAML (see configs/). Fold K writes OUT/fold_K/ "
        "(checkpoint_best.pt, checkpoint_last.pt, metrics.csv, progress.png, tensorboard/). "
        "Multi-GPU: torchrun --nproc_per_node N -m medseg train ...",
    )
    p.add_argument("config", metavar="PLAN_OR_CONFIG", help="plan.yaml or training config YAML")
    p.add_argument("--out", required=True, metavar="DIR", help="model folder")
    p.add_argument(
        "--fold", default="0", metavar="K", help="fold index, or 'all' to train every fold"
    )
    p.add_argument(
        "--resume", action="store_true", help="continue from OUT/fold_K/checkpoint_last.pt"
    )
    p.add_argument("--epochs", type=int, help="override the config's epochs")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), help="override the device")
    p.add_argument("--no-progress", action="store_true", help="no per-epoch progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from medseg.errors import ConfigError
    from medseg.training import load_train_config, train

    fold: int | str
    if args.fold == "all":
        fold = "all"
    else:
        try:
            fold = int(args.fold)
        except ValueError:
            raise ConfigError(
                f"--fold: expected an integer or 'all', found {args.fold!r}"
            ) from None
    cfg = load_train_config(args.config)
    if args.epochs is not None:
        cfg.epochs = args.epochs
    if args.device is not None:
        cfg.device = args.device
    if args.no_progress:
        cfg.progress_bar = False
    tlog = logging.getLogger("medseg.training")  # one line per epoch, even without -v
    if tlog.getEffectiveLevel() > logging.INFO:
        tlog.setLevel(logging.INFO)
    result = train(cfg, args.out, fold=fold, resume=args.resume)  # type: ignore[arg-type]
    print(json.dumps(result.as_dict()["mean_metrics"], indent=2))
    return 0
