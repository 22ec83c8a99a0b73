"""An nnU-Net v2 trained model folder, read without nnU-Net: detection, ``plans.json`` and
``dataset.json`` (the configuration with its inheritance resolved, the labels), the fold
checkpoints (read with ``torch.load(weights_only=True)`` and a small allow-list of types) and
the folder's ``postprocessing.json``.

The layout (nnU-Net's ``nnUNet_results/DatasetXXX_Name/TRAINER__PLANS__CONFIGURATION/``)::

    plans.json  dataset.json  fold_0/checkpoint_final.pth  fold_0/checkpoint_best.pth  ...
    [postprocessing.json | crossval_results_folds_0_1_2_3_4/postprocessing.json]

``postprocessing.pkl`` is never read: medseg unpickles no user file.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medseg.errors import ConfigError, InputError

#: nnU-Net's checkpoint file names, by medseg's ``checkpoint`` choice (``last`` is medseg's
#: name for the final weights, accepted so that one default serves both kinds of folder).
CHECKPOINT_FILES = {
    "final": "checkpoint_final.pth",
    "last": "checkpoint_final.pth",
    "best": "checkpoint_best.pth",
}


def _fold_dirs(root: Path) -> list[Path]:
    return [d for d in sorted(root.glob("fold_*")) if d.is_dir()]


def is_nnunet_folder(path: str | Path) -> bool:
    """True when ``path`` is an nnU-Net v2 trained model folder: a directory with
    ``plans.json``, ``dataset.json`` and at least one ``fold_K/checkpoint_final.pth`` or
    ``fold_K/checkpoint_best.pth``."""
    root = Path(path)
    if not (root.is_dir() and (root / "plans.json").is_file()):
        return False
    if not (root / "dataset.json").is_file():
        return False
    names = {CHECKPOINT_FILES["final"], CHECKPOINT_FILES["best"]}
    return any((d / n).is_file() for d in _fold_dirs(root) for n in names)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(path, f"expected a JSON file, could not read it ({exc})") from None
    if not isinstance(doc, dict):
        raise InputError(path, f"expected a JSON object, found {type(doc).__name__}")
    return doc


def resolve_configuration(plans: dict[str, Any], name: str, plans_path: Path) -> dict[str, Any]:
    """The configuration ``name`` of nnU-Net's plans with ``inherits_from`` resolved (the
    child's keys override its parent's, recursively, as nnU-Net's ``PlansManager``)."""
    configs = plans.get("configurations")
    if not isinstance(configs, dict) or name not in configs:
        found = sorted(configs) if isinstance(configs, dict) else []
        raise InputError(plans_path, f"expected configuration {name!r}, found {found}")
    seen: list[str] = []
    chain = []
    current: str | None = name
    while current is not None:
        if current in seen:
            raise InputError(plans_path, f"configurations inherit in a cycle: {seen}")
        if current not in configs:
            raise InputError(plans_path, f"{seen[-1]} inherits from unknown {current!r}")
        seen.append(current)
        chain.append(configs[current])
        current = configs[current].get("inherits_from")
    out: dict[str, Any] = {}
    for cfg in reversed(chain):
        out.update(cfg)
    out.pop("inherits_from", None)
    return out


def read_postprocessing_json(path: Path) -> list[tuple[str, Any]]:
    """nnU-Net's ``postprocessing.json`` as ``[(function name, labels_or_regions), ...]``
    (only ``remove_all_but_largest_component_from_segmentation`` exists in nnU-Net v2)."""
    doc = _read_json(path)
    fns, kwargs = doc.get("postprocessing_fns"), doc.get("postprocessing_kwargs")
    if not isinstance(fns, list) or not isinstance(kwargs, list) or len(fns) != len(kwargs):
        raise InputError(
            path, "expected lists postprocessing_fns and postprocessing_kwargs of equal length"
        )
    steps = []
    for fn, kw in zip(fns, kwargs, strict=True):
        if fn != "remove_all_but_largest_component_from_segmentation":
            raise InputError(path, f"unknown nnU-Net post-processing function {fn!r}")
        if not isinstance(kw, dict) or set(kw) != {"labels_or_regions"}:
            raise InputError(path, f"expected kwargs {{'labels_or_regions': ...}}, found {kw}")
        steps.append((str(fn), kw["labels_or_regions"]))
    return steps


@dataclass(frozen=True)
class NnunetFolder:
    """The parsed files of an nnU-Net v2 model folder.

    Attributes:
        root: the folder.
        plans: ``plans.json`` as read.
        dataset: ``dataset.json`` as read.
        checkpoints: the checkpoint files chosen (one per fold).
        folds: the fold names (``"0"``, ``"all"``, ...), in the order of ``checkpoints``.
        checkpoint: ``"final"`` or ``"best"``.
        postprocessing_file: the ``postprocessing.json`` that applies, or ``None``.
    """

    root: Path
    plans: dict[str, Any]
    dataset: dict[str, Any]
    checkpoints: tuple[Path, ...]
    folds: tuple[str, ...]
    checkpoint: str
    postprocessing_file: Path | None


def open_nnunet_folder(
    path: str | Path, *, folds: Sequence[int | str] | None = None, checkpoint: str = "final"
) -> NnunetFolder:
    """Read an nnU-Net v2 model folder and choose its checkpoints.

    Args:
        path: the ``TRAINER__PLANS__CONFIGURATION`` folder.
        folds: folds to ensemble (``[0, 2]``, ``["all"]``); default: every ``fold_K`` with the
            checkpoint, ``fold_all`` excluded when there are numbered folds (as nnU-Net).
        checkpoint: ``"final"`` (``checkpoint_final.pth``; ``"last"`` is a synonym) or
            ``"best"`` (``checkpoint_best.pth``).

    Raises :class:`InputError` naming the file that is missing or malformed.
    """
    root = Path(path)
    if checkpoint not in CHECKPOINT_FILES:
        raise ConfigError(f"checkpoint: expected final or best, found {checkpoint!r}")
    if not is_nnunet_folder(root):
        raise InputError(
            root,
            "expected an nnU-Net v2 model folder (plans.json, dataset.json, "
            "fold_K/checkpoint_final.pth)",
        )
    name = CHECKPOINT_FILES[checkpoint]
    if folds is None:
        found = [d.name[5:] for d in _fold_dirs(root) if (d / name).is_file()]
        numbered = sorted((f for f in found if f.isdigit()), key=int)
        chosen = numbered or [f for f in found if f == "all"]
        if not chosen:
            raise InputError(root, f"expected fold_K/{name}, found none")
    else:
        chosen = [str(f) for f in folds]
    missing = [
        root / f"fold_{f}" / name for f in chosen if not (root / f"fold_{f}" / name).is_file()
    ]
    if missing:
        raise InputError(missing[0], f"{checkpoint} checkpoint not found in the model folder")
    pp = root / "postprocessing.json"
    if not pp.is_file():
        pp = root / f"crossval_results_folds_{'_'.join(chosen)}" / "postprocessing.json"
    return NnunetFolder(
        root=root,
        plans=_read_json(root / "plans.json"),
        dataset=_read_json(root / "dataset.json"),
        checkpoints=tuple(root / f"fold_{f}" / name for f in chosen),
        folds=tuple(chosen),
        checkpoint="best" if checkpoint == "best" else "final",
        postprocessing_file=pp if pp.is_file() else None,
    )


__all__ = [
    "CHECKPOINT_FILES",
    "NnunetFolder",
    "is_nnunet_folder",
    "open_nnunet_folder",
    "read_postprocessing_json",
    "resolve_configuration",
]
