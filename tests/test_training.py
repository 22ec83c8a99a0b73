"""Training: config validation, loss/optimizer/schedule, the fit loop on tiny synthetic balls
(loss falls, outputs written, checkpoint predicts), and the train() API / `medseg train` CLI."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from medseg.checkpoint import CheckpointMeta, load_checkpoint
from medseg.errors import ConfigError, OutputExistsError
from medseg.inference import Predictor
from medseg.models import NetworkSpec
from medseg.training.config import LossConfig, OptimizerConfig, TrainConfig, load_train_config
from medseg.training.loop import fit
from medseg.training.optim import DeepSupervisionLoss, build_optimizer, build_scheduler
from medseg.training.sampling import PatchSampler
from medseg.training.synthetic import ball_cases, write_ball_dataset

SPEC = NetworkSpec(
    in_channels=1,
    out_channels=2,
    kernel_sizes=[[3, 3, 3]] * 3,
    strides=[[1, 1, 1], [2, 2, 2], [2, 2, 2]],
    filters=[4, 8, 16],
)
LABELS = {0: "background", 1: "ball"}


def _meta() -> CheckpointMeta:
    return CheckpointMeta(
        network=SPEC.model_dump(),
        label_names=LABELS,
        channel_names=["MR"],
        spacing=[1.0, 1.0, 1.0],
        patch_size=[16, 16, 16],
    )


def _cfg(**kw: object) -> TrainConfig:
    base: dict[str, object] = dict(
        epochs=6,
        iterations_per_epoch=5,
        val_every=3,
        device="cpu",
        progress_bar=False,
        num_threads=1,
        optimizer={"lr": 0.05},
    )
    base.update(kw)
    return TrainConfig.model_validate(base)


# ---- config --------------------------------------------------------------------------------
def test_config_unknown_key_and_bad_value_name_the_key_path(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("epochs: 5\noptimizer:\n  lrr: 0.1\n  momentum: 1.5\n")
    with pytest.raises(ConfigError) as exc:
        load_train_config(p)
    msg = str(exc.value)
    assert f"{p}: optimizer.lrr: unknown key" in msg
    assert "optimizer.momentum: Input should be less than 1 (found 1.5)" in msg
    p.write_text("epochs: -1\n")
    with pytest.raises(ConfigError, match="epochs: Input should be greater than or equal to 1"):
        load_train_config(p)
    p.write_text("- a list\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_train_config(p)


def test_config_paths_resolve_against_the_file_and_plan_files_are_accepted(
    tmp_path: Path,
) -> None:
    (tmp_path / "sub").mkdir()
    p = tmp_path / "sub" / "c.yaml"
    p.write_text("plan: ../plan.yaml\ndata:\n  dataset: data\n")
    cfg = load_train_config(p)
    assert cfg.plan == (tmp_path / "plan.yaml").resolve()
    assert cfg.data.dataset == (tmp_path / "sub" / "data").resolve()
    plan = tmp_path / "plan.yaml"
    plan.write_text("target_spacing: [1, 1, 1]\npatch_size: [16, 16, 16]\n")
    assert load_train_config(plan).plan == plan.resolve()


@pytest.mark.parametrize(
    "name", ["la_cpu_small.yaml", "default_dynunet.yaml", "segresnet_adamw.yaml"]
)
def test_shipped_configs_validate(name: str) -> None:
    cfg = load_train_config(Path(__file__).resolve().parents[1] / "configs" / name)
    assert cfg.epochs >= 1


# ---- optimisation pieces -------------------------------------------------------------------
def test_poly_and_cosine_schedules_follow_their_formulas() -> None:
    w = [torch.nn.Parameter(torch.zeros(1))]
    opt = build_optimizer(w, OptimizerConfig(lr=0.1))
    assert isinstance(opt, torch.optim.SGD) and opt.param_groups[0]["nesterov"]
    sch = build_scheduler(opt, OptimizerConfig(lr=0.1), epochs=10)
    for e in range(1, 6):
        opt.step()
        sch.step()
        assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * (1 - e / 10) ** 0.9)
    cfg = OptimizerConfig(name="adamw", lr=1e-3)
    opt = build_optimizer(w, cfg)
    assert isinstance(opt, torch.optim.AdamW)
    sch = build_scheduler(opt, cfg, epochs=10)
    for _ in range(5):
        opt.step()
        sch.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi * 0.5)))


def test_deep_supervision_loss_weights_sum_to_one() -> None:
    torch.manual_seed(0)
    loss = DeepSupervisionLoss(LossConfig())
    out = torch.randn(2, 2, 8, 8, 8)
    y = (torch.rand(2, 1, 8, 8, 8) > 0.5).long()
    single = loss(out, y)
    stacked = loss(torch.stack([out, out, out], 1), y)  # identical heads
    assert torch.allclose(single, stacked, atol=1e-6)
    perfect = torch.cat([(1 - y) * 20.0, y * 20.0], 1).float()
    assert float(loss(perfect, y)) < 1e-3 < float(single)


def test_patch_sampler_is_deterministic_per_epoch_and_oversamples_foreground() -> None:
    cases = ball_cases(3, (24, 24, 20), seed=0)
    s = PatchSampler(cases, (16, 16, 16), 3, 4, foreground_ratio=1 / 3, seed=5)
    a = list(s.epoch_batches(2))
    b = list(s.epoch_batches(2))
    c = list(s.epoch_batches(3))
    assert all(torch.equal(x["image"], y["image"]) for x, y in zip(a, b, strict=True))
    assert not torch.equal(a[0]["image"], c[0]["image"])
    assert a[0]["image"].shape == (3, 1, 16, 16, 16) and a[0]["label"].dtype == torch.int64
    assert all(int(batch["label"][-1].sum()) > 0 for batch in a)  # last patch forced on fg


# ---- the loop ------------------------------------------------------------------------------
def test_fit_learns_writes_outputs_and_checkpoint_predicts(tmp_path: Path) -> None:
    cases = ball_cases(5, (24, 24, 20), seed=0)
    src = PatchSampler(cases[:4], (16, 16, 16), 2, 5, seed=0)
    out = tmp_path / "fold_0"
    res = fit(_cfg(), SPEC, src, cases[4:], _meta(), out)
    losses = [r["train_loss"] for r in res.history]
    assert len(losses) == 6 and losses[-1] < 0.6 * losses[0]
    assert res.final_metrics["ball"]["dice"] > 0.6
    assert math.isfinite(res.final_metrics["ball"]["hd95_mm"])
    assert res.best_epoch in (3, 6)
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    assert rows[2]["val_dice_ball"] != "" and rows[0]["val_dice_ball"] == ""
    assert (out / "progress.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert (out / "log.txt").read_text().count("epoch ") == 6
    final = json.loads((out / "validation_final.json").read_text())
    assert final["mean"]["ball"]["dice"] == pytest.approx(res.final_metrics["ball"]["dice"])
    # the best checkpoint alone predicts
    ck = load_checkpoint(res.best_checkpoint)
    assert ck.meta.epoch == res.best_epoch and ck.meta.label_names == LABELS
    probs = Predictor([ck]).probabilities(torch.from_numpy(cases[4].image))
    pred = probs.argmax(0).numpy()
    ref = cases[4].label
    assert ref is not None
    dice = 2 * np.sum((pred == 1) & (ref == 1)) / (np.sum(pred == 1) + np.sum(ref == 1))
    assert dice > 0.5
    with pytest.raises(OutputExistsError):
        fit(_cfg(), SPEC, src, cases[4:], _meta(), out)


def test_in_process_resume_equals_uninterrupted(tmp_path: Path) -> None:
    cases = ball_cases(3, (20, 20, 16), seed=1)
    src = PatchSampler(cases[:2], (16, 16, 16), 2, 3, seed=0)
    cfg = _cfg(epochs=4, val_every=2, iterations_per_epoch=3)
    full = fit(cfg, SPEC, src, cases[2:], _meta(), tmp_path / "full")
    part = fit(
        cfg, SPEC, src, cases[2:], _meta(), tmp_path / "part", stop_after_epoch=lambda e: e == 2
    )
    assert part.epochs == 2 and part.final_metrics == {}
    torch.manual_seed(1234)  # disturb global RNGs: resume must restore/reseed them
    np.random.seed(99)
    resumed = fit(cfg, SPEC, src, cases[2:], _meta(), tmp_path / "part", resume=True)
    a = load_checkpoint(full.last_checkpoint).state_dict
    b = load_checkpoint(resumed.last_checkpoint).state_dict
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6, rtol=0), k
    assert [r["train_loss"] for r in resumed.history] == pytest.approx(
        [r["train_loss"] for r in full.history], abs=1e-6
    )


# ---- train() API and CLI -------------------------------------------------------------------
def _write_run(tmp_path: Path) -> Path:
    from medseg.datasets import load_dataset
    from medseg.plan import plan_dataset, save_plan

    root = write_ball_dataset(tmp_path / "data", n=5, shape=(24, 24, 20), seed=0)
    save_plan(plan_dataset(load_dataset(root), 8.0), tmp_path / "plan.yaml")
    cfg = {
        "plan": "plan.yaml",
        "epochs": 4,
        "iterations_per_epoch": 5,
        "val_every": 2,
        "device": "cpu",
        "progress_bar": False,
        "num_threads": 1,
        "optimizer": {"lr": 0.05},
        "network": {"max_filters": 16},
        "data": {"patch_size": [16, 16, 16], "batch_size": 2, "n_folds": 5, "loader": "builtin"},
    }
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    return tmp_path / "cfg.yaml"


def test_cli_train_then_predict_on_original_grid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from medseg.cli import main
    from medseg.inference import predict
    from medseg.io import read_label_map, read_volume

    cfg = _write_run(tmp_path)
    out = tmp_path / "model"
    rc = main(["train", str(cfg), "--out", str(out), "--fold", "0"])
    assert rc == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["ball"]["dice"] > 0.5
    for f in (
        "config.json",
        "plan.yaml",
        "splits.json",
        "result_fold_0.json",
        "fold_0/checkpoint_best.pt",
        "fold_0/checkpoint_last.pt",
        "fold_0/metrics.csv",
    ):
        assert (out / f).exists(), f
    val_id = json.loads((out / "splits.json").read_text())[0]["val"][0]
    img = read_volume(tmp_path / "data" / "imagesTr" / f"{val_id}.nii.gz")
    ref = read_label_map(tmp_path / "data" / "labelsTr" / f"{val_id}.nii.gz")
    lm = predict(out, [img])
    assert lm.same_grid(img) and lm.label_names == LABELS
    p, r = lm.array == 1, ref.array == 1
    assert 2 * np.sum(p & r) / (p.sum() + r.sum()) > 0.5
    nearest = predict(out, [img], resample_probabilities=False)  # same 1 mm grid: same labels
    assert nearest.same_grid(img) and np.array_equal(nearest.array, lm.array)
    lcc = predict(out, [img], largest_component=True)
    assert lcc.same_grid(img) and int((lcc.array == 1).sum()) <= int(p.sum())
    # a second run into the same folder without --resume is refused, with a one-line error
    assert main(["train", str(cfg), "--out", str(out), "--fold", "0"]) == 1
    assert "checkpoint_last.pt" in capsys.readouterr().err
    # --resume on a finished fold only re-validates
    assert main(["train", str(cfg), "--out", str(out), "--fold", "0", "--resume"]) == 0
    capsys.readouterr()
    # resuming with another epoch count is refused (the schedule depends on it)
    rc = main(["train", str(cfg), "--out", str(out), "--fold", "0", "--resume", "--epochs", "9"])
    assert rc == 1 and "started with epochs=4, found 9" in capsys.readouterr().err


def test_train_api_rejects_bad_fold(tmp_path: Path) -> None:
    from medseg.training import train

    cfg = load_train_config(_write_run(tmp_path))
    with pytest.raises(ConfigError, match=r"--fold: expected 0\.\.4"):
        train(cfg, tmp_path / "m", fold=7)


def test_device_and_precision_errors_are_config_errors() -> None:
    from medseg.training.distributed import DistInfo
    from medseg.training.loop import resolve_amp, resolve_device

    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="device: cuda requested"):
            resolve_device(_cfg(device="cuda"), DistInfo())
    with pytest.raises(ConfigError, match="amp: fp16 needs a CUDA device"):
        resolve_amp(_cfg(amp="fp16"), torch.device("cpu"))
    assert resolve_amp(_cfg(amp="auto"), torch.device("cpu")) is None
    assert resolve_amp(_cfg(amp="bf16"), torch.device("cpu")) == torch.bfloat16


def test_fold_all_trains_every_fold_into_one_model_folder(tmp_path: Path) -> None:
    from medseg.training import train

    cfg = load_train_config(_write_run(tmp_path))
    cfg.epochs, cfg.iterations_per_epoch, cfg.data.n_folds = 1, 1, 2
    cfg.data.loader = "medseg"  # the augmenting, disk-cached loader of medseg.loader
    res = train(cfg, tmp_path / "m", fold="all")
    assert [f.fold for f in res.folds] == [0, 1]
    for k in (0, 1):
        assert (tmp_path / "m" / f"fold_{k}" / "checkpoint_best.pt").exists()
    doc = json.loads((tmp_path / "m" / "result.json").read_text())
    assert len(doc["folds"]) == 2 and "ball" in doc["mean_metrics"]
    assert len(Predictor.from_paths([tmp_path / "m"]).models) == 2
    assert list((tmp_path / "m" / "cache").iterdir())  # the loader's disk cache was used


@pytest.mark.gpu
def test_fit_on_cuda_with_mixed_precision(tmp_path: Path) -> None:
    if not torch.cuda.is_available():
        pytest.fail("the gpu marker was selected but no CUDA device is available")
    cases = ball_cases(3, (24, 24, 20), seed=0)
    src = PatchSampler(cases[:2], (16, 16, 16), 2, 5, seed=0)
    for amp in ("bf16", "fp16"):
        res = fit(
            _cfg(device="cuda", amp=amp, epochs=3, val_every=3),
            SPEC,
            src,
            cases[2:],
            _meta(),
            tmp_path / amp,
        )
        assert math.isfinite(res.history[-1]["train_loss"])
        assert res.history[-1]["train_loss"] < res.history[0]["train_loss"]
        ck = load_checkpoint(res.last_checkpoint)
        assert ck.training is not None and "scaler" in ck.training
