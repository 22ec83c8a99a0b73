"""The plan records: what preprocessing, patch/batch size, network and augmentation to use.

Pydantic v2 models only (unknown keys refused, values validated, frozen); this module imports
nothing from medseg above :mod:`medseg.errors`, so the transforms can take the small records
they need (:class:`Preprocessing`, :class:`AugmentationPlan`, :class:`ChannelNormalization`)
without depending on the planner. Reading and writing ``plan.yaml`` is in
:mod:`medseg.plan.files`; the rules that derive a plan from a dataset in
:mod:`medseg.planning.rules` and :mod:`medseg.planning.fingerprint`.

Geometry convention: all per-axis values (``target_spacing``, ``patch_size``,
``network.strides``/``kernel_sizes``) refer to the array axes **after reorientation to the
closest canonical RAS orientation** (see :mod:`medseg.transforms.spatial`): axis 0 runs to the
patient's Right, 1 Anterior, 2 Superior.
"""

from __future__ import annotations

import hashlib
import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: Version of the plan layout written by this medseg (version 1: preprocessing fields at the
#: top level and a topology-only network; read and converted by :mod:`medseg.plan.files`).
PLAN_VERSION = 2

Triple = tuple[float, float, float]
IntTriple = tuple[int, int, int]
Architecture = Literal["dynunet", "unet", "segresnet"]
ARCHITECTURES: tuple[str, ...] = ("dynunet", "unet", "segresnet")


class _Strict(BaseModel):
    # revalidate_instances: a record rebuilt with model_copy(update=...) is checked again when
    # it is passed to a parent model (plan overrides are applied that way)
    model_config = ConfigDict(extra="forbid", frozen=True, revalidate_instances="always")


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


class Preprocessing(_Strict):
    """Exactly the fields that change preprocessed arrays (and so the disk-cache key).

    The input channels are the ``normalization`` entries, in input order
    (:attr:`channel_names`). See :func:`medseg.transforms.preprocessing.preprocess_case` for
    the order of the steps.
    """

    #: reorientation policy; only ``"closest_canonical_ras"`` (axis permutation/flip, no
    #: interpolation) is implemented
    orientation: Literal["closest_canonical_ras"] = "closest_canonical_ras"
    target_spacing: Triple
    crop_to_nonzero: bool
    image_interpolation: Literal["linear", "cubic"] = "linear"
    label_interpolation: Literal["nearest", "linear_onehot"] = "nearest"
    normalization: list[ChannelNormalization] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> Preprocessing:
        if any(not s > 0 for s in self.target_spacing):
            raise ValueError(f"target_spacing: expected positive mm, found {self.target_spacing}")
        names = self.channel_names
        if len(set(names)) != len(names):
            raise ValueError(f"normalization: channel names must be unique, found {names}")
        return self

    @property
    def channel_names(self) -> list[str]:
        """Input channel names, in input order."""
        return [n.channel for n in self.normalization]

    def key(self) -> str:
        """Hash (hex, 16 chars) of these fields and the plan layout version: the cache key."""
        doc = {"plan_version": PLAN_VERSION, **self.model_dump(mode="json")}
        blob = json.dumps(doc, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


class NetworkSpec(_Strict):
    """The network, in one record: which MONAI architecture and its topology.

    ``kernel_sizes`` and ``strides`` have one entry per resolution stage (the first stride is
    ``[1, 1, 1]``: no downsampling at the input stage), each a 3-vector in array axis order;
    ``filters`` one channel count per stage. The input and output channel counts are not stored:
    they follow from the plan (its channels and labels). ``dynunet`` maps directly onto MONAI's
    ``DynUNet(kernel_size, strides, filters)``; ``unet`` uses ``filters`` and ``strides[1:]``;
    ``segresnet`` uses ``filters[0]`` as its initial width and ``len(filters)`` as its depth.

    Deep supervision (``dynunet`` only) adds ``deep_supr_num`` lower-resolution output heads in
    training; MONAI needs ``deep_supr_num <= stages - 2``. An impossible request is a
    validation error, never rewritten.
    """

    architecture: Architecture = "dynunet"
    kernel_sizes: list[list[int]]
    strides: list[list[int]]
    filters: list[int]
    deep_supervision: bool = True
    deep_supr_num: int = Field(default=2, ge=1)
    norm: Literal["instance", "batch"] = "instance"
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _check(self) -> NetworkSpec:
        n = len(self.filters)
        if n < 2 or len(self.kernel_sizes) != n or len(self.strides) != n:
            raise ValueError(
                f"kernel_sizes ({len(self.kernel_sizes)}), strides ({len(self.strides)}) and "
                f"filters ({n}) must have one entry per stage, at least 2"
            )
        for name, seq in (("kernel_sizes", self.kernel_sizes), ("strides", self.strides)):
            for i, v in enumerate(seq):
                if len(v) != 3 or any(x < 1 for x in v):
                    raise ValueError(f"{name}[{i}]: expected 3 positive ints, found {v}")
        if any(f < 1 for f in self.filters):
            raise ValueError(f"filters: expected positive channel counts, found {self.filters}")
        if self.deep_supervision:
            if self.architecture != "dynunet":
                raise ValueError(
                    f"deep_supervision: only the dynunet architecture has deep supervision "
                    f"heads; set deep_supervision: false for {self.architecture}"
                )
            if self.deep_supr_num > n - 2:
                raise ValueError(
                    f"deep_supr_num: {self.deep_supr_num} heads need at least "
                    f"{self.deep_supr_num + 2} stages, the network has {n}; lower deep_supr_num "
                    "or set deep_supervision: false"
                )
        return self

    def total_stride(self) -> IntTriple:
        """Product of the strides per axis: patch sizes must be multiples of it."""
        t = [1, 1, 1]
        for s in self.strides:
            t = [a * int(b) for a, b in zip(t, s, strict=True)]
        return (t[0], t[1], t[2])

    def deep_supervision_heads(self) -> int:
        """Number of extra (lower-resolution) output heads in training mode."""
        return self.deep_supr_num if self.deep_supervision else 0


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

    def mirror_axes(self) -> tuple[int, ...]:
        """Axes the network is trained to be invariant to by flipping (for test-time
        mirroring): ``flip_axes`` when flips are on, else none."""
        return tuple(sorted(set(self.flip_axes))) if self.flip_prob > 0 else ()


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


class RoiPlan(_Strict):
    """The second stage of a coarse-to-fine cascade (:mod:`medseg.inference.cascade`): the network
    learns and predicts around the foreground's bounding box, not over the whole image.

    Training patches are centred on the centre of the reference foreground's bounding box,
    moved by up to ``jitter_mm`` on each axis (uniformly), so the network learns from boxes
    like those a first stage finds. Prediction covers only the box of the first stage's
    foreground grown by ``margin_mm`` on each side (windows take their context from the whole
    image); everything outside is background.
    """

    margin_mm: float = Field(default=10.0, ge=0)
    jitter_mm: float = Field(default=10.0, ge=0)


class Plan(_Strict):
    """Everything training and inference need to preprocess data and build the network.

    The channel names are those of ``preprocessing.normalization`` (:attr:`channel_names`); the
    network's input and output channel counts follow from the channels and ``label_names``
    (:attr:`num_classes`).
    """

    version: int = PLAN_VERSION
    #: what :func:`medseg.datasets.load_dataset` reads: a dataset folder, a dataset.json or a
    #: CSV listing (training reloads the cases from it unless the config names another)
    dataset: str
    dataset_name: str
    label_names: dict[int, str]
    preprocessing: Preprocessing
    patch_size: IntTriple
    batch_size: int = Field(ge=1)
    network: NetworkSpec
    augmentation: AugmentationPlan = Field(default_factory=AugmentationPlan)
    #: share of each batch centred on a foreground voxel (nnU-Net's rule, see
    #: :func:`medseg.loader.foreground_positions`)
    foreground_ratio: float = Field(default=0.33, ge=0, le=1)
    gpu_memory_gb: float = Field(gt=0)
    #: set for the second stage of a cascade: patches and predictions around the foreground's
    #: bounding box (:class:`RoiPlan`)
    roi: RoiPlan | None = None
    fingerprint: Fingerprint | None = None
    notes: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> Plan:
        if self.version != PLAN_VERSION:
            raise ValueError(f"version: expected {PLAN_VERSION}, found {self.version}")
        ts = self.network.total_stride()
        bad = [i for i in range(3) if self.patch_size[i] % ts[i]]
        if bad or any(p < 1 for p in self.patch_size):
            raise ValueError(
                f"patch_size {self.patch_size} must be divisible by the network's total stride "
                f"{ts} on every axis"
            )
        if 0 not in self.label_names:
            raise ValueError("label_names must include 0 (background)")
        if any(k < 0 for k in self.label_names):
            raise ValueError(f"label_names: label values must be >= 0, found {self.label_names}")
        return self

    @property
    def channel_names(self) -> list[str]:
        """Input channel names, in input order."""
        return self.preprocessing.channel_names

    @property
    def num_classes(self) -> int:
        """Output channels of the network: ``max(label value) + 1``."""
        return max(self.label_names) + 1


__all__ = [
    "ARCHITECTURES",
    "PLAN_VERSION",
    "Architecture",
    "AugmentationPlan",
    "ChannelNormalization",
    "ChannelStats",
    "Fingerprint",
    "IntTriple",
    "NetworkSpec",
    "Plan",
    "Preprocessing",
    "RoiPlan",
    "Triple",
]
