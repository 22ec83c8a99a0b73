"""The planning rules: from a dataset fingerprint to a :class:`~medseg.plan.schema.Plan`.

nnU-Net-like, documented rules (target spacing, crop, normalisation, patch and batch size for a
GPU memory budget, U-Net topology, augmentation defaults); every choice is recorded in
``Plan.notes`` with its reason and printed by :func:`explain_plan`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medseg.datasets import Dataset
from medseg.errors import ConfigError
from medseg.plan.files import default_deep_supervision
from medseg.plan.schema import (
    AugmentationPlan,
    ChannelNormalization,
    Fingerprint,
    IntTriple,
    NetworkSpec,
    Plan,
    Preprocessing,
    Triple,
)
from medseg.planning.fingerprint import collect_fingerprint

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


def choose_target_spacing(spacings: NDArray[Any]) -> tuple[Triple, str]:
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


def network_topology(patch_size: Sequence[int], spacing: Sequence[float]) -> NetworkSpec:
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
    return NetworkSpec(
        kernel_sizes=kernels,
        strides=strides,
        filters=filters,
        **default_deep_supervision(len(strides)),
    )


def estimate_vram_gb(
    patch_size: Sequence[int], batch_size: int, net: NetworkSpec, in_channels: int = 1
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


def _divisible(patch: Sequence[int], net: NetworkSpec) -> IntTriple:
    ts = net.total_stride()
    out = [max(ts[a], (int(patch[a]) // ts[a]) * ts[a]) for a in range(3)]
    return (out[0], out[1], out[2])


def choose_patch_and_batch(
    median_shape: Sequence[int],
    spacing: Sequence[float],
    gpu_memory_gb: float,
    n_channels: int,
    dataset_voxels: float,
) -> tuple[IntTriple, int, NetworkSpec, str]:
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
    dataset: str,
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
        dataset=dataset,
        dataset_name=dataset_name,
        label_names=dict(label_names),
        preprocessing=Preprocessing(
            target_spacing=target, crop_to_nonzero=crop_nz, normalization=norms
        ),
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
        dataset=str(ds.source),
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
        f"plan for {plan.dataset_name} ({plan.dataset})",
        f"  channels        {', '.join(plan.channel_names)}",
        "  labels          " + ", ".join(f"{k}={v}" for k, v in plan.label_names.items()),
        f"  orientation     {plan.preprocessing.orientation} (axis permutation/flips only, "
        "exact inverse)",
        f"  target_spacing  {_fmt(plan.preprocessing.target_spacing)} mm",
        f"  crop_to_nonzero {plan.preprocessing.crop_to_nonzero}",
        f"  patch_size      {tuple(plan.patch_size)}   batch_size {plan.batch_size}   "
        f"(budget {plan.gpu_memory_gb:g} GB, estimate {vram:.2f} GB)",
        f"  network         {plan.network.architecture}, strides {plan.network.strides}",
        f"                  filters {plan.network.filters}, deep supervision "
        f"{plan.network.deep_supervision_heads()} extra head(s)",
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
    "choose_patch_and_batch",
    "choose_target_spacing",
    "estimate_vram_gb",
    "explain_plan",
    "network_topology",
    "plan_dataset",
    "plan_from_fingerprint",
]
