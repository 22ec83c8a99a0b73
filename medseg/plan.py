"""The experiment plan: what preprocessing, patch/batch size, network and augmentation to use.

A :class:`Plan` is a pydantic v2 model (unknown keys refused, values validated) stored as
readable YAML (``plan.yaml``) that training and inference consume and that users may edit.
:func:`plan_dataset` derives one from a dataset fingerprint
(:func:`collect_fingerprint`) with documented, nnU-Net-like rules; every choice is
recorded in ``Plan.notes`` and printed by :func:`explain_plan`.

Geometry convention: all per-axis values in a plan (``target_spacing``, ``patch_size``,
``network.strides``/``kernel_sizes``) refer to the array axes **after reorientation to the
closest canonical RAS orientation** (see :mod:`medseg.transforms.spatial`): axis 0 runs to the
patient's Right, 1 Anterior, 2 Superior.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from medseg.config import read_yaml_mapping
from medseg.datasets import Case, Dataset
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

    def preprocessing_fields(self) -> dict[str, Any]:
        """The plan fields that change preprocessed arrays, as JSON-compatible values."""
        return self.model_dump(
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

    def preprocessing_key(self) -> str:
        """Hash (hex, 16 chars) of :meth:`preprocessing_fields` (the cache key)."""
        blob = json.dumps(self.preprocessing_fields(), sort_keys=True).encode()
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
        raise ConfigError(
            _format_validation_error(p, exc).replace("invalid plan", "invalid augmentation config")
        ) from exc


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


# ---------------------------------------------------------------------------------------------
# planning
# ---------------------------------------------------------------------------------------------
#: CUDA context, cuDNN workspaces and allocator slack, subtracted from the budget (GB).
VRAM_OVERHEAD_GB = 1.5
#: Bytes kept per voxel per feature map during training: 2 convolutions per stage, 3 saved
#: tensors each (conv output, norm output, activation), encoder + decoder, at 2 bytes (mixed
#: precision) = 24, rounded up to 32 for gradients of the skip concatenations.
VRAM_BYTES_PER_VOXEL_FEATURE = 32
#: Parameter memory: fp32 weight + gradient + two Adam moments.
VRAM_BYTES_PER_PARAMETER = 16
#: Smallest feature map edge at the bottleneck, and the maximum number of downsamplings.
MIN_FEATURE_MAP = 4
MAX_POOLINGS = 5
BASE_FILTERS = 32
MAX_FILTERS = 320
#: nnU-Net's anisotropy rule: an axis whose spacing is > 3x the finest is "thick-slice".
ANISOTROPY_RATIO = 3.0
#: nnU-Net's cap: one batch covers at most this fraction of all dataset voxels.
MAX_BATCH_DATASET_FRACTION = 0.05


def _case_fingerprint(
    case: Case, n_channels: int, voxels: int, rng: np.random.Generator
) -> dict[str, Any]:
    from medseg.datasets import read_case
    from medseg.transforms.spatial import Reorientation, nonzero_box

    vols, lab = read_case(case)
    ref = vols[0]
    reo = Reorientation.from_affine(ref.affine)
    stack = np.stack([np.asarray(v.array) for v in vols])
    box = nonzero_box(stack)
    crop_shape = reo.shape([hi - lo for lo, hi in box])
    values: np.ndarray = np.zeros((n_channels, 0), dtype=np.float32)
    volumes: dict[int, float] = {}
    if lab is not None:
        flat = lab.array.ravel()
        fg = np.flatnonzero(flat > 0)
        if fg.size:
            pick = rng.choice(fg, size=min(voxels, fg.size), replace=False)
            values = stack.reshape(n_channels, -1)[:, pick].astype(np.float32)
        counts = np.bincount(flat[flat > 0].astype(np.int64))
        volumes = {int(v): float(c) * ref.voxel_volume_ml for v, c in enumerate(counts) if c}
    return {
        "spacing": reo.spacing(ref.spacing),
        "shape": reo.shape(ref.shape),
        "crop_shape": crop_shape,
        "values": values,
        "volumes": volumes,
    }


def _sig(x: Any) -> float:
    """Round to 7 significant digits (plan.yaml stays readable; float32 data hold no more)."""
    return float(f"{float(x):.7g}")


def collect_fingerprint(ds: Dataset, *, voxels_per_case: int = 20000, seed: int = 0) -> Fingerprint:
    """Read every case once and summarise it.

    Collects spacings and shapes (after reorientation to closest-canonical RAS), shapes after
    cropping to the non-zero region, foreground (label > 0) intensity statistics per channel
    from at most ``voxels_per_case`` randomly chosen voxels per case (seeded, so repeatable),
    and per-label volumes (mL).
    """
    rng = np.random.default_rng(seed)
    n_ch = len(ds.channel_names)
    per_case = [_case_fingerprint(c, n_ch, voxels_per_case, rng) for c in ds.cases]
    values = np.concatenate([p["values"] for p in per_case], axis=1)
    stats = []
    for c, name in enumerate(ds.channel_names):
        v = values[c].astype(np.float64)
        if v.size == 0:
            raise InputError(
                ds.source,
                "no foreground (label > 0) voxels in any case; cannot compute intensity statistics",
            )
        p005, p50, p995 = np.percentile(v, [0.5, 50.0, 99.5])
        stats.append(
            ChannelStats(
                channel=name,
                mean=_sig(v.mean()),
                std=_sig(v.std()),
                median=_sig(p50),
                percentile_00_5=_sig(p005),
                percentile_99_5=_sig(p995),
                min=_sig(v.min()),
                max=_sig(v.max()),
            )
        )
    spacings = np.array([p["spacing"] for p in per_case], dtype=np.float64)
    shapes = np.array([p["shape"] for p in per_case], dtype=np.int64)
    vols: dict[int, list[float]] = {}
    for p in per_case:
        for k, ml in p["volumes"].items():
            vols.setdefault(k, []).append(ml)
    med_sp = np.median(spacings, axis=0)
    med_sh = np.median(shapes, axis=0)
    return Fingerprint(
        n_cases=len(per_case),
        spacings=[(float(a), float(b), float(c)) for a, b, c in spacings],
        shapes=[(int(a), int(b), int(c)) for a, b, c in shapes],
        shapes_after_crop=[tuple(int(x) for x in p["crop_shape"]) for p in per_case],  # type: ignore[misc]
        median_spacing=(float(med_sp[0]), float(med_sp[1]), float(med_sp[2])),
        median_shape=(int(med_sh[0]), int(med_sh[1]), int(med_sh[2])),
        intensity=stats,
        label_volume_ml_median={k: _sig(np.median(v)) for k, v in sorted(vols.items())},
        label_case_count={k: len(v) for k, v in sorted(vols.items())},
        modalities=list(ds.channel_names),
    )


def choose_target_spacing(spacings: np.ndarray) -> tuple[Triple, str]:
    """Median spacing per axis; for strongly anisotropic data (coarsest median axis more than
    ``ANISOTROPY_RATIO`` times the finest) the coarse axis takes the 10th percentile of its
    spacings instead (finer, so thin-slice cases are not thrown away), but never finer than the
    other axes. Returns the spacing and the reason."""
    med = np.median(spacings, axis=0)
    worst = int(np.argmax(med))
    if med[worst] > ANISOTROPY_RATIO * float(np.min(med)):
        others = [float(med[a]) for a in range(3) if a != worst]
        t = med.copy()
        t[worst] = max(float(np.percentile(spacings[:, worst], 10)), max(others))
        why = (
            f"median spacing {_fmt(med)} mm is anisotropic (axis {worst} is "
            f"{med[worst] / np.min(med):.1f}x the finest > {ANISOTROPY_RATIO:g}x): axis "
            f"{worst} uses the 10th percentile of its spacings ({t[worst]:.4g} mm), the "
            "others the median"
        )
        return (float(t[0]), float(t[1]), float(t[2])), why
    return (float(med[0]), float(med[1]), float(med[2])), (
        f"median spacing over {len(spacings)} cases (not anisotropic: ratio "
        f"{float(np.max(med) / np.min(med)):.2f} <= {ANISOTROPY_RATIO:g})"
    )


def _fmt(v: Any) -> str:
    return "(" + ", ".join(f"{float(x):.4g}" for x in v) + ")"


def network_topology(patch_size: Sequence[int], spacing: Sequence[float]) -> NetworkPlan:
    """U-Net stages for a patch (nnU-Net's rules, simplified).

    An axis is downsampled (stride 2) at a stage while its feature map stays at least
    ``MIN_FEATURE_MAP`` voxels after pooling and its current spacing is less than twice the
    finest current spacing (thick-slice axes wait until in-plane pooling catches up); at most
    ``MAX_POOLINGS`` downsamplings. Kernels are 3 except 1 along an axis whose current spacing is
    at least twice the finest. Filters start at 32 and double per stage up to 320.
    """
    size = [float(p) for p in patch_size]
    sp0 = [float(s) for s in spacing]
    sp = list(sp0)

    def kernel(sp: list[float]) -> list[int]:
        # 1 along a thick-slice axis that has not been pooled yet (its spacing is still the
        # input spacing and >= 2x the finest), else 3.
        return [1 if sp[a] >= 2 * min(sp) and sp[a] == sp0[a] else 3 for a in range(3)]

    strides = [[1, 1, 1]]
    kernels = [kernel(sp)]
    for _ in range(MAX_POOLINGS):
        st = [2 if size[a] / 2 >= MIN_FEATURE_MAP and sp[a] / min(sp) < 2 else 1 for a in range(3)]
        if st == [1, 1, 1]:
            break
        size = [size[a] / st[a] for a in range(3)]
        sp = [sp[a] * st[a] for a in range(3)]
        strides.append(st)
        kernels.append(kernel(sp))
    if len(strides) == 1:  # a patch too small to pool: still a 2-stage net (stride 1)
        strides.append([1, 1, 1])
        kernels.append(list(kernels[0]))
    filters = [min(BASE_FILTERS * 2**i, MAX_FILTERS) for i in range(len(strides))]
    return NetworkPlan(kernel_sizes=kernels, strides=strides, filters=filters)


def estimate_vram_gb(
    patch_size: Sequence[int], batch_size: int, net: NetworkPlan, in_channels: int = 1
) -> float:
    """Documented training-memory estimate (GB) for a U-Net on ``patch_size`` voxels:
    ``batch * sum_s(voxels_s * filters_s) * VRAM_BYTES_PER_VOXEL_FEATURE`` (activations) +
    ``parameters * VRAM_BYTES_PER_PARAMETER`` + ``VRAM_OVERHEAD_GB``. A heuristic in the spirit
    of nnU-Net's VRAM estimate, not a measurement."""
    vox = float(np.prod(patch_size))
    act = 0.0
    params = 0.0
    prev = in_channels
    for s, f in enumerate(net.filters):
        vox /= float(np.prod(net.strides[s]))
        act += vox * f
        k = float(np.prod(net.kernel_sizes[s]))
        params += 2 * k * f * (prev + f)  # encoder + decoder convolutions
        prev = f
    total = batch_size * act * VRAM_BYTES_PER_VOXEL_FEATURE + params * VRAM_BYTES_PER_PARAMETER
    return total / 1024**3 + VRAM_OVERHEAD_GB


def _divisible(patch: Sequence[int], net: NetworkPlan) -> IntTriple:
    ts = net.total_stride()
    out = [max(ts[a], (int(patch[a]) // ts[a]) * ts[a]) for a in range(3)]
    return (out[0], out[1], out[2])


def choose_patch_and_batch(
    median_shape: Sequence[int],
    spacing: Sequence[float],
    gpu_memory_gb: float,
    n_channels: int,
    dataset_voxels: float,
) -> tuple[IntTriple, int, NetworkPlan, str]:
    """Largest patch (starting from the median resampled shape) whose batch of 2 fits
    ``gpu_memory_gb`` under :func:`estimate_vram_gb`, shrinking the physically longest axis
    10% at a time; then the batch grows to fill the budget, capped so one batch covers at most
    ``MAX_BATCH_DATASET_FRACTION`` of all dataset voxels (never below 2)."""
    if gpu_memory_gb <= VRAM_OVERHEAD_GB + 0.5:
        raise ConfigError(
            f"gpu_memory_gb: {gpu_memory_gb} GB is too small; expected more than "
            f"{VRAM_OVERHEAD_GB + 0.5} GB (overhead {VRAM_OVERHEAD_GB} GB)"
        )
    patch = [max(8, int(s)) for s in median_shape]
    while True:
        net = network_topology(patch, spacing)
        cand = _divisible(patch, net)
        net = network_topology(cand, spacing)
        cand = _divisible(cand, net)
        if estimate_vram_gb(cand, 2, net, n_channels) <= gpu_memory_gb:
            break
        if max(patch) <= 8:
            raise ConfigError(
                f"gpu_memory_gb: {gpu_memory_gb} GB cannot hold even an 8^3 patch with batch 2"
            )
        ext = [patch[a] * spacing[a] if patch[a] > 8 else -1.0 for a in range(3)]
        a = int(np.argmax(ext))
        patch[a] = max(8, int(patch[a] * 0.9))
    per_sample = estimate_vram_gb(cand, 1, net, n_channels) - VRAM_OVERHEAD_GB
    fit = int((gpu_memory_gb - VRAM_OVERHEAD_GB) // max(per_sample, 1e-9))
    cap = int(MAX_BATCH_DATASET_FRACTION * dataset_voxels // float(np.prod(cand)))
    batch = max(2, min(fit, cap))
    why = (
        f"patch {cand} starts from the median resampled shape {tuple(median_shape)}, shrunk "
        f"until batch 2 fits {gpu_memory_gb:g} GB (estimate "
        f"{estimate_vram_gb(cand, 2, net, n_channels):.2f} GB); batch {batch}: memory allows "
        f"{fit}, 5% of dataset voxels allows {cap}, minimum 2"
    )
    return cand, batch, net, why


def plan_from_fingerprint(
    fp: Fingerprint,
    *,
    dataset_root: str,
    dataset_name: str,
    channel_names: Sequence[str],
    label_names: dict[int, str],
    gpu_memory_gb: float = 8.0,
    foreground_ratio: float = 0.33,
    augmentation: AugmentationPlan | None = None,
) -> Plan:
    """Apply the planning rules to a fingerprint (pure; see :func:`plan_dataset`)."""
    notes: list[str] = []
    spacings = np.asarray(fp.spacings, dtype=np.float64)
    target, why = choose_target_spacing(spacings)
    notes.append(f"target_spacing {_fmt(target)} mm: {why}")
    full = np.prod(np.asarray(fp.shapes, float), axis=1)
    cropped = np.prod(np.asarray(fp.shapes_after_crop, float), axis=1)
    ratio = float(np.median(cropped / full))
    crop_nz = ratio < 0.75
    notes.append(
        f"crop_to_nonzero {crop_nz}: the non-zero box keeps a median {ratio:.0%} of "
        "the voxels (crop when it removes >= 25%, as nnU-Net)"
    )
    norms = []
    for st in fp.intensity:
        if "CT" in st.channel.upper():
            norms.append(
                ChannelNormalization(
                    channel=st.channel,
                    scheme="ct",
                    clip_low=st.percentile_00_5,
                    clip_high=st.percentile_99_5,
                    mean=st.mean,
                    std=max(st.std, 1e-6),
                )
            )
            notes.append(
                f"channel {st.channel}: CT -> clip to foreground percentiles "
                f"[{st.percentile_00_5:.4g}, {st.percentile_99_5:.4g}] then z-score "
                f"with dataset foreground mean {st.mean:.4g}, std {st.std:.4g}"
            )
        else:
            norms.append(
                ChannelNormalization(channel=st.channel, scheme="zscore", use_nonzero_mask=crop_nz)
            )
            notes.append(
                f"channel {st.channel}: not CT -> per-image z-score "
                + ("inside the non-zero region" if crop_nz else "over the whole image")
            )
    resampled = [
        [s * sp / t for s, sp, t in zip(shape, spacing, target, strict=True)]
        for shape, spacing in zip(fp.shapes_after_crop, fp.spacings, strict=True)
    ]
    med_shape = [round(float(v)) for v in np.median(np.asarray(resampled), axis=0)]
    dataset_voxels = float(np.sum(np.prod(np.asarray(resampled), axis=1)))
    patch, batch, net, why = choose_patch_and_batch(
        med_shape, target, gpu_memory_gb, len(channel_names), dataset_voxels
    )
    notes.append(why)
    notes.append(
        f"network: {len(net.filters)} stages, strides {net.strides}, filters "
        f"{net.filters} (pool an axis while its feature map stays >= {MIN_FEATURE_MAP} "
        "and its spacing is < 2x the finest)"
    )
    aniso = max(target) > ANISOTROPY_RATIO * min(target)
    if augmentation is not None:
        aug = augmentation
        notes.append("augmentation: as given by the user")
    else:
        aug = AugmentationPlan(rotation_3d=not aniso)
        if aniso:
            notes.append("augmentation: in-plane rotation only (anisotropic target spacing)")
    notes.append(
        f"foreground_ratio {foreground_ratio:g}: share of patches centred on a foreground voxel"
    )
    return Plan(
        dataset_root=dataset_root,
        dataset_name=dataset_name,
        channel_names=list(channel_names),
        label_names=dict(label_names),
        target_spacing=target,
        normalization=norms,
        crop_to_nonzero=crop_nz,
        patch_size=patch,
        batch_size=batch,
        network=net,
        augmentation=aug,
        foreground_ratio=foreground_ratio,
        gpu_memory_gb=gpu_memory_gb,
        fingerprint=fp,
        notes=notes,
    )


def plan_dataset(
    ds: Dataset,
    gpu_memory_gb: float = 8.0,
    *,
    foreground_ratio: float = 0.33,
    voxels_per_case: int = 20000,
    seed: int = 0,
    augmentation: AugmentationPlan | None = None,
) -> Plan:
    """Fingerprint ``ds`` (:func:`collect_fingerprint`) and derive a :class:`Plan`
    (:func:`plan_from_fingerprint`); the reasons for each choice are in ``Plan.notes``.
    ``augmentation`` replaces the derived augmentation settings."""
    fp = collect_fingerprint(ds, voxels_per_case=voxels_per_case, seed=seed)
    labels = dict(ds.label_names)
    if not labels:
        labels = {0: "background", **{k: f"label_{k}" for k in fp.label_case_count}}
    return plan_from_fingerprint(
        fp,
        dataset_root=str(ds.root),
        dataset_name=ds.name,
        channel_names=ds.channel_names,
        label_names=labels,
        gpu_memory_gb=gpu_memory_gb,
        foreground_ratio=foreground_ratio,
        augmentation=augmentation,
    )


def explain_plan(plan: Plan) -> str:
    """Human-readable summary of the plan and the reason for each choice."""
    vram = estimate_vram_gb(plan.patch_size, plan.batch_size, plan.network, len(plan.channel_names))
    lines = [
        f"plan for {plan.dataset_name} ({plan.dataset_root})",
        f"  channels        {', '.join(plan.channel_names)}",
        "  labels          " + ", ".join(f"{k}={v}" for k, v in plan.label_names.items()),
        f"  orientation     {plan.orientation} (axis permutation/flips only, exact inverse)",
        f"  target_spacing  {_fmt(plan.target_spacing)} mm",
        f"  crop_to_nonzero {plan.crop_to_nonzero}",
        f"  patch_size      {tuple(plan.patch_size)}   batch_size {plan.batch_size}   "
        f"(budget {plan.gpu_memory_gb:g} GB, estimate {vram:.2f} GB)",
        f"  network         strides {plan.network.strides}",
        f"                  filters {plan.network.filters}",
    ]
    if plan.fingerprint is not None:
        fp = plan.fingerprint
        lines.append(
            f"  fingerprint     {fp.n_cases} cases, median spacing "
            f"{_fmt(fp.median_spacing)} mm, median shape {tuple(fp.median_shape)}"
        )
        for st in fp.intensity:
            lines.append(
                f"                  {st.channel}: foreground mean {st.mean:.4g} std "
                f"{st.std:.4g} p0.5 {st.percentile_00_5:.4g} p99.5 "
                f"{st.percentile_99_5:.4g}"
            )
        for k, ml in fp.label_volume_ml_median.items():
            lines.append(
                f"                  label {k} ({plan.label_names.get(k, '?')}): median "
                f"{ml:.4g} mL in {fp.label_case_count[k]} case(s)"
            )
    lines.append("why:")
    lines.extend(f"  - {n}" for n in plan.notes)
    return "\n".join(lines)


__all__ = [
    "AugmentationPlan",
    "ChannelNormalization",
    "ChannelStats",
    "Fingerprint",
    "NetworkPlan",
    "Plan",
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
    "save_plan",
]
