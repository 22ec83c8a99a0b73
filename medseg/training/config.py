"""The training configuration: a validated pydantic model loaded from YAML (or built in code).

A config file names the plan written by ``medseg plan`` (``plan: path/to/plan.yaml``) and the
training recipe; unknown keys and bad values are refused with the key path in the message
(``"configs/x.yaml: optimizer.lr: Input should be greater than 0 (found -1)"``). ``medseg train``
also accepts a plan file directly: it is then trained with the default recipe. A recipe may
change the plan it trains (``plan_overrides``: spacing, patch and batch size, network,
augmentation), so a preset reproduces from the command line alone.

Every field has a documented default; see ``configs/*.yaml`` for annotated examples. Numbers
and switches are strict: ``epochs: true`` or ``epochs: "10"`` is refused, not read as 1 or 10
(an integer field takes integers, a real-valued field integers or reals, a switch true/false).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from medseg.config import format_validation_error, read_yaml_mapping
from medseg.errors import ConfigError
from medseg.plan.schema import Architecture, AugmentationPlan, RoiPlan

#: Top-level config fields that only change how fast or how verbosely a run goes, not its
#: result (with ``data.num_workers``, ``data.cache_dir`` and ``plan``:
#: :data:`medseg.training.setup.RUNTIME_FIELDS`).
RUNTIME_KEYS = ("device", "progress_bar", "num_threads", "compile", "channels_last")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class OptimizerConfig(_Strict):
    """``sgd``: SGD with Nesterov momentum and poly decay ``lr * (1 - epoch/epochs)**0.9``
    (nnU-Net); ``adamw``: AdamW with cosine annealing to 0."""

    name: Literal["sgd", "adamw"] = "sgd"
    lr: StrictFloat = Field(default=1e-2, gt=0)
    momentum: StrictFloat = Field(default=0.99, ge=0, lt=1)
    nesterov: StrictBool = True
    weight_decay: StrictFloat = Field(default=3e-5, ge=0)
    schedule: Literal["poly", "cosine", "constant"] | None = Field(
        default=None, description="default: poly for sgd, cosine for adamw"
    )
    poly_power: StrictFloat = Field(default=0.9, gt=0)
    grad_clip: StrictFloat | None = Field(default=12.0, gt=0)

    def resolved_schedule(self) -> str:
        if self.schedule is not None:
            return self.schedule
        return "poly" if self.name == "sgd" else "cosine"


class LossConfig(_Strict):
    """Dice + cross-entropy (MONAI ``DiceCELoss``, softmax, background included in CE only).
    With deep supervision the heads are weighted 1, 1/2, 1/4, ... (normalised)."""

    dice_weight: StrictFloat = Field(default=1.0, ge=0)
    ce_weight: StrictFloat = Field(default=1.0, ge=0)
    batch_dice: StrictBool = True


class NetworkOverrides(_Strict):
    """Changes to the plan's network (:class:`~medseg.plan.schema.NetworkSpec`; unset fields
    keep the plan's value). ``base_filters`` (with optional ``max_filters``) is a shorthand for
    ``filters = [min(base * 2**stage, max_filters) for each stage]``."""

    architecture: Architecture | None = None
    deep_supervision: StrictBool | None = None
    deep_supr_num: StrictInt | None = Field(default=None, ge=1)
    filters: list[StrictInt] | None = None
    base_filters: StrictInt | None = Field(default=None, ge=1)
    max_filters: StrictInt | None = Field(default=None, ge=1)
    norm: Literal["instance", "batch"] | None = None
    dropout: StrictFloat | None = Field(default=None, ge=0, lt=1)

    @model_validator(mode="after")
    def _check(self) -> NetworkOverrides:
        if self.filters is not None and self.base_filters is not None:
            raise ValueError("give either filters or base_filters, not both")
        return self


class PlanOverrides(_Strict):
    """Changes a recipe makes to the plan it trains (unset fields keep the plan's value), so
    a preset in ``configs/`` can be reproduced from the command line alone.

    Changing ``target_spacing`` changes the preprocessing (and the cache folder). Changing
    ``target_spacing`` or ``patch_size`` re-derives the network topology for the new patch
    and spacing with the planner's rule (:func:`medseg.planning.rules.network_topology`); the
    ``network`` overrides then apply on top. ``augmentation`` names fields of
    :class:`~medseg.plan.schema.AugmentationPlan` to change.
    """

    target_spacing: tuple[StrictFloat, StrictFloat, StrictFloat] | None = None
    patch_size: tuple[StrictInt, StrictInt, StrictInt] | None = None
    batch_size: StrictInt | None = Field(default=None, ge=1)
    foreground_ratio: float | None = Field(default=None, ge=0, le=1)
    network: NetworkOverrides = Field(default_factory=NetworkOverrides)
    augmentation: dict[str, Any] = Field(default_factory=dict)
    roi: RoiPlan | None = Field(
        default=None, description="patches and predictions around the foreground's box (stage 2)"
    )

    @model_validator(mode="after")
    def _check(self) -> PlanOverrides:
        if self.target_spacing is not None and any(not s > 0 for s in self.target_spacing):
            raise ValueError(f"target_spacing: expected positive mm, found {self.target_spacing}")
        if self.patch_size is not None and any(p < 1 for p in self.patch_size):
            raise ValueError(f"patch_size: expected positive voxels, found {self.patch_size}")
        return self

    @field_validator("augmentation")
    @classmethod
    def _check_augmentation(cls, v: dict[str, Any]) -> dict[str, Any]:
        try:  # names and values checked at load, not when training starts
            AugmentationPlan.model_validate(v)
        except ValidationError as exc:
            raise ValueError(format_validation_error("augmentation", exc, "fields")) from None
        return v


class DataConfig(_Strict):
    """Where the cases come from, how folds are made, and the training loader.

    Splits: ``splits`` names a splits file; otherwise the ``splits.json`` that ``medseg plan``
    wrote beside the plan is used when it exists; setting ``n_folds`` or ``split_seed`` is an
    explicit choice of new splits instead (``make_splits``); with none of these, 5 folds with
    seed 0. A model folder keeps the splits it was started with (``OUT/splits.json``).
    """

    dataset: Path | None = Field(default=None, description="default: the plan's dataset")
    splits: Path | None = Field(default=None, description="splits JSON (see above)")
    n_folds: StrictInt | None = Field(default=None, ge=2)
    split_seed: StrictInt | None = Field(default=None, ge=0)
    cache_dir: Path | None = Field(default=None, description="default: OUT/cache")
    num_workers: StrictInt = Field(default=0, ge=0)
    augment: StrictBool = Field(default=True, description="apply the plan's augmentation")


class CascadeConfig(_Strict):
    """A coarse-to-fine cascade (:mod:`medseg.inference.cascade`): ``coarse`` names the first
    stage's recipe (a config file; a relative path is relative to this config's folder). The first
    stage trains this config's plan and data (the coarse recipe's own ``plan`` and ``data``
    are replaced, so both stages see the same cases and splits) with the coarse recipe's
    training settings and ``plan_overrides``. The rest of this config is the second stage,
    trained around the reference foreground's box (``plan.roi``: ``margin_mm``,
    ``jitter_mm``) and predicting inside the first stage's box."""

    coarse: Path
    margin_mm: StrictFloat = Field(default=10.0, ge=0)
    jitter_mm: StrictFloat = Field(default=10.0, ge=0)
    init_from_coarse: StrictBool = Field(
        default=False,
        description="stage 2's fold K starts from stage 1's fold K (same network required)",
    )


class TrainConfig(_Strict):
    """A complete training recipe (see module docstring)."""

    plan: Path | None = Field(default=None, description="plan file written by `medseg plan`")
    epochs: StrictInt = Field(default=1000, ge=1)
    iterations_per_epoch: StrictInt = Field(default=250, ge=1)
    val_every: StrictInt = Field(default=10, ge=1, description="validate every N epochs (and last)")
    val_max_cases: StrictInt | None = Field(default=None, ge=1)
    final_hd95: StrictBool = True
    overlap: StrictFloat = Field(default=0.5, ge=0, lt=1)
    seed: StrictInt = 0
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="auto: cuda when available, else cpu (logged)"
    )
    amp: Literal["auto", "none", "bf16", "fp16"] = Field(
        default="auto",
        description="auto: bf16 on a GPU that supports it, else fp16 on GPU, none on CPU",
    )
    compile: StrictBool = False
    channels_last: StrictBool = False
    deterministic: StrictBool = False
    num_threads: StrictInt | None = Field(default=None, ge=1)
    progress_bar: StrictBool = True
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    plan_overrides: PlanOverrides = Field(default_factory=PlanOverrides)
    data: DataConfig = Field(default_factory=DataConfig)
    cascade: CascadeConfig | None = Field(
        default=None, description="train a two-stage cascade (this config is stage 2)"
    )
    init_weights: Path | None = Field(
        default=None,
        description="start from these weights instead of random ones (fine-tuning): a "
        "checkpoint file for every fold, or a model folder (fold K from its fold K)",
    )

    def resolved(self) -> dict[str, Any]:
        """JSON-compatible dict of every field (saved in checkpoints and ``config.json``)."""
        return self.model_dump(mode="json")


def validate_config(data: Any, source: str = "<config>") -> TrainConfig:
    """Validate a mapping into a :class:`TrainConfig`; :class:`ConfigError` names every bad key."""
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: expected a mapping at the top level, found {type(data).__name__}"
        )
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(source, exc, "training config")) from exc


def override_config(cfg: TrainConfig, **changes: Any) -> TrainConfig:
    """``cfg`` with top-level fields replaced (e.g. ``epochs=9, device="cpu"``), validated as a
    config file is: a bad value is a :class:`ConfigError` whose ``param`` is the field
    (``"epochs: Input should be greater than or equal to 1 (found -5)"``)."""
    try:
        return TrainConfig.model_validate({**cfg.model_dump(), **changes})
    except ValidationError as exc:
        err = exc.errors()[0]
        key = str(err["loc"][0]) if err["loc"] else "<config>"
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        found = f" (found {err.get('input')!r})" if err["type"] != "missing" else ""
        raise ConfigError(f"{key}: {msg}{found}", param=key) from None


def is_plan_mapping(data: Any) -> bool:
    """True when ``data`` looks like a plan written by ``medseg plan`` rather than a config."""
    return (
        isinstance(data, dict)
        and "patch_size" in data
        and ("preprocessing" in data or "target_spacing" in data)
    )


def read_mapping(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON file into a mapping (errors name the file)."""
    return read_yaml_mapping(path, "config or plan file")


def load_train_config(path: str | Path) -> TrainConfig:
    """Load a training config YAML, or a plan file (then the default recipe trains that plan).

    Relative ``plan``, ``data.dataset``, ``data.splits`` and ``data.cache_dir`` paths are
    resolved against the config file's folder.
    """
    p = Path(path).resolve()
    data = read_mapping(p)
    if is_plan_mapping(data):
        return TrainConfig(plan=p)
    cfg = validate_config(data, str(p))
    base = p.parent
    if cfg.plan is not None and not cfg.plan.is_absolute():
        cfg.plan = (base / cfg.plan).resolve()
    if cfg.init_weights is not None and not cfg.init_weights.is_absolute():
        cfg.init_weights = (base / cfg.init_weights).resolve()
    for key in ("dataset", "splits", "cache_dir"):
        v = getattr(cfg.data, key)
        if v is not None and not Path(v).is_absolute():
            setattr(cfg.data, key, (base / v).resolve())
    if cfg.cascade is not None and not cfg.cascade.coarse.is_absolute():
        cfg.cascade.coarse = (base / cfg.cascade.coarse).resolve()
    return cfg


__all__ = [
    "RUNTIME_KEYS",
    "CascadeConfig",
    "DataConfig",
    "LossConfig",
    "NetworkOverrides",
    "OptimizerConfig",
    "PlanOverrides",
    "TrainConfig",
    "is_plan_mapping",
    "load_train_config",
    "override_config",
    "read_mapping",
    "validate_config",
]
