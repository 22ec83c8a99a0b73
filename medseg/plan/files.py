"""``plan.yaml`` on disk: validation with key paths in the errors, readable YAML, atomic writes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from medseg.config import format_validation_error, read_yaml_mapping
from medseg.errors import ConfigError
from medseg.io.atomic import atomic_write_text
from medseg.plan.schema import AugmentationPlan, Plan


def default_deep_supervision(n_stages: int) -> dict[str, Any]:
    """Deep-supervision settings a plan gets by default for a ``n_stages`` DynUNet: two extra
    heads when the network has at least 4 stages, one with 3, none with 2."""
    if n_stages < 3:
        return {"deep_supervision": False, "deep_supr_num": 1}
    return {"deep_supervision": True, "deep_supr_num": min(2, n_stages - 2)}


def plan_from_dict(data: Any, source: str | Path = "<plan>") -> Plan:
    """Validate a mapping into a :class:`Plan` (:class:`ConfigError` names the key path)."""
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: expected a mapping at the top level, found {type(data).__name__}"
        )
    try:
        return Plan.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(source, exc, "plan")) from exc


def load_plan(path: str | Path) -> Plan:
    """Read and validate ``plan.yaml`` (a folder is accepted: ``<folder>/plan.yaml``).

    Raises:
        InputError: the file is missing or unreadable.
        ConfigError: bad YAML, unknown keys or bad values (the message names the key path,
            e.g. ``augmentation.flip_prob``).
    """
    p = Path(path)
    if p.is_dir():
        p = p / "plan.yaml"
    return plan_from_dict(read_yaml_mapping(p, "plan"), p)


def _int_keys(obj: Any) -> Any:
    """JSON dumps turn ``{1: ...}`` keys into ``"1"``; give YAML its integer keys back."""
    if isinstance(obj, dict):
        return {
            (int(k) if isinstance(k, str) and k.lstrip("-").isdigit() else k): _int_keys(v)
            for k, v in obj.items()
        }
    if isinstance(obj, list):
        return [_int_keys(v) for v in obj]
    return obj


def load_augmentation(path: str | Path) -> AugmentationPlan:
    """Read an augmentation YAML (the keys of :class:`AugmentationPlan`; see
    ``configs/augmentation_default.yaml``); :class:`ConfigError` names the bad key."""
    p = Path(path)
    data = read_yaml_mapping(p, "augmentation config")
    try:
        return AugmentationPlan.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(p, exc, "augmentation config")) from exc


def plan_to_yaml(plan: Plan) -> str:
    """The plan as readable YAML (keys in model order)."""
    data = _int_keys(plan.model_dump(mode="json", exclude_none=True))
    header = (
        "# medseg plan: edit freely; validated when loaded (unknown keys are errors).\n"
        "# Per-axis values refer to array axes after reorientation to closest-canonical RAS.\n"
    )
    return header + yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=100)


def save_plan(plan: Plan, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write the plan as YAML atomically (a folder is accepted: ``<folder>/plan.yaml``)."""
    p = Path(path)
    if p.is_dir() or p.suffix == "":
        p = p / "plan.yaml"
    return atomic_write_text(p, plan_to_yaml(plan), overwrite=overwrite)


__all__ = [
    "default_deep_supervision",
    "load_augmentation",
    "load_plan",
    "plan_from_dict",
    "plan_to_yaml",
    "save_plan",
]
