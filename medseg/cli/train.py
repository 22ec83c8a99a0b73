"""``medseg train PLAN_OR_CONFIG --out DIR [--fold K|K,L|all | --cv]``: train a 3-D U-Net (see
:func:`medseg.training.train`)."""

from __future__ import annotations

import argparse
import json
import logging
from typing import Any

from medseg.cli._args import ranged


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a segmentation network from a plan or a training config",
        description="Train MONAI DynUNet (default), UNet or SegResNet from a plan written by "
        "`medseg plan` or a training config YAML (see configs/). Fold K trains on the other "
        "folds' cases and validates on its own, writing OUT/fold_K/ (checkpoint_last.pt, "
        "checkpoint_best.pt, metrics.csv, progress.png, validation/). --cv trains every fold "
        "(each case held out once); --fold all trains one model on every case (nothing held "
        "out, OUT/fold_all/). Splits: the config's data.splits, else the splits.json written "
        "beside the plan by `medseg plan`, else 5 folds (seed 0). "
        "Multi-GPU: torchrun --nproc_per_node N -m medseg train ...",
    )
    p.add_argument("config", metavar="PLAN_OR_CONFIG", help="plan.yaml or training config YAML")
    p.add_argument("--out", required=True, metavar="DIR", help="model folder")
    which = p.add_mutually_exclusive_group()
    which.add_argument(
        "--fold",
        default="0",
        metavar="K",
        help="fold index, a list like 0,2, or 'all' (one model on every case); default 0",
    )
    which.add_argument(
        "--cv", action="store_true", help="cross-validation: train every fold of the splits"
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the folds from OUT/fold_K/checkpoint_last.pt (at least one must exist)",
    )
    p.add_argument("--epochs", type=ranged("epochs"), help="override the config's epochs")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), help="override the device")
    p.add_argument("--no-progress", action="store_true", help="no per-epoch progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from medseg.training import load_train_config, override_config, train

    cfg = load_train_config(args.config)
    overrides = {"epochs": args.epochs, "device": args.device}
    if args.no_progress:
        overrides["progress_bar"] = False
    cfg = override_config(cfg, **{k: v for k, v in overrides.items() if v is not None})
    tlog = logging.getLogger("medseg.training")  # one line per epoch, even without -v
    if tlog.getEffectiveLevel() > logging.INFO:
        tlog.setLevel(logging.INFO)
    result = train(cfg, args.out, fold="cv" if args.cv else args.fold, resume=args.resume)
    _record_run(args, cfg, result)
    print(json.dumps(result.as_dict()["mean_metrics"], indent=2))
    return 0


def _record_run(args: argparse.Namespace, cfg: Any, result: Any) -> None:
    """``OUT/train.json``: the run manifest (medseg version, runtime, options, per fold the
    checkpoint files written; :mod:`medseg.io.manifest`)."""
    from pathlib import Path

    from medseg.io.manifest import CaseEntry, RunManifest

    out = Path(args.out)
    options = {"config": str(args.config), "fold": str(args.fold), "cv": bool(args.cv)}
    m = RunManifest.open(out, "train", options=options, device=cfg.device, compare=False)
    for f in result.as_dict()["folds"]:
        files = [Path(p) for p in (f.get("last_checkpoint"), f.get("best_checkpoint")) if p]
        rel = [m.rel(p) for p in files if p.is_file() and out.absolute() in p.absolute().parents]
        m.record_case(f"fold_{f['fold']}", CaseEntry("done", [str(args.config)], rel))
