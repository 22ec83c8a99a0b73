"""The training configuration: a validated pydantic model loaded from YAML (or built in code).

A config file names the plan written by ``medseg plan`` (``plan: path/to/plan.json``) and the
training recipe; unknown keys and bad values are refused with the key path in the message
(``"configs/x.yaml: optimizer.lr: Input should be greater than 0 (found -1)"``). ``medseg train``
also accepts a plan file directly: it is then trained with the default recipe.

Every field has a documented default; see ``configs/*.yaml`` for annotated examples.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from medseg.config import read_yaml_mapping
from medseg.errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class OptimizerConfig(_Strict):
    """``sgd``: SGD with Nesterov momentum and poly decay ``lr * (1 - epoch/epochs)**0.9``
    (nnU-Net); ``adamw``: AdamW with cosine annealing to 0."""

    name: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(default=1e-2, gt=0)
    momentum: float = Field(default=0.99, ge=0, lt=1)
    nesterov: bool = True
    weight_decay: float = Field(default=3e-5, ge=0)
    schedule: Literal["poly", "cosine", "constant"] | None = Field(
        default=None, description="default: poly for sgd, cosine for adamw"
    )
    poly_power: float = Field(default=0.9, gt=0)
    grad_clip: float | None = Field(default=12.0, gt=0)

    def resolved_schedule(self) -> str:
        if self.schedule is not None:
            return self.schedule
        return "poly" if self.name == "sgd" else "cosine"


class LossConfig(_Strict):
    """Dice + cross-entropy (MONAI ``DiceCELoss``, softmax, background included in CE only).
    With deep supervision the heads are weighted 1, 1/2, 1/4, ... (normalised)."""

    dice_weight: float = Field(default=1.0, ge=0)
    ce_weight: float = Field(default=1.0, ge=0)
    batch_dice: bool = True


class NetworkConfig(_Strict):
    """Which MONAI network; topology (kernels, strides, filters) comes from the plan unless
    ``filters`` overrides the channel counts (same number of stages)."""

    architecture: Literal["dynunet", "unet", "segresnet"] = "dynunet"
    deep_supervision: bool = True
    filters: list[int] | None = None
    base_filters: int | None = Field(
        default=None, ge=1, description="filters = base * 2**stage (capped by max_filters)"
    )
    max_filters: int | None = Field(default=None, ge=1)
    dropout: float = Field(default=0.0, ge=0, lt=1)


class DataConfig(_Strict):
    """Where the cases come from and how folds are made."""

    dataset: Path | None = Field(default=None, description="default: the plan's dataset_root")
    splits: Path | None = Field(default=None, description="splits JSON; default: made and saved")
    n_folds: int = Field(default=5, ge=2)
    split_seed: int = 0
    cache_dir: Path | None = Field(default=None, description="default: OUT/cache")
    num_workers: int = Field(default=0, ge=0)
    patch_size: list[int] | None = Field(default=None, description="override the plan's")
    batch_size: int | None = Field(default=None, ge=1, description="override the plan's")
    foreground_ratio: float | None = Field(default=None, ge=0, le=1)
    loader: Literal["medseg", "builtin"] = Field(
        default="medseg",
        description="medseg: medseg.loader.make_train_loader (disk cache + augmentation); "
        "builtin: random patches with foreground oversampling, no augmentation",
    )


class TrainConfig(_Strict):
    """A complete training recipe (see module docstring)."""

    plan: Path | None = Field(default=None, description="plan file written by `medseg plan`")
    epochs: int = Field(default=1000, ge=1)
    iterations_per_epoch: int = Field(default=250, ge=1)
    val_every: int = Field(default=10, ge=1, description="validate every N epochs (and last)")
    val_max_cases: int | None = Field(default=None, ge=1)
    final_hd95: bool = True
    overlap: float = Field(default=0.5, ge=0, lt=1)
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="auto: cuda when available, else cpu (logged)"
    )
    amp: Literal["auto", "none", "bf16", "fp16"] = Field(
        default="auto",
        description="auto: bf16 on a GPU that supports it, else fp16 on GPU, none on CPU",
    )
    compile: bool = False
    channels_last: bool = False
    deterministic: bool = False
    num_threads: int | None = Field(default=None, ge=1)
    progress_bar: bool = True
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    network: NetworkConfig = Field(default_factory=NetworkConfig)
    data: DataConfig = Field(default_factory=DataConfig)

    def resolved(self) -> dict[str, Any]:
        """JSON-compatible dict of every field (saved in checkpoints and ``config.json``)."""
        return self.model_dump(mode="json")


def _format_errors(exc: ValidationError, source: str) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "<root>"
        found = err.get("input")
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"{source}: {loc}: {msg} (found {found!r})")
    return "\n".join(lines)


def validate_config(data: Any, source: str = "<config>") -> TrainConfig:
    """Validate a mapping into a :class:`TrainConfig`; :class:`ConfigError` names every bad key."""
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: expected a mapping at the top level, found {type(data).__name__}"
        )
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, source)) from exc


def is_plan_mapping(data: Any) -> bool:
    """True when ``data`` looks like a plan written by ``medseg plan`` rather than a config."""
    return isinstance(data, dict) and "target_spacing" in data and "patch_size" in data


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
    for key in ("dataset", "splits", "cache_dir"):
        v = getattr(cfg.data, key)
        if v is not None and not Path(v).is_absolute():
            setattr(cfg.data, key, (base / v).resolve())
    return cfg


__all__ = [
    "DataConfig",
    "LossConfig",
    "NetworkConfig",
    "OptimizerConfig",
    "TrainConfig",
    "is_plan_mapping",
    "load_train_config",
    "read_mapping",
    "validate_config",
]
