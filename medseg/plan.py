"""The experiment plan: what preprocessing, patch/batch size, network and augmentation to use.

A :class:`Plan` is a pydantic v2 model (unknown keys refused, values validated) stored as
readable YAML (``plan.yaml``) that training and inference consume and that users may edit.
:func:`plan_dataset` derives one from a dataset fingerprint (:mod:`medseg.fingerprint` logic
lives in :func:`collect_fingerprint` here) with documented, nnU-Net-like rules; every choice is
recorded in ``Plan.notes`` and printed by :func:`explain_plan`.

Geometry convention: all per-axis values in a plan (``target_spacing``, ``patch_size``,
``network.strides``/``kernel_sizes``) refer to the array axes **after reorientation to the
closest canonical RAS orientation** (see :mod:`medseg.transforms.spatial`): axis 0 runs to the
patient's Right, 1 Anterior, 2 Superior.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from medseg.datasets import Dataset
from medseg.errors import ConfigError, InputError
from medseg.io.atomic import atomic_write_text

PLAN_VERSION = 1

Triple = tuple[float, float, float]
IntTriple = tuple[int, int, int]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ChannelNormalization(_Strict):
    """How one input channel is normalised (applied after cropping, before resampling).

    Schemes:

    * ``"ct"``: clip to ``[clip_low, clip_high]`` (dataset foreground percentiles 0.5/99.5),
      then ``(x - mean) / std`` with dataset foreground statistics (HU-based, same for all
      images).
    * ``"zscore"``: per image ``(x - mean) / std`` over the mask (the non-zero region when
      ``use_nonzero_mask``, else all voxels); outside the mask the output is 0.
    * ``"percentile"``: per image, clip to its ``[percentile_low, percentile_high]``
      percentiles and scale linearly to [0, 1].
    * ``"window"``: clip to the fixed ``[clip_low, clip_high]`` (e.g. a CT window in HU) and
      scale linearly to [0, 1].
    """

    channel: str
    scheme: Literal["ct", "zscore", "percentile", "window"]
    clip_low: float | None = None
    clip_high: float | None = None
    mean: float | None = None
    std: float | None = Field(default=None, gt=0)
    use_nonzero_mask: bool = False
    percentile_low: float | None = Field(default=None, ge=0, le=100)
    percentile_high: float | None = Field(default=None, ge=0, le=100)

    @model_validator(mode="after")
    def _check_scheme(self) -> ChannelNormalization:
        need: dict[str, tuple[str, ...]] = {
            "ct": ("clip_low", "clip_high", "mean", "std"),
            "zscore": (),
            "percentile": ("percentile_low", "percentile_high"),
            "window": ("clip_low", "clip_high"),
        }
        missing = [k for k in need[self.scheme] if getattr(self, k) is None]
        if missing:
            raise ValueError(f"scheme '{self.scheme}' needs {', '.join(missing)}")
        if self.scheme in ("ct", "window") and not self.clip_low < self.clip_high:  # type: ignore[operator]
            raise ValueError(f"clip_low ({self.clip_low}) must be < clip_high ({self.clip_high})")
        if self.scheme == "percentile" and not self.percentile_low < self.percentile_high:  # type: ignore[operator]
            raise ValueError("percentile_low must be < percentile_high")
        return self


class NetworkPlan(_Strict):
    """U-Net topology (one entry per resolution stage, first stage first).

    ``strides[0]`` is ``[1, 1, 1]`` (no downsampling at the input stage); stage ``s`` downsamples
    by ``strides[s]`` per axis. ``filters[s]`` is the number of feature maps at stage ``s``.
    Maps directly onto MONAI's ``DynUNet(kernel_size=..., strides=..., filters=...)``.
    """

    kernel_sizes: list[list[int]]
    strides: list[list[int]]
    filters: list[int]

    @model_validator(mode="after")
    def _check(self) -> NetworkPlan:
        n = len(self.filters)
        if n < 2 or len(self.kernel_sizes) != n or len(self.strides) != n:
            raise ValueError(
                f"kernel_sizes ({len(self.kernel_sizes)}), strides ({len(self.strides)}) and "
                f"filters ({n}) must have the same length >= 2"
            )
        for name, seq in (("kernel_sizes", self.kernel_sizes), ("strides", self.strides)):
            for i, v in enumerate(seq):
                if len(v) != 3 or any(x < 1 for x in v):
                    raise ValueError(f"{name}[{i}]: expected 3 positive ints, found {v}")
        return self

    def total_stride(self) -> IntTriple:
        """Product of strides per axis: patch sizes must be divisible by it."""
        t = [1, 1, 1]
        for s in self.strides:
            t = [a * b for a, b in zip(t, s, strict=True)]
        return (t[0], t[1], t[2])


class AugmentationPlan(_Strict):
    """Training-time augmentation: each ``*_prob`` is the per-sample probability, ranges are
    ``[low, high]`` sampled uniformly. Spatial ranges are in degrees / scale factors; intensity
    ranges act on normalised intensities."""

    rotation_prob: float = Field(default=0.2, ge=0, le=1)
    rotation_range_deg: tuple[float, float] = (-30.0, 30.0)
    #: rotate about all three axes (False: only in-plane, about axis 2, for anisotropic data)
    rotation_3d: bool = True
    scale_prob: float = Field(default=0.2, ge=0, le=1)
    scale_range: tuple[float, float] = (0.7, 1.4)
    elastic_prob: float = Field(default=0.0, ge=0, le=1)
    elastic_sigma_range: tuple[float, float] = (5.0, 8.0)
    elastic_magnitude_range: tuple[float, float] = (50.0, 150.0)
    flip_prob: float = Field(default=0.5, ge=0, le=1)
    flip_axes: list[int] = Field(default_factory=lambda: [0, 1, 2])
    noise_prob: float = Field(default=0.1, ge=0, le=1)
    noise_std_range: tuple[float, float] = (0.0, 0.1)
    blur_prob: float = Field(default=0.2, ge=0, le=1)
    blur_sigma_range: tuple[float, float] = (0.5, 1.0)
    brightness_prob: float = Field(default=0.15, ge=0, le=1)
    brightness_range: tuple[float, float] = (0.75, 1.25)
    contrast_prob: float = Field(default=0.15, ge=0, le=1)
    contrast_range: tuple[float, float] = (0.75, 1.25)
    gamma_prob: float = Field(default=0.3, ge=0, le=1)
    gamma_range: tuple[float, float] = (0.7, 1.5)
    low_resolution_prob: float = Field(default=0.25, ge=0, le=1)
    low_resolution_zoom_range: tuple[float, float] = (0.5, 1.0)

    @model_validator(mode="after")
    def _check_ranges(self) -> AugmentationPlan:
        for name, val in self:
            if name.endswith("_range") or name.endswith("_range_deg"):
                lo, hi = val
                if lo > hi:
                    raise ValueError(f"{name}: low {lo} > high {hi}")
        if any(a not in (0, 1, 2) for a in self.flip_axes):
            raise ValueError(f"flip_axes: expected values in 0..2, found {self.flip_axes}")
        return self


class ChannelStats(_Strict):
    """Foreground intensity statistics of one channel (voxels inside the label, subsampled)."""

    channel: str
    mean: float
    std: float
    median: float
    percentile_00_5: float
    percentile_99_5: float
    min: float
    max: float


class Fingerprint(_Strict):
    """Dataset summary the plan was derived from (spacings/shapes after reorientation to RAS)."""

    n_cases: int
    spacings: list[Triple]
    shapes: list[IntTriple]
    shapes_after_crop: list[IntTriple]
    median_spacing: Triple
    median_shape: IntTriple
    intensity: list[ChannelStats]
    #: per label value: median volume over the cases that contain it (mL)
    label_volume_ml_median: dict[int, float]
    #: per label value: number of cases that contain it
    label_case_count: dict[int, int]
    modalities: list[str]


class Plan(_Strict):
    """Everything training and inference need to preprocess data and build the network."""

    version: int = PLAN_VERSION
    dataset_root: str
    dataset_name: str
    channel_names: list[str]
    label_names: dict[int, str]
    #: reorientation policy; only ``"closest_canonical_ras"`` (axis permutation/flip, no
    #: interpolation) is implemented
    orientation: Literal["closest_canonical_ras"] = "closest_canonical_ras"
    target_spacing: Triple
    image_interpolation: Literal["linear", "cubic"] = "linear"
    label_interpolation: Literal["nearest", "linear_onehot"] = "nearest"
    normalization: list[ChannelNormalization]
    crop_to_nonzero: bool
    patch_size: IntTriple
    batch_size: int = Field(ge=1)
    network: NetworkPlan
    augmentation: AugmentationPlan = Field(default_factory=AugmentationPlan)
    foreground_ratio: float = Field(default=0.33, ge=0, le=1)
    gpu_memory_gb: float = Field(gt=0)
    fingerprint: Fingerprint | None = None
    notes: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> Plan:
        if any(s <= 0 for s in self.target_spacing):
            raise ValueError(f"target_spacing: expected positive mm, found {self.target_spacing}")
        if [n.channel for n in self.normalization] != list(self.channel_names):
            raise ValueError(
                f"normalization: expected one entry per channel {self.channel_names}, found "
                f"{[n.channel for n in self.normalization]}"
            )
        ts = self.network.total_stride()
        bad = [i for i in range(3) if self.patch_size[i] % ts[i]]
        if bad or any(p < 1 for p in self.patch_size):
            raise ValueError(
                f"patch_size {self.patch_size} must be divisible by the network's total stride "
                f"{ts} on every axis"
            )
        if 0 not in self.label_names:
            raise ValueError("label_names must include 0 (background)")
        return self

    @property
    def num_classes(self) -> int:
        """Output channels of the network: ``max(label value) + 1``."""
        return max(self.label_names) + 1

    def preprocessing_key(self) -> str:
        """Hash (hex, 16 chars) of the fields that change preprocessed arrays (cache key)."""
        fields = self.model_dump(
            mode="json",
            include={
                "version",
                "channel_names",
                "label_names",
                "orientation",
                "target_spacing",
                "image_interpolation",
                "label_interpolation",
                "normalization",
                "crop_to_nonzero",
            },
        )
        blob = json.dumps(fields, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
def _format_validation_error(path: Path | str, exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "<root>"
        got = err.get("input")
        got_s = (
            f" (found {got!r})" if err["type"] != "missing" and not isinstance(got, dict) else ""
        )
        lines.append(f"{loc}: {err['msg']}{got_s}")
    return f"{path}: invalid plan: " + "; ".join(lines)


def plan_from_dict(data: Any, source: str | Path = "<plan>") -> Plan:
    """Validate a mapping into a :class:`Plan` (:class:`ConfigError` names the key path)."""
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: expected a mapping at the top level, found {type(data).__name__}"
        )
    try:
        return Plan.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(source, exc)) from exc


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
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(p, f"cannot read plan: {exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: invalid YAML: {exc}") from exc
    return plan_from_dict(data, p)


def plan_to_yaml(plan: Plan) -> str:
    """The plan as readable YAML (keys in model order)."""
    data = plan.model_dump(mode="json")
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


# ---------------------------------------------------------------------------------------------
# planning
# ---------------------------------------------------------------------------------------------
def collect_fingerprint(ds: Dataset, *, voxels_per_case: int = 20000, seed: int = 0) -> Fingerprint:
    """Read every case once and summarise it: spacings and shapes (after reorientation to
    closest-canonical RAS), shapes after cropping to the non-zero region, foreground intensity
    statistics per channel (from at most ``voxels_per_case`` randomly chosen label>0 voxels per
    case, seeded) and label volumes in mL."""
    raise NotImplementedError


def plan_dataset(
    ds: Dataset,
    gpu_memory_gb: float = 8.0,
    *,
    fingerprint: Fingerprint | None = None,
    foreground_ratio: float = 0.33,
    voxels_per_case: int = 20000,
    seed: int = 0,
) -> Plan:
    """Derive a :class:`Plan` from the dataset (see :func:`explain_plan` for the rules)."""
    raise NotImplementedError


def explain_plan(plan: Plan) -> str:
    """Human-readable summary of the plan and the reason for each choice."""
    raise NotImplementedError


__all__ = [
    "AugmentationPlan",
    "ChannelNormalization",
    "ChannelStats",
    "Fingerprint",
    "NetworkPlan",
    "Plan",
    "collect_fingerprint",
    "explain_plan",
    "load_plan",
    "plan_dataset",
    "plan_from_dict",
    "save_plan",
]
