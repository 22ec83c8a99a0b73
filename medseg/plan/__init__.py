"""The experiment plan: records (:mod:`.schema`), ``plan.yaml`` files (:mod:`.files`), the
dataset fingerprint (:mod:`.fingerprint`) and the planning rules (:mod:`.rules`).

A :class:`Plan` is stored as readable YAML (``plan.yaml``) that training and inference consume
and that users may edit; :func:`plan_dataset` derives one from a dataset with documented,
nnU-Net-like rules, recording the reason for every choice in ``Plan.notes``.

The names below are re-exported lazily: importing ``medseg.plan.schema`` (as the transforms
do) does not load the planner, which reads datasets and sits above the transforms.
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
    from medseg.plan.fingerprint import check_plan_fits_dataset, collect_fingerprint
    from medseg.plan.rules import (
        choose_patch_and_batch,
        choose_target_spacing,
        estimate_vram_gb,
        explain_plan,
        network_topology,
        plan_dataset,
        plan_from_fingerprint,
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
    "collect_fingerprint": "fingerprint",
    "check_plan_fits_dataset": "fingerprint",
    "choose_patch_and_batch": "rules",
    "choose_target_spacing": "rules",
    "estimate_vram_gb": "rules",
    "explain_plan": "rules",
    "network_topology": "rules",
    "plan_dataset": "rules",
    "plan_from_fingerprint": "rules",
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
    "check_plan_fits_dataset",
    "choose_patch_and_batch",
    "choose_target_spacing",
    "collect_fingerprint",
    "estimate_vram_gb",
    "explain_plan",
    "load_augmentation",
    "load_plan",
    "network_topology",
    "plan_dataset",
    "plan_from_dict",
    "plan_from_fingerprint",
    "plan_to_yaml",
    "save_plan",
]
assert sorted(__all__) == sorted(_EXPORTS)
