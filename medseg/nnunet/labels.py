"""Labels of an nnU-Net v2 model from its ``dataset.json`` (nnU-Net's ``LabelManager``) and
its post-processing (``postprocessing.json``, nnU-Net's
``remove_all_but_largest_component_from_segmentation``).

Label-based models have one softmax output per label value (background included, the
``ignore`` label excluded). Region-based models (some label values are lists, e.g. BraTS's
``"whole tumor": [1, 2, 3]``) have one sigmoid output per foreground region; a voxel gets the
value ``regions_class_order[i]`` of the last region ``i`` whose probability exceeds 0.5.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from medseg.errors import InputError


@dataclass(frozen=True)
class LabelScheme:
    """Attributes:
    names: output label value -> name (background 0 included).
    regions_class_order: the value written for each region output, or ``None`` for
        label-based models.
    n_outputs: the network's output channels.
    """

    names: dict[int, str]
    regions_class_order: tuple[int, ...] | None
    n_outputs: int


def _is_region(v: Any) -> bool:
    return isinstance(v, (list, tuple)) and len(v) > 1


def label_scheme(dataset: dict[str, Any], where: Path) -> LabelScheme:
    """The :class:`LabelScheme` of nnU-Net's ``dataset.json``."""
    labels = dataset.get("labels")
    if not isinstance(labels, dict) or labels.get("background") != 0:
        raise InputError(where, "expected labels with background 0 in dataset.json")
    items = {k: v for k, v in labels.items() if k != "ignore"}
    if not any(_is_region(v) for v in items.values()):
        names = {int(v[0] if isinstance(v, (list, tuple)) else v): str(k) for k, v in items.items()}
        if sorted(names) != list(range(len(names))):
            raise InputError(
                where, f"expected consecutive label values 0..N, found {sorted(names)}"
            )
        return LabelScheme(dict(sorted(names.items())), None, len(names))
    regions = [
        (k, v)
        for k, v in items.items()
        if not (np.isscalar(v) and v == 0) and not (isinstance(v, (list, tuple)) and set(v) == {0})
    ]
    order = dataset.get("regions_class_order")
    if not isinstance(order, list) or len(order) != len(regions):
        raise InputError(
            where,
            f"expected regions_class_order with one value per region ({len(regions)}), "
            f"found {order!r}",
        )
    names = {0: "background"}
    for (k, _), c in zip(regions, order, strict=True):
        names[int(c)] = str(k)
    return LabelScheme(names, tuple(int(c) for c in order), len(regions))


def _flatten(x: Any) -> list[int]:
    if isinstance(x, (list, tuple)):
        return [v for item in x for v in _flatten(item)]
    return [int(x)]


def keep_largest_of(labels: npt.NDArray[np.integer[Any]], values: list[int]) -> npt.NDArray[Any]:
    """nnU-Net's ``remove_all_but_largest_component_from_segmentation``: the voxels of
    ``values`` (one mask) outside its largest 26-connected component(s) (all components of
    the largest size are kept) set to 0; a new array."""
    import cc3d

    mask = np.isin(labels, values)
    if not mask.any():
        return labels.copy()
    comp = cc3d.connected_components(mask, connectivity=26)
    sizes = np.bincount(comp.ravel())
    sizes[0] = 0
    keep = np.isin(comp, np.flatnonzero(sizes == sizes.max()))
    out = labels.copy()
    out[mask & ~keep] = 0
    return out


def apply_nnunet_postprocessing(
    labels: npt.NDArray[np.integer[Any]], steps: list[tuple[str, Any]]
) -> npt.NDArray[np.integer[Any]]:
    """The steps of :func:`medseg.nnunet.folder.read_postprocessing_json` in order (label or
    label/region lists as one mask)."""
    for _, target in steps:
        labels = keep_largest_of(labels, _flatten(target))
    return labels


__all__ = ["LabelScheme", "apply_nnunet_postprocessing", "keep_largest_of", "label_scheme"]
