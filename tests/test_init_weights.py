"""Starting a training run from trained weights (``init_weights``, :mod:`medseg.training.init`)
and a cascade's stage 2 from its stage 1 (``cascade.init_from_coarse``): the network starts
from exactly those weights, a model folder gives each fold its own fold's weights, and weights
of another network are refused naming the file before anything is trained."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from support.plans import write_cascade_run, write_training_run

from medseg.checkpoint import load_checkpoint
from medseg.errors import ConfigError, InputError
from medseg.model_folder import ModelFolder
from medseg.training import load_train_config, override_config, train
from medseg.training.config import OptimizerConfig


def _max_difference(a: Path, b: Path) -> float:
    sa, sb = load_checkpoint(a).state_dict, load_checkpoint(b).state_dict
    assert sa.keys() == sb.keys()
    return max(float((sa[k].float() - sb[k].float()).abs().max()) for k in sa)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny recipe (2 folds) and a model trained from it (fold 0 only)."""
    root = tmp_path_factory.mktemp("init")
    cfg = write_training_run(root, n_cases=4, n_folds=2, epochs=1, iterations_per_epoch=3)
    train(cfg, root / "a", fold=0)
    return cfg, root / "a"


def test_training_starts_from_the_given_weights(trained: tuple[Path, Path], tmp_path: Path) -> None:
    """With a learning rate of 1e-9 a fine-tuned network ends where it started: equal to the
    weights it was given (a model folder's same fold, or a checkpoint file), and far from them
    without ``init_weights`` (random start, same seed)."""
    cfg_path, a = trained
    still = OptimizerConfig(lr=1e-9, weight_decay=0.0)
    cfg = override_config(load_train_config(cfg_path), optimizer=still)
    start = ModelFolder(a).checkpoint(0)
    for source, name in ((a, "from_folder"), (start, "from_file")):
        train(override_config(cfg, init_weights=source), tmp_path / name, fold=0)
        assert _max_difference(ModelFolder(tmp_path / name).checkpoint(0), start) < 1e-6
        recorded = json.loads((tmp_path / name / "config.json").read_text())
        assert recorded["init_weights"] == str(source)
    train(cfg, tmp_path / "random", fold=0)
    assert _max_difference(ModelFolder(tmp_path / "random").checkpoint(0), start) > 1e-3


def test_weights_of_another_network_or_a_missing_fold_are_refused_first(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    cfg_path, a = trained
    cfg = load_train_config(cfg_path)
    other = cfg.model_copy(deep=True)
    other.plan_overrides.network.max_filters = 8  # type: ignore[union-attr]
    with pytest.raises(InputError, match="init_weights: expected the weights of the network") as e:
        train(override_config(other, init_weights=a), tmp_path / "other", fold=0)
    assert e.value.path == ModelFolder(a).checkpoint(0)
    assert not ModelFolder(tmp_path / "other").has_checkpoint()
    # fold 1 of the folder was never trained: refused before fold 0 trains
    with pytest.raises(InputError, match="checkpoint not found"):
        train(override_config(cfg, init_weights=a), tmp_path / "both", fold="cv")
    assert not ModelFolder(tmp_path / "both").has_checkpoint()


def _cascade(root: Path, **stage2: object) -> Path:
    """A 2 mm coarse recipe and a cascade config (stage 2 at 1 mm) starting from it."""
    return write_cascade_run(
        root, {"init_from_coarse": True}, epochs=1, iterations_per_epoch=2, **stage2
    )


def test_cascade_stage_2_starts_from_stage_1(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="medseg.training")
    model = ModelFolder(tmp_path / "m")
    train(_cascade(tmp_path), model.root, fold=0)
    stage2 = json.loads(model.stage(2).config.read_text())
    assert stage2["init_weights"] == str(model.stage(1).root)
    assert f"weights from {model.stage(1).checkpoint(0)}" in caplog.text


def test_cascade_init_from_coarse_refusals(tmp_path: Path) -> None:
    """Another network in stage 2, or init_weights beside init_from_coarse: refused before
    stage 1 trains."""
    net = {"plan_overrides": {"patch_size": [16, 16, 16], "network": {"max_filters": 8}}}
    with pytest.raises(ConfigError, match=r"^cascade\.init_from_coarse: expected stage 2's"):
        train(_cascade(tmp_path / "a", **net), tmp_path / "a" / "m", fold=0)
    assert not (tmp_path / "a" / "m" / "stage_1").exists()
    with pytest.raises(ConfigError, match="remove init_weights"):
        train(_cascade(tmp_path / "b", init_weights="x.pt"), tmp_path / "b" / "m", fold=0)
    assert not (tmp_path / "b" / "m").exists()
