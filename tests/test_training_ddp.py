"""Distributed training on CPU: two processes with the gloo backend run ``train()`` with the
environment variables ``torchrun`` sets. Checks: both ranks see identical (all-reduced) losses
and validation Dice; that Dice equals a single-process validation of rank 0's checkpoint on all
validation cases (so rank 1's weights matched rank 0's); only rank 0 writes logs and tables."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(rank: int, world: int, port: int, cfg_path: str, out: str, report: str) -> None:
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    torch.set_num_threads(1)
    from medseg.training import train

    res = train(cfg_path, out, fold=0)
    fold = res.folds[0]
    doc = {"history": fold.history, "final": fold.final_metrics}
    Path(report.format(rank)).write_text(json.dumps(doc))


def test_two_process_gloo_training(tmp_path: Path) -> None:
    from support.plans import write_training_run

    from medseg.checkpoint import load_checkpoint
    from medseg.runtime import DistInfo
    from medseg.training.config import load_train_config
    from medseg.training.setup import fold_cases, fold_inputs, prepare_run
    from medseg.training.validation import periodic_validation

    cfg_path = write_training_run(
        tmp_path,
        n_cases=4,
        shape=(20, 20, 16),
        seed=2,
        epochs=2,
        iterations_per_epoch=2,
        val_every=1,
        final_hd95=False,
        plan_overrides={"network": {"base_filters": 4, "max_filters": 8}},
        data={"n_folds": 2, "augment": True},
    )
    out = tmp_path / "model"
    report = str(tmp_path / "rank{}.json")
    port = _free_port()
    # rank 1 in a spawned process, rank 0 in this one (saves one interpreter start-up)
    other = mp.get_context("spawn").Process(
        target=_worker, args=(1, 2, port, str(cfg_path), str(out), report)
    )
    other.start()
    saved_env = dict(os.environ)
    threads = torch.get_num_threads()
    try:
        _worker(0, 2, port, str(cfg_path), str(out), report)
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        torch.set_num_threads(threads)
        other.join(timeout=120)
    assert other.exitcode == 0
    r0, r1 = (json.loads(Path(report.format(r)).read_text()) for r in range(2))
    for a, b in zip(r0["history"], r1["history"], strict=True):
        for k in ("epoch", "train_loss", "lr", "val_dice_ball", "val_mean_dice"):
            assert a[k] == b[k], k
    assert r0["final"] == r1["final"]
    # only rank 0 wrote the logs: one log line per epoch, one CSV row per epoch
    fold_dir = out / "fold_0"
    assert (fold_dir / "log.txt").read_text().count("epoch ") == 2
    assert len((fold_dir / "metrics.csv").read_text().strip().splitlines()) == 3
    # per-case rows of both ranks are gathered into rank 0's report; each rank wrote the
    # predictions of its own validation case
    final_doc = json.loads((fold_dir / "validation_final.json").read_text())
    assert len(final_doc["cases"]) == 2
    assert len(list((fold_dir / "validation").glob("*.nii.gz"))) == 2
    # the reduced validation Dice equals a single-process validation over both cases
    run = prepare_run(load_train_config(cfg_path), out, need_splits=True)
    cases = fold_cases(run, 0)
    assert sorted(c["case_id"] for c in final_doc["cases"]) == sorted(c.case_id for c in cases.val)
    loader, validation = fold_inputs(run, cases, DistInfo())
    loader.close()
    ck = load_checkpoint(fold_dir / "checkpoint_last.pt")
    means = periodic_validation(
        ck.build_model(),
        validation,
        ck.meta.plan,
        overlap=0.5,
        device=torch.device("cpu"),
        amp_dtype=None,
        info=DistInfo(),
    )
    assert means["ball"]["dice"] == pytest.approx(r0["history"][-1]["val_dice_ball"], abs=1e-9)
