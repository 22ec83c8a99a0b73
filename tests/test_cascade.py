"""Two-stage cascades: the box geometry, stage 2 predicting only inside stage 1's box (with
context from the whole image), a cascade trained by ``medseg train`` and run by ``medseg
predict`` on the input's own grid, its cross-validation, and the refusals."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from support.plans import write_cascade_run
from support.predict import run_predict
from support.volumes import write_nifti

from medseg.errors import ConfigError, InputError
from medseg.inference.cascade import CascadeModel, load_cascade, read_cascade
from medseg.inference.load import load_model
from medseg.inference.roi import roi_probabilities
from medseg.io import read_label_map, read_volume
from medseg.model_folder import ModelFolder
from medseg.plan.schema import RoiPlan
from medseg.training import load_train_config, train
from medseg.training.cascade import stage_configs
from medseg.training.crossval import fold_history
from medseg.training.logging import write_csv
from medseg.transforms.roi import (
    foreground_box,
    grow_box,
    jittered_center,
    mm_to_voxels,
    window_region,
)


# ---- box geometry -------------------------------------------------------------------------
def test_box_geometry() -> None:
    lab = np.zeros((30, 20, 10), np.uint8)
    assert foreground_box(lab) is None
    lab[5:9, 2:4, 7] = 2
    assert foreground_box(lab) == ((5, 9), (2, 4), (7, 8))
    assert mm_to_voxels(10.0, (1.5, 1.0, 3.0)) == (7, 10, 4)  # rounded up: never less
    assert mm_to_voxels(3.0, (1.5, 1.0, 3.0)) == (2, 3, 1)
    assert grow_box(((5, 9), (2, 4), (7, 8)), (7, 10, 4), (30, 20, 10)) == (
        (0, 16),
        (0, 14),
        (3, 10),
    )
    # grown to one patch around the box, shifted inside the image, clipped when it is smaller
    assert window_region(((5, 9), (2, 4), (7, 8)), (8, 16, 16), (30, 20, 10)) == (
        (3, 11),
        (0, 16),
        (0, 10),
    )
    assert window_region(((20, 29), (0, 20), (0, 10)), (16, 8, 4), (30, 20, 10)) == (
        (14, 30),
        (0, 20),
        (0, 10),
    )
    rng = np.random.default_rng(0)
    box = ((10, 20), (0, 4), (6, 6))
    centres = np.array([jittered_center(box, (3, 0, 1), rng) for _ in range(500)])
    assert centres[:, 0].min() == 12 and centres[:, 0].max() == 18
    assert set(centres[:, 1]) == {2} and set(centres[:, 2]) == {5, 6, 7}


def test_roi_probabilities_are_background_outside_the_grown_box() -> None:
    import torch

    image = torch.zeros((1, 40, 30, 20))
    image[0, 10:30] = 1.0  # a feature the "network" copies into class 1
    seen: list[tuple[int, ...]] = []

    def windows(region: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(region.shape))
        fg = region[0].clamp(0, 1) * 0.8 + 0.1
        return torch.stack([1 - fg, fg])

    guide = np.zeros((40, 30, 20), np.uint8)
    guide[18:21, 14:16, 9:11] = 1
    roi = RoiPlan(margin_mm=2.0, jitter_mm=0.0)
    probs = roi_probabilities(windows, image, guide, roi, (1.0, 1.0, 1.0), (16, 16, 16), 2)
    assert seen == [(1, 16, 16, 16)]  # one patch of context around the box
    inside = np.zeros((40, 30, 20), bool)
    inside[16:23, 12:18, 7:13] = True  # the box grown by 2 voxels
    p = probs.numpy()
    assert np.all(p[0][~inside] == 1.0) and np.all(p[1][~inside] == 0.0)
    assert np.allclose(p[1][inside], 0.9)  # the window's values, unchanged
    assert np.allclose(p.sum(0), 1.0)
    empty = roi_probabilities(windows, image, np.zeros_like(guide), roi, (1, 1, 1), (16,) * 3, 2)
    assert torch.all(empty[0] == 1) and len(seen) == 1  # no foreground: no window run


# ---- a trained cascade ------------------------------------------------------------------------
def _cascade_config(root: Path) -> Path:
    """A ball dataset, a coarse recipe at 2 mm and a cascade config (stage 2 at 1 mm)."""
    return write_cascade_run(root, {"margin_mm": 3.0, "jitter_mm": 2.0})


@pytest.fixture(scope="module")
def cascade(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("cascade")
    cfg = _cascade_config(root)
    train(cfg, root / "model", fold="cv")
    return root, root / "model"


def test_train_writes_both_stages_and_the_cascades_cross_validation(
    cascade: tuple[Path, Path],
) -> None:
    root, model = cascade
    folder = ModelFolder(model)
    assert [s.root.name for s in read_cascade(model)] == ["stage_1", "stage_2"]
    for n in (1, 2):
        assert [folder.stage(n).checkpoint(k).is_file() for k in (0, 1)] == [True, True]
    from medseg.plan.files import load_plan

    p1, p2 = load_plan(folder.stage(1).plan), load_plan(folder.stage(2).plan)
    assert p1.roi is None and p1.preprocessing.target_spacing == (2.0, 2.0, 2.0)
    assert p2.roi == RoiPlan(margin_mm=3.0, jitter_mm=2.0)
    assert p2.preprocessing.target_spacing == (1.0, 1.0, 1.0)
    # the stages share the cache (one folder per spacing) and the splits
    assert len([d for d in folder.cache.iterdir() if d.is_dir()]) == 2
    assert folder.stage(1).splits.read_text() == folder.stage(2).splits.read_text()
    # the cascade's own out-of-fold predictions, tables and post-processing choice
    summary = json.loads(folder.crossval_summary.read_text())
    assert summary["n_cases"] == 4 and folder.postprocessing.is_file()
    for k, split in enumerate(json.loads(folder.splits.read_text())):
        for cid in split["val"]:
            pred = read_label_map(folder.fold(k).validation_prediction(cid))
            ref = read_label_map(root / "data" / "labelsTr" / f"{cid}.nii.gz")
            assert pred.shape == ref.shape and np.allclose(pred.affine, ref.affine)
    # time to accuracy: stage 2's clock starts where stage 1's ended
    h1 = fold_history([folder.stage(1)], 0)
    both = fold_history([folder.stage(1), folder.stage(2)], 0)
    assert len(both) == 4 and both[2]["elapsed_s"] > h1[-1]["elapsed_s"]
    assert summary["folds"][0]["train_s"] == pytest.approx(both[-1]["elapsed_s"])


def test_stage_2_predicts_only_inside_stage_1s_box_on_the_input_grid(
    cascade: tuple[Path, Path], tmp_path: Path
) -> None:
    root, model = cascade
    loaded = load_model(model, device="cpu")
    assert isinstance(loaded, CascadeModel)
    # an anisotropic, shifted grid: the output must lie on it
    image = read_volume(root / "data" / "imagesTr" / "ball_000.nii.gz")
    affine = np.diag([0.8, 1.1, 1.3, 1.0])
    affine[:3, 3] = (-7.0, 3.0, 11.0)
    src = write_nifti(tmp_path / "in" / "scan.nii.gz", np.asarray(image.array), affine)
    vol = read_volume(src)
    guide, _ = loaded.coarse.predict_case([vol])
    seg, probs = loaded.predict_case([vol], with_probabilities=True)
    assert seg.shape == vol.shape and np.allclose(seg.affine, affine)
    assert probs is not None
    box = foreground_box(np.asarray(guide.array))
    if box is None:  # stage 1 found nothing: the cascade's output is empty
        assert not np.any(seg.array) and np.all(probs[0] == 1)
        pytest.fail("the tiny stage 1 should find the ball")
    # outside stage 1's box grown by the margin (3 mm, plus one fine voxel of resampling):
    # background with probability exactly 1; inside, the network's own probabilities
    margin = [int(np.ceil(3.0 / s)) + 2 for s in (0.8, 1.1, 1.3)]
    grown = grow_box(box, margin, vol.shape)
    outside = np.ones(vol.shape, bool)
    outside[tuple(slice(a, b) for a, b in grown)] = False
    assert np.all(probs[0][outside] == 1.0) and not np.any(np.asarray(seg.array)[outside])
    assert np.any(probs[0][~outside] < 0.999)


def test_predict_cli_round_trip_and_manifest(cascade: tuple[Path, Path], tmp_path: Path) -> None:
    root, model = cascade
    report = run_predict(model, root / "data" / "imagesTr", tmp_path / "out", device="cpu")
    assert report.failed == [] and len(report.done) == 4
    outs = sorted((tmp_path / "out").glob("*.nii.gz"))
    assert len(outs) == 4
    direct = load_cascade(model, device="cpu").predict(
        [read_volume(root / "data" / "imagesTr" / "ball_001.nii.gz")]
    )
    written = read_label_map(tmp_path / "out" / "ball_001.nii.gz")
    assert np.array_equal(np.asarray(written.array), np.asarray(direct.array))
    manifest = json.loads((tmp_path / "out" / "predict.json").read_text())
    assert manifest["model"]["kind"] == "medseg-cascade"
    assert len(manifest["model"]["stages"]) == 2


def test_a_second_stage_alone_needs_its_cascade(cascade: tuple[Path, Path]) -> None:
    root, model = cascade
    from medseg.inference.predictor import Predictor

    fine = Predictor.from_paths([ModelFolder(model).stage(2).root])
    vol = read_volume(root / "data" / "imagesTr" / "ball_000.nii.gz")
    with pytest.raises(ConfigError, match="load it through its cascade folder"):
        fine.predict([vol])


def test_cascade_config_refusals(tmp_path: Path) -> None:
    cfg_path = _cascade_config(tmp_path)
    cfg = load_train_config(cfg_path)
    assert cfg.cascade is not None and cfg.cascade.coarse == (tmp_path / "coarse.yaml")
    s1, s2 = stage_configs(cfg, ModelFolder(tmp_path / "m"))
    assert s1.plan == s2.plan == cfg.plan and s1.cascade is None and s2.cascade is None
    assert s2.plan_overrides.roi == RoiPlan(margin_mm=3.0, jitter_mm=2.0)
    assert s1.data.cache_dir == s2.data.cache_dir == tmp_path / "m" / "cache"
    # a cascade as the first stage, or roi set by hand next to the cascade section
    nested = yaml.safe_load(cfg_path.read_text())
    nested["cascade"]["coarse"] = str(cfg_path)
    (tmp_path / "nested.yaml").write_text(yaml.safe_dump(nested))
    with pytest.raises(ConfigError, match="must be a one-stage recipe"):
        stage_configs(load_train_config(tmp_path / "nested.yaml"), ModelFolder(tmp_path / "m"))
    both = yaml.safe_load(cfg_path.read_text())
    both["plan_overrides"]["roi"] = {"margin_mm": 5.0}
    (tmp_path / "both.yaml").write_text(yaml.safe_dump(both))
    with pytest.raises(ConfigError, match="set by the cascade section"):
        stage_configs(load_train_config(tmp_path / "both.yaml"), ModelFolder(tmp_path / "m"))
    bad = yaml.safe_load(cfg_path.read_text())
    bad["cascade"]["margin_mm"] = -1
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(ConfigError, match=r"cascade\.margin_mm"):
        load_train_config(tmp_path / "bad.yaml")


def test_a_refused_stage_2_leaves_stage_1_untrained(tmp_path: Path) -> None:
    cfg = _cascade_config(tmp_path)
    (tmp_path / "m" / "stage_2" / "fold_0").mkdir(parents=True)
    (tmp_path / "m" / "stage_2" / "fold_0" / "checkpoint_last.pt").write_bytes(b"x")
    from medseg.errors import OutputExistsError

    with pytest.raises(OutputExistsError):
        train(cfg, tmp_path / "m", fold=0)
    assert not (tmp_path / "m" / "stage_1").exists()


def test_fold_history_offsets_each_stage(tmp_path: Path) -> None:
    rows = [{"epoch": 1, "train_loss": 1.0, "elapsed_s": 10.0, "val_mean_dice": 0.5}]
    for n in (1, 2):
        path = ModelFolder(tmp_path).stage(n).fold(0).metrics
        path.parent.mkdir(parents=True)
        write_csv(path, rows)
    both = fold_history([ModelFolder(tmp_path).stage(1), ModelFolder(tmp_path).stage(2)], 0)
    assert [r["elapsed_s"] for r in both] == [10.0, 20.0]


def test_export_round_trip_of_a_cascade(cascade: tuple[Path, Path], tmp_path: Path) -> None:
    """``medseg export`` of a cascade's folder: each stage an ONNX folder, the cascade's
    description and post-processing beside them; ``medseg predict`` on it with ONNX Runtime (in
    a child process) gives the torch cascade's labels."""
    from support.child import assert_runtimes_not_imported, run_medseg

    from medseg.export import export_onnx

    root, model = cascade
    out = export_onnx(model, tmp_path / "exported")
    assert (out / "cascade.json").is_file() and (out / "postprocessing.json").is_file()
    assert [s.root.name for s in read_cascade(out)] == ["stage_1", "stage_2"]
    for n in (1, 2):
        assert sorted(p.name for p in (out / f"stage_{n}").glob("fold_*")) == ["fold_0", "fold_1"]
    images = root / "data" / "imagesTr"
    run_medseg(
        ["predict", "--model", str(out), str(images), str(tmp_path / "onnx_out"),
         "--runtime", "onnxruntime", "--device", "cpu", "--quiet"],
        what="medseg predict --runtime onnxruntime (a cascade export)",
    )  # fmt: skip
    torch_model = load_cascade(model, device="cpu")
    for i in range(4):
        vol = read_volume(images / f"ball_{i:03d}.nii.gz")
        expected = np.asarray(torch_model.predict([vol]).array)
        got = read_label_map(tmp_path / "onnx_out" / f"ball_{i:03d}.nii.gz")
        assert np.allclose(got.affine, vol.affine)
        both = np.logical_and(got.array > 0, expected > 0).sum()
        total = (np.asarray(got.array) > 0).sum() + (expected > 0).sum()
        assert total > 0 and 2 * both / total >= 0.999
    manifest = json.loads((tmp_path / "onnx_out" / "predict.json").read_text())
    assert manifest["model"]["kind"] == "medseg-cascade"
    # the cascade's own files are verified against the export's manifest before use
    for name in ("cascade.json", "postprocessing.json"):
        changed = tmp_path / f"changed_{name}"
        shutil.copytree(out, changed)
        (changed / name).write_text((changed / name).read_text() + " ")
        with pytest.raises(InputError, match="^" + re.escape(f"{changed / name}: sha256")):
            load_cascade(changed, device="cpu", runtime="onnxruntime")
    assert_runtimes_not_imported()
