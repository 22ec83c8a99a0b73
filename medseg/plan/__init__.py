"""The experiment plan as records (:mod:`.schema`) and ``plan.yaml`` files (:mod:`.files`).

A :class:`Plan` is stored as readable YAML (``plan.yaml``) that training and inference consume
and that users may edit. The planner that derives one from a dataset (the fingerprint and the
nnU-Net-like rules) is :mod:`medseg.planning`, a layer above: the transforms and the training
use these records without loading the planner.

The names below are re-exported lazily, so importing :mod:`medseg.plan.schema` (as the
transforms do) loads neither the YAML files module nor the readers it writes through.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the real names, for type checkers
    from medseg.plan.files import (
        load_augmentation,
        load_plan,
        plan_from_dict,
        plan_to_yaml,
        save_plan,
    )
    from medseg.plan.schema import (
        AugmentationPlan,
        ChannelNormalization,
        ChannelStats,
        Fingerprint,
        NetworkSpec,
        Plan,
        Preprocessing,
    )

_EXPORTS: dict[str, str] = {
    "AugmentationPlan": "schema",
    "ChannelNormalization": "schema",
    "ChannelStats": "schema",
    "Fingerprint": "schema",
    "NetworkSpec": "schema",
    "Plan": "schema",
    "Preprocessing": "schema",
    "load_augmentation": "files",
    "load_plan": "files",
    "plan_from_dict": "files",
    "plan_to_yaml": "files",
    "save_plan": "files",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"medseg.plan.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'medseg.plan' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(_EXPORTS)


__all__ = [
    "AugmentationPlan",
    "ChannelNormalization",
    "ChannelStats",
    "Fingerprint",
    "NetworkSpec",
    "Plan",
    "Preprocessing",
    "load_augmentation",
    "load_plan",
    "plan_from_dict",
    "plan_to_yaml",
    "save_plan",
]
