"""The model folder: the one owner of its layout. Training writes through :class:`ModelFolder`,
prediction, post-processing and export read through it; no other module spells a file name of
the layout::

    MODEL/config.json          the resolved training config
    MODEL/plan.yaml            the resolved plan (the config's plan_overrides applied)
    MODEL/splits.json          the cross-validation splits
    MODEL/postprocessing.json  the post-processing chosen by cross-validation
    MODEL/crossval/            out-of-fold tables, summary.json, dice_vs_time.png
    MODEL/result_<which>.json  what a ``train`` call returned
    MODEL/cache/               the training loader's disk cache (unless configured elsewhere)
    MODEL/fold_K/              one network (K = 0, 1, ... or ``all``): checkpoint_last.pt,
                               checkpoint_best.pt, metrics.csv, log.txt, progress.png,
                               tensorboard/, validation/, validation_final.json

A two-stage cascade (:mod:`medseg.inference.cascade`) is a model folder of model folders::

    MODEL/cascade.json         the stages, in order (its presence makes the folder a cascade)
    MODEL/stage_1/  stage_2/   one model folder per stage (the layout above)
    MODEL/config.json  splits.json  postprocessing.json  crossval/  result_<which>.json
    MODEL/fold_K/validation/   the cascade's out-of-fold predictions (no checkpoints)

Other kinds of model folder (an nnU-Net result folder, an ONNX export) offer the same small
interface, :class:`ModelFolderLike`, so code that only needs the checkpoints of some folds and
the label names does not care which kind it holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

from medseg.errors import ConfigError, InputError

if TYPE_CHECKING:  # pragma: no cover
    from medseg.postprocess import Postprocessing

#: A cross-validation fold index, or ``"all"`` (one model on every case, nothing held out).
Fold = int | str
#: Which checkpoint of a fold: the final weights, or those of the best validation epoch.
Which = Literal["last", "best"]
#: Checkpoint file of each :data:`Which`.
CHECKPOINT_FILES: dict[str, str] = {"last": "checkpoint_last.pt", "best": "checkpoint_best.pt"}


class ModelFolderLike(Protocol):
    """What every kind of model folder offers (medseg's, nnU-Net's, an ONNX export)."""

    @property
    def kind(self) -> str:
        """``"medseg"``, ``"nnunet"``, ``"onnx"``."""

    @property
    def root(self) -> Path: ...

    @property
    def label_names(self) -> dict[int, str]: ...

    def folds(self) -> list[Fold]:
        """The folds a prediction ensembles by default."""

    def checkpoint(self, fold: Fold, which: str = "last") -> Path:
        """The weights file of ``fold``."""


def check_which(which: str) -> str:
    """``which`` if it names a checkpoint (:data:`CHECKPOINT_FILES`), else a
    :class:`ConfigError` with ``param="checkpoint"``."""
    if which not in CHECKPOINT_FILES:
        raise ConfigError(
            f"checkpoint: expected {' or '.join(map(repr, CHECKPOINT_FILES))}, found {which!r}",
            param="checkpoint",
        )
    return which


@dataclass(frozen=True)
class FoldFolder:
    """The files of one fold of a model folder (``MODEL/fold_K/``; ``fold`` is ``None`` for
    a network's folder outside a model folder)."""

    fold: Fold | None
    dir: Path

    def checkpoint(self, which: str = "last") -> Path:
        """``checkpoint_last.pt`` or ``checkpoint_best.pt`` (see :data:`Which`)."""
        return self.dir / CHECKPOINT_FILES[check_which(which)]

    @property
    def last(self) -> Path:
        return self.dir / CHECKPOINT_FILES["last"]

    @property
    def best(self) -> Path:
        return self.dir / CHECKPOINT_FILES["best"]

    @property
    def metrics(self) -> Path:
        """The training history, one row per epoch."""
        return self.dir / "metrics.csv"

    @property
    def log(self) -> Path:
        """One line per epoch."""
        return self.dir / "log.txt"

    @property
    def progress(self) -> Path:
        """The plot of the training history."""
        return self.dir / "progress.png"

    @property
    def tensorboard(self) -> Path:
        return self.dir / "tensorboard"

    @property
    def validation(self) -> Path:
        """The final validation: predictions on the original grid and their tables."""
        return self.dir / "validation"

    @property
    def validation_final(self) -> Path:
        """Per-case and mean metrics of the final validation (written when it finished)."""
        return self.dir / "validation_final.json"

    def validation_prediction(self, case_id: str) -> Path:
        """The out-of-fold prediction of ``case_id`` (in :attr:`validation`)."""
        return self.validation / f"{case_id}.nii.gz"


def fold_dir_name(fold: Fold) -> str:
    """``fold_0``, ``fold_all``."""
    return f"fold_{fold}"


@dataclass(frozen=True)
class ModelFolder:
    """A model folder written by :func:`medseg.training.train` (see the module docstring).

    A folder holding a checkpoint directly (``MODEL/checkpoint_last.pt``, e.g. one fold's
    folder given on its own) is a model of one network, fold ``None``."""

    root: Path

    def __post_init__(self) -> None:  # ModelFolder("runs/x") as ModelFolder(Path("runs/x"))
        object.__setattr__(self, "root", Path(self.root))

    @property
    def kind(self) -> str:
        return "medseg"

    # ---- the files of the whole model -----------------------------------------------------
    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def plan(self) -> Path:
        return self.root / "plan.yaml"

    @property
    def splits(self) -> Path:
        return self.root / "splits.json"

    @property
    def postprocessing(self) -> Path:
        return self.root / "postprocessing.json"

    @property
    def crossval(self) -> Path:
        """Out-of-fold tables and summaries (after every fold of the splits finished)."""
        return self.root / "crossval"

    @property
    def crossval_summary(self) -> Path:
        """The cross-validation document (per label mean, SD and per-case Dice and HD95)."""
        return self.crossval / "summary.json"

    @property
    def dice_vs_time(self) -> Path:
        """Validation Dice of every fold against training time."""
        return self.crossval / "dice_vs_time.png"

    @property
    def cascade(self) -> Path:
        """The stages of a cascade (present only in a cascade's folder)."""
        return self.root / "cascade.json"

    def stage(self, n: int) -> ModelFolder:
        """Stage ``n`` (1, 2) of a cascade: a model folder of its own."""
        return ModelFolder(self.root / f"stage_{int(n)}")

    @property
    def cache(self) -> Path:
        """The training loader's default disk cache."""
        return self.root / "cache"

    def result(self, which: str) -> Path:
        """What the ``train`` call for ``which`` (``cv``, ``fold_0_1``) returned."""
        return self.root / f"result_{which}.json"

    @property
    def run_files(self) -> tuple[Path, ...]:
        """The files a training run writes before its first fold: config, plan, splits."""
        return (self.config, self.plan, self.splits)

    # ---- folds ------------------------------------------------------------------------------
    def fold(self, fold: Fold) -> FoldFolder:
        return FoldFolder(fold, self.root / fold_dir_name(fold))

    def cv_folds(self) -> list[int]:
        """The cross-validation fold folders present (``fold_0``, ``fold_1``, ...), in
        numeric order."""
        found = [
            int(d.name[5:]) for d in self.root.glob("fold_*") if d.is_dir() and d.name[5:].isdigit()
        ]
        return sorted(found)

    def folds(self) -> list[Fold]:
        """The folds a prediction ensembles by default: every cross-validation fold when
        there are any, else ``all`` when ``fold_all/`` exists, else none."""
        cv: list[Fold] = list(self.cv_folds())
        if cv:
            return cv
        return ["all"] if self.fold("all").dir.is_dir() else []

    def checkpoint(self, fold: Fold, which: str = "last") -> Path:
        return self.fold(fold).checkpoint(which)

    def has_checkpoint(self) -> bool:
        """True when any fold (or the folder itself) holds a saved checkpoint: then the
        folder's config, plan and splits belong to that run and are never replaced."""
        names = set(CHECKPOINT_FILES.values())
        if any((self.root / n).is_file() for n in names):
            return True
        return any((d / n).is_file() for d in self.root.glob("fold_*") if d.is_dir() for n in names)

    def checkpoints(self, folds: list[Fold] | None = None, which: str = "last") -> list[Path]:
        """The checkpoint files of ``folds`` (default: :meth:`folds`; a folder holding a
        checkpoint directly: that one).

        Raises :class:`ConfigError` for an unknown ``which`` and :class:`InputError` naming
        the folder and the missing file."""
        name = CHECKPOINT_FILES[check_which(which)]
        if folds is None and (self.root / name).is_file():
            return [self.root / name]
        chosen = self.folds() if folds is None else list(folds)
        if not chosen:
            raise InputError(self.root, f"expected fold_*/{name} in the model folder, found none")
        files = [self.checkpoint(f, which) for f in chosen]
        missing = [f for f in files if not f.is_file()]
        if missing:
            raise InputError(missing[0], f"{which} checkpoint not found in the model folder")
        return files

    # ---- contents ---------------------------------------------------------------------------
    @property
    def label_names(self) -> dict[int, str]:
        """The label names of the model's plan (``plan.yaml``)."""
        from medseg.plan.files import load_plan

        return dict(load_plan(self.plan).label_names)

    def load_postprocessing(self) -> Postprocessing | None:
        """The post-processing chosen by cross-validation, or ``None`` when none was."""
        from medseg.postprocess import load_postprocessing

        return load_postprocessing(self.postprocessing) if self.postprocessing.is_file() else None


def open_model_folder(path: str | Path) -> ModelFolder:
    """The medseg model folder at ``path`` (:class:`InputError` when it is not a folder)."""
    root = Path(path)
    if not root.is_dir():
        raise InputError(
            root,
            "expected a model folder (fold_K/ with checkpoints), found "
            + ("a file" if root.exists() else "nothing"),
        )
    return ModelFolder(root)


__all__ = [
    "CHECKPOINT_FILES",
    "Fold",
    "FoldFolder",
    "ModelFolder",
    "ModelFolderLike",
    "Which",
    "check_which",
    "fold_dir_name",
    "open_model_folder",
]
