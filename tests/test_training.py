"""Training: config validation, plan overrides, loss/optimizer/schedule, and train() end to end
through the one training route (the disk-cached loader) on tiny noisy-ball datasets: the loss
falls, outputs are written, the checkpoint predicts, validation equals `medseg evaluate` on the
same predictions, splits written beside the plan are honoured, `--fold all` trains on every
case, `--cv` runs every fold, and a refused run changes nothing."""

from __future__ import annotations

import csv
import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from support.paths import REPO
from support.plans import TINY_RECIPE, tiny_plan, write_training_run

from medseg.errors import ConfigError, OutputExistsError
from medseg.inference import Predictor, predict
from medseg.io import read_label_map, read_volume
from medseg.training import load_train_config, train
from medseg.training.config import LossConfig, OptimizerConfig, PlanOverrides, TrainConfig
from medseg.training.optim import DeepSupervisionLoss, build_optimizer, build_scheduler
from medseg.training.setup import apply_overrides

LABELS = {0: "background", 1: "ball"}


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * np.sum(a & b) / (np.sum(a) + np.sum(b)))


# ---- config --------------------------------------------------------------------------------
def test_config_unknown_key_and_bad_value_name_the_key_path(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("epochs: 5\noptimizer:\n  lrr: 0.1\n  momentum: 1.5\n")
    with pytest.raises(ConfigError) as exc:
        load_train_config(p)
    msg = str(exc.value)
    assert f"{p}: invalid training config: " in msg and "optimizer.lrr: unknown key" in msg
    assert "optimizer.momentum: Input should be less than 1 (found 1.5)" in msg
    p.write_text("epochs: -1\n")
    with pytest.raises(ConfigError, match="epochs: Input should be greater than or equal to 1"):
        load_train_config(p)
    p.write_text("- a list\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_train_config(p)
    p.write_text("data:\n  loader: builtin\n")  # the second training route is gone
    with pytest.raises(ConfigError, match=r"data\.loader: unknown key"):
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
    plan.write_text("preprocessing: {}\npatch_size: [16, 16, 16]\n")
    assert load_train_config(plan).plan == plan.resolve()


def test_every_shipped_config_validates() -> None:
    files = sorted((REPO / "configs").glob("*.yaml"))
    assert len(files) >= 4, files  # never an empty glob
    for f in files:
        if f.name.startswith("augmentation"):
            from medseg.plan.files import load_augmentation

            load_augmentation(f)
        else:
            cfg = load_train_config(f)
            assert cfg.epochs >= 1, f
            # the recipe's plan changes apply: the network re-derived for its patch and spacing
            plan = apply_overrides(tiny_plan(), cfg.plan_overrides, str(f))
            stride = plan.network.total_stride()
            assert all(p % t == 0 for p, t in zip(plan.patch_size, stride, strict=True)), f


# ---- plan overrides ------------------------------------------------------------------------
def test_overrides_change_spacing_patch_network_and_keep_the_rest() -> None:
    plan = tiny_plan(target_spacing=(1.0, 1.0, 1.0), patch_size=(16, 16, 16))
    ov = PlanOverrides.model_validate(
        {
            "target_spacing": [2.0, 2.0, 2.0],
            "patch_size": [32, 32, 16],
            "batch_size": 4,
            "network": {"base_filters": 8, "max_filters": 16},
            "augmentation": {"flip_prob": 0.0},
        }
    )
    new = apply_overrides(plan, ov, "cfg.yaml")
    assert new.preprocessing.target_spacing == (2.0, 2.0, 2.0)
    assert new.preprocessing.key() != plan.preprocessing.key()  # a new cache folder
    assert new.patch_size == (32, 32, 16) and new.batch_size == 4
    assert max(new.network.filters) == 16 and new.network.filters[0] == 8
    assert all(p % t == 0 for p, t in zip(new.patch_size, new.network.total_stride(), strict=True))
    assert new.augmentation.flip_prob == 0.0 and new.augmentation.gamma_prob == 0.3
    assert new.label_names == plan.label_names and "overrides" in new.notes[-1]
    assert apply_overrides(plan, PlanOverrides(), "x") is plan


def test_impossible_overrides_are_config_errors_not_rewritten() -> None:
    plan = tiny_plan()
    ov = PlanOverrides(network={"deep_supervision": True, "deep_supr_num": 4})
    with pytest.raises(ConfigError, match=r"cfg\.yaml: plan_overrides.*deep_supr_num: 4 heads"):
        apply_overrides(plan, ov, "cfg.yaml")
    with pytest.raises(ConfigError, match="one entry per stage"):
        apply_overrides(plan, PlanOverrides(network={"filters": [4, 8, 16, 32]}), "cfg.yaml")
    from medseg.training.config import validate_config

    # a check across the whole plan names the problem without repeating the plan into it
    with pytest.raises(ConfigError) as err:
        apply_overrides(plan, PlanOverrides(patch_size=[16, 16, 13]), "cfg.yaml")
    assert str(err.value).endswith(
        "patch_size (16, 16, 13) must be divisible by the network's total stride (4, 4, 2) on "
        "every axis"
    )
    bad = {"plan_overrides": {"augmentation": {"flip_prob": 2.0}}}
    with pytest.raises(ConfigError, match=r"plan_overrides\.augmentation.*flip_prob: Input"):
        validate_config(bad, "cfg.yaml")


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


# ---- train() end to end --------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, object]:
    """One fold trained through the default (augmenting, disk-cached) loader: 6 epochs."""
    root = tmp_path_factory.mktemp("run")
    cfg = write_training_run(root, n_folds=5, epochs=6, val_every=3, data={"augment": True})
    res = train(cfg, root / "model", fold=0)
    return root, root / "model", res


def test_train_learns_and_writes_outputs(trained: tuple[Path, Path, object]) -> None:
    _, model, res = trained
    fold = res.folds[0]  # type: ignore[attr-defined]
    losses = [r["train_loss"] for r in fold.history]
    assert len(losses) == 6 and losses[-1] < 0.7 * losses[0]
    assert fold.final_metrics["ball"]["dice"] > 0.6
    assert math.isfinite(fold.final_metrics["ball"]["hd95_mm"])
    rows = list(csv.DictReader((model / "fold_0" / "metrics.csv").read_text().splitlines()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    assert rows[2]["val_dice_ball"] != "" and rows[0]["val_dice_ball"] == ""
    elapsed = [float(r["elapsed_s"]) for r in rows]
    assert all(b > a for a, b in itertools.pairwise(elapsed))  # wall clock grows
    best = [float(r["val_mean_dice"]) for r in rows if r["val_mean_dice"]]
    assert fold.best_epoch == 3 * (1 + int(np.argmax(best)))  # the epoch of the best Dice
    with (model / "fold_0" / "progress.png").open("rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    assert list((model / "fold_0" / "tensorboard").glob("events.out.tfevents.*"))
    assert (model / "fold_0" / "log.txt").read_text().count("epoch ") == 6
    for f in ("config.json", "plan.yaml", "splits.json", "result_fold_0.json"):
        assert (model / f).exists(), f
    assert list((model / "cache").iterdir())  # the loader's disk cache was used


def test_train_uses_the_default_loader_with_nnunet_foreground_rule(
    trained: tuple[Path, Path, object],
) -> None:
    """One meaning of foreground_ratio (nnU-Net's): with batch 3 and ratio 0.5, exactly the
    last position of each batch is forced onto foreground."""
    from medseg.loader import TrainLoader, foreground_positions
    from medseg.training.setup import fold_cases, prepare_run

    root, model, _ = trained
    cfg = load_train_config(root / "cfg.yaml")
    cfg.plan_overrides = PlanOverrides(patch_size=(16, 16, 16), batch_size=3, foreground_ratio=0.5)
    run = prepare_run(cfg, model, need_splits=True)
    assert foreground_positions(3, 0.5) == 1  # nnU-Net: 3 - round(3 * 0.5) = 1
    loader = TrainLoader(
        run.plan,
        fold_cases(run, 0).train,
        root / "cache2",
        num_workers=0,
        seed=0,
        iterations_per_epoch=3,
        augment=False,
    )
    for b in loader:
        assert b["forced_foreground"] == [False, False, True]
        assert int(b["label"][2].sum()) > 0


def test_validation_equals_medseg_evaluate_on_the_same_predictions(
    trained: tuple[Path, Path, object],
) -> None:
    """The final validation is scored on the original grid with medseg.metrics: evaluating
    the saved predictions with `medseg evaluate` gives the same Dice and HD95."""
    from medseg.evaluation import evaluate_folders

    root, model, res = trained
    fold_dir = model / "fold_0"
    val_ids = json.loads((model / "splits.json").read_text())[0]["val"]
    preds = sorted(p.name for p in (fold_dir / "validation").glob("*.nii.gz"))
    assert preds == sorted(f"{c}.nii.gz" for c in val_ids)
    refs = root / "refs"
    refs.mkdir()
    for c in val_ids:
        (refs / f"{c}.nii.gz").symlink_to(root / "data" / "labelsTr" / f"{c}.nii.gz")
    ev = evaluate_folders(fold_dir / "validation", refs, None)
    final = json.loads((fold_dir / "validation_final.json").read_text())
    assert final["grid"] == "original"
    by_case = {r["case_id"]: r["ball"] for r in final["cases"]}
    assert len(ev.records) == len(val_ids)
    for rec in ev.records:
        assert rec.dice == pytest.approx(by_case[rec.case]["dice"], abs=1e-12)
        assert rec.hd95_mm == pytest.approx(by_case[rec.case]["hd95_mm"], abs=1e-9)
    table = list(csv.DictReader((fold_dir / "validation" / "metrics.csv").read_text().splitlines()))
    assert {r["case"] for r in table} == set(val_ids)
    assert final["mean"]["ball"]["dice"] == pytest.approx(
        res.folds[0].final_metrics["ball"]["dice"]  # type: ignore[attr-defined]
    )


def test_checkpoint_predicts_on_the_original_grid(trained: tuple[Path, Path, object]) -> None:
    root, model, _ = trained
    val_id = json.loads((model / "splits.json").read_text())[0]["val"][0]
    img = read_volume(root / "data" / "imagesTr" / f"{val_id}.nii.gz")
    ref = read_label_map(root / "data" / "labelsTr" / f"{val_id}.nii.gz")
    lm = predict(model, [img])
    assert lm.same_grid(img) and lm.label_names == LABELS
    assert _dice(lm.array == 1, ref.array == 1) > 0.5
    nearest = predict(model, [img], resample_probabilities=False)  # same 1 mm grid
    assert nearest.same_grid(img) and np.array_equal(nearest.array, lm.array)
    from medseg.postprocess import requested_postprocessing

    lcc = predict(model, [img], postprocessing=requested_postprocessing([1], keep_largest="all"))
    assert lcc.same_grid(img) and int((lcc.array == 1).sum()) <= int((lm.array == 1).sum())


def test_refused_runs_change_nothing(trained: tuple[Path, Path, object], capsys) -> None:
    from medseg.cli import main

    root, model, _ = trained
    cfg = root / "cfg.yaml"
    before = {p: p.read_bytes() for p in (model / "config.json", model / "plan.yaml")}
    mtime = (model / "fold_0" / "checkpoint_last.pt").stat().st_mtime_ns
    # a second run into the same folder without --resume: one line, no --overwrite advice
    assert main(["train", str(cfg), "--out", str(model), "--fold", "0"]) == 1
    err = capsys.readouterr().err
    assert "checkpoint_last.pt" in err and "--resume" in err and "--overwrite" not in err
    # another recipe into the same folder is refused before anything is written
    other = root / "other.yaml"
    doc = yaml.safe_load(cfg.read_text())
    doc["epochs"] = 9
    other.write_text(yaml.safe_dump(doc))
    assert main(["train", str(other), "--out", str(model), "--fold", "1"]) == 1
    assert "another config (epochs: 6 -> 9)" in capsys.readouterr().err
    # --resume with nothing to resume is an error, not a silent fresh start
    assert main(["train", str(cfg), "--out", str(model), "--fold", "2", "--resume"]) == 1
    assert "--resume: no checkpoint_last.pt to resume from in fold_2" in capsys.readouterr().err
    assert not (model / "fold_2").exists() and not (model / "fold_1").exists()
    assert {p: p.read_bytes() for p in before} == before
    assert (model / "fold_0" / "checkpoint_last.pt").stat().st_mtime_ns == mtime
    with pytest.raises(SystemExit) as ex:  # refused when parsed
        main(["train", str(cfg), "--out", str(model), "--epochs", "-5"])
    assert ex.value.code == 2
    assert "--epochs: expected an integer in [1, 100000], found '-5'" in capsys.readouterr().err
    (root / "afile").write_text("x")
    assert main(["train", str(cfg), "--out", str(root / "afile")]) == 1
    assert "--out: expected a folder (the model folder), found the file" in capsys.readouterr().err


def test_resume_of_a_finished_fold_only_validates(trained: tuple[Path, Path, object]) -> None:
    root, model, res = trained
    again = train(root / "cfg.yaml", model, fold=0, resume=True)
    assert again.folds[0].epochs == 6
    assert again.folds[0].final_metrics == res.folds[0].final_metrics  # type: ignore[attr-defined]


# ---- splits, --fold all, --cv --------------------------------------------------------------
def test_splits_beside_the_plan_are_honoured(tmp_path: Path, caplog) -> None:
    """`medseg plan --folds 3` writes splits.json beside plan.yaml; train uses it (and says
    so) instead of making 5 folds with seed 0."""
    import logging

    cfg = write_training_run(tmp_path, n_cases=6, n_folds=3, epochs=1, iterations_per_epoch=1)
    plan_splits = json.loads((tmp_path / "plan" / "splits.json").read_text())
    with caplog.at_level(logging.INFO, logger="medseg.training"):
        train(cfg, tmp_path / "m", fold=2)
    assert json.loads((tmp_path / "m" / "splits.json").read_text()) == plan_splits
    assert "written beside the plan" in caplog.text
    val = json.loads((tmp_path / "m" / "fold_2" / "validation_final.json").read_text())
    assert sorted(r["case_id"] for r in val["cases"]) == sorted(plan_splits[2]["val"])
    # an explicit fold count is a different choice, and it cannot join this model folder
    doc = yaml.safe_load(cfg.read_text())
    doc["data"]["n_folds"] = 2
    cfg.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match=r"another config|other splits"):
        train(cfg, tmp_path / "m", fold=0)
    res = train(cfg, tmp_path / "m2", fold=0)
    assert len(json.loads((tmp_path / "m2" / "splits.json").read_text())) == 2
    assert res.folds[0].fold == 0


def test_fold_all_trains_on_every_case_and_cv_runs_every_fold(tmp_path: Path) -> None:
    cfg = write_training_run(tmp_path, n_cases=4, n_folds=2, epochs=1, iterations_per_epoch=2)
    res = train(cfg, tmp_path / "m", fold="all")
    assert [f.fold for f in res.folds] == ["all"] and res.folds[0].final_metrics == {}
    assert (tmp_path / "m" / "fold_all" / "checkpoint_last.pt").exists()
    assert not (tmp_path / "m" / "fold_all" / "checkpoint_best.pt").exists()
    from medseg.checkpoint import load_checkpoint

    ck = load_checkpoint(tmp_path / "m" / "fold_all" / "checkpoint_last.pt")
    assert ck.meta.fold == "all"
    # every case was a training case: the loader saw all four
    seen = {
        json.loads(p.read_text())["case_id"]
        for p in (tmp_path / "m" / "cache").rglob("*.json")
        if p.name.startswith("ball_")
    }
    assert seen == {f"ball_{i:03d}" for i in range(4)}
    cv = train(cfg, tmp_path / "cv", fold="cv")
    assert [f.fold for f in cv.folds] == [0, 1]
    assert (tmp_path / "cv" / "result_cv.json").exists()
    held_out = set()
    for k in (0, 1):
        doc = json.loads((tmp_path / "cv" / f"fold_{k}" / "validation_final.json").read_text())
        held_out |= {r["case_id"] for r in doc["cases"]}
    assert held_out == {f"ball_{i:03d}" for i in range(4)}  # each case held out once
    # after the last fold: out-of-fold tables and the post-processing chosen on them
    assert cv.cross_validation is not None and cv.cross_validation["n_cases"] == 4
    summary = json.loads((tmp_path / "cv" / "crossval" / "summary.json").read_text())
    assert set(summary["raw"]["ball"]["dice"]["per_case"]) == held_out
    # per fold the training time read back from its metrics.csv, and the Dice-vs-time plot
    assert [f["fold"] for f in summary["folds"]] == [0, 1]
    assert all(f["train_s"] > 0 for f in summary["folds"])
    assert (tmp_path / "cv" / "crossval" / "dice_vs_time.png").stat().st_size > 1000
    assert (tmp_path / "cv" / "postprocessing.json").exists()
    predictor = Predictor.from_paths([tmp_path / "cv"])
    assert len(predictor.models) == 2 and predictor.postprocessing is not None
    assert predictor.postprocessing.decided_by.startswith("cross-validation")


def test_bad_fold_requests(tmp_path: Path) -> None:
    cfg = write_training_run(tmp_path, n_cases=5, epochs=1)
    with pytest.raises(ConfigError, match=r"^fold: expected 0\.\.4") as exc:
        train(cfg, tmp_path / "m", fold=7)
    assert exc.value.param == "fold"
    with pytest.raises(ConfigError, match=r"^fold: expected an integer"):
        train(cfg, tmp_path / "m", fold="x")
    with pytest.raises(ConfigError, match=r"^resume: no checkpoint_last\.pt"):
        train(cfg, tmp_path / "m", fold=0, resume=True)
    assert not (tmp_path / "m").exists()


def test_device_and_precision_errors_are_config_errors() -> None:
    from medseg.runtime import DistInfo, resolve_amp, resolve_device

    cfg = TrainConfig.model_validate(TINY_RECIPE)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="device: cuda requested"):
            resolve_device("cuda", local_rank=DistInfo().local_rank)
    with pytest.raises(ConfigError, match="device: expected auto, cpu, cuda or cuda:N"):
        resolve_device("gpu")
    with pytest.raises(ConfigError, match="amp: fp16 needs a CUDA device"):
        resolve_amp("fp16", torch.device("cpu"))
    assert resolve_amp(cfg.amp, torch.device("cpu")) is None
    assert resolve_amp("bf16", torch.device("cpu")) is torch.bfloat16


def test_existing_output_error_names_the_fold(tmp_path: Path) -> None:
    cfg = write_training_run(tmp_path, n_cases=4, n_folds=2, epochs=1, iterations_per_epoch=1)
    train(cfg, tmp_path / "m", fold=0)
    with pytest.raises(OutputExistsError, match=r"fold_0/checkpoint_last\.pt"):
        train(cfg, tmp_path / "m", fold=[0, 1])
    assert not (tmp_path / "m" / "fold_1").exists()


def test_a_folder_left_by_a_run_that_never_saved_a_checkpoint_is_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """A train that fails before its first checkpoint (out of memory on a huge patch, a full
    disk) leaves config.json, plan.yaml, splits.json and cache/ behind; the corrected config
    then trains into the same folder (its run files replaced), without --resume."""
    import medseg.training.loop as loop_mod
    from medseg.cli import main
    from medseg.model_folder import ModelFolder

    cfg = write_training_run(
        tmp_path, n_cases=4, n_folds=2, epochs=2, iterations_per_epoch=1, val_every=2
    )
    model = ModelFolder(tmp_path / "m")

    def out_of_memory(*args: object, **kwargs: object) -> None:
        raise RuntimeError("CUDA out of memory (simulated)")

    with monkeypatch.context() as mp:
        mp.setattr(loop_mod, "_epoch", out_of_memory)
        with pytest.raises(RuntimeError, match="out of memory"):
            train(cfg, model.root, fold=0)
    assert all(f.is_file() for f in model.run_files) and model.cache.is_dir()
    assert not model.has_checkpoint()
    # --resume: still nothing to resume, said in the CLI's words
    assert main(["train", str(cfg), "--out", str(model.root), "--resume"]) == 1
    assert "--resume: no checkpoint_last.pt to resume from in fold_0" in capsys.readouterr().err
    # the corrected recipe (a smaller batch, other splits) trains into the same folder
    doc = yaml.safe_load(cfg.read_text())
    doc["plan_overrides"]["batch_size"] = 1
    doc["data"]["n_folds"] = 3
    fixed = tmp_path / "fixed.yaml"
    fixed.write_text(yaml.safe_dump(doc))
    res = train(fixed, model.root, fold=0)
    assert model.fold(0).last.is_file() and res.folds[0].epochs == 2
    saved = json.loads(model.config.read_text())
    assert saved["plan_overrides"]["batch_size"] == 1
    assert len(json.loads(model.splits.read_text())) == 3
    assert "\nbatch_size: 1\n" in model.plan.read_text()
    # now the folder holds a run: another recipe is refused as before
    doc["epochs"] = 3
    fixed.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match="another config"):
        train(fixed, model.root, fold=1)


@pytest.mark.gpu
def test_train_on_cuda_with_mixed_precision(tmp_path: Path) -> None:
    if not torch.cuda.is_available():
        pytest.fail("the gpu marker was selected but no CUDA device is available")
    for amp in ("bf16", "fp16"):
        cfg = write_training_run(
            tmp_path / amp, n_cases=3, n_folds=3, epochs=3, val_every=3, device="cuda", amp=amp
        )
        res = train(cfg, tmp_path / amp / "m", fold=0)
        hist = res.folds[0].history
        assert (
            math.isfinite(hist[-1]["train_loss"]) and hist[-1]["train_loss"] < hist[0]["train_loss"]
        )
        from medseg.checkpoint import load_checkpoint

        ck = load_checkpoint(res.folds[0].last_checkpoint)
        assert ck.training is not None and "scaler" in ck.training
