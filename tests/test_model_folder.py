"""The model folder's one owner: paths of the layout, default folds, checkpoints, and the
small interface other kinds of model folder share."""

from __future__ import annotations

from pathlib import Path

import pytest

from medseg.errors import ConfigError, InputError
from medseg.model_folder import ModelFolder, ModelFolderLike, open_model_folder


def _touch(p: Path) -> None:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"x")


def test_layout_and_default_folds(tmp_path: Path) -> None:
    m = ModelFolder(tmp_path)
    like: ModelFolderLike = m  # mypy checks that ModelFolder offers the shared interface
    assert like.kind == "medseg" and like.root == tmp_path
    assert m.config.name == "config.json" and m.plan.name == "plan.yaml"
    assert m.splits.name == "splits.json"
    assert m.postprocessing == tmp_path / "postprocessing.json"
    f = m.fold(2)
    assert f.dir == tmp_path / "fold_2" and f.last.name == "checkpoint_last.pt"
    assert f.best.name == "checkpoint_best.pt" and f.checkpoint("best") == f.best
    assert f.metrics == f.dir / "metrics.csv" and f.validation == f.dir / "validation"
    assert f.validation_prediction("c1") == f.dir / "validation" / "c1.nii.gz"
    # a folder named by a string is the same folder (its stages too)
    assert ModelFolder(str(tmp_path)) == m
    assert ModelFolder(str(tmp_path)).stage(2).root == tmp_path / "stage_2"
    assert m.result("cv").name == "result_cv.json"
    assert m.folds() == [] and not m.has_checkpoint()
    _touch(m.fold("all").last)
    assert m.folds() == ["all"] and m.has_checkpoint()
    for k in (10, 0, 1):
        m.fold(k).dir.mkdir()
    assert m.folds() == [0, 1, 10]  # the cross-validation folds, in numeric order
    with pytest.raises(ConfigError, match=r"^checkpoint: expected 'last' or 'best'") as exc:
        m.checkpoint(0, "final")
    assert exc.value.param == "checkpoint"
    with pytest.raises(InputError, match=r"fold_0/checkpoint_last\.pt: last checkpoint not found"):
        m.checkpoints()
    assert m.checkpoints(["all"]) == [m.fold("all").last]


def test_a_run_with_no_checkpoint_is_not_a_run(tmp_path: Path) -> None:
    """What decides whether a folder may be reused: a checkpoint in any fold."""
    m = ModelFolder(tmp_path)
    for f in m.run_files:
        _touch(f)
    (m.fold(0).dir / "log.txt").parent.mkdir(parents=True)
    assert not m.has_checkpoint()
    _touch(m.fold(3).best)
    assert m.has_checkpoint()


def test_open_model_folder_names_what_it_found(tmp_path: Path) -> None:
    assert open_model_folder(tmp_path).root == tmp_path
    (tmp_path / "f").write_text("x")
    with pytest.raises(InputError, match=r"expected a model folder .* found a file"):
        open_model_folder(tmp_path / "f")
    with pytest.raises(InputError, match="found nothing"):
        open_model_folder(tmp_path / "missing")
