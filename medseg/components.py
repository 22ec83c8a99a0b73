"""Connected components of 3-D masks: the one implementation that post-processing, the
lesion-wise metrics and volumetry share.

Connectivity is the neighbourhood that joins two foreground voxels: ``6`` (shared face),
``18`` (face or edge) or ``26`` (face, edge or corner; the default, as nnU-Net's and
TotalSegmentator's post-processing and the BraTS lesion-wise code use for components). It is
counted in voxels, whatever the spacing. The work is done by ``cc3d``
(connected-components-3d), a C++ union-find that labels a 512×512×400 mask in well under a
second, several times faster than ``scipy.ndimage.label``.
"""

from __future__ import annotations

from typing import Literal, cast

import numpy as np
import numpy.typing as npt

from medseg.errors import ConfigError

Connectivity = Literal[6, 18, 26]
CONNECTIVITIES: tuple[int, ...] = (6, 18, 26)


def check_connectivity(connectivity: int) -> int:
    """Return ``connectivity`` if it is 6, 18 or 26, else raise :class:`ConfigError`."""
    if connectivity not in CONNECTIVITIES:
        raise ConfigError(f"connectivity: expected 6, 18 or 26, found {connectivity!r}")
    return int(connectivity)


def connected_components(
    mask: npt.NDArray[np.generic], connectivity: int = 26
) -> tuple[npt.NDArray[np.uint32], int]:
    """Label the connected components of a binary mask.

    Args:
        mask: ``(X, Y, Z)`` array; every non-zero voxel is foreground (values are not
            distinguished: pass ``labels == v`` for one label of a label map).
        connectivity: 6, 18 or 26 (see the module docstring).

    Returns:
        ``(components, n)``: ``uint32 (X, Y, Z)`` with 0 for background and ``1..n`` for the
        components (numbered in scan order), and ``n``.
    """
    import cc3d

    conn = cast(Connectivity, check_connectivity(connectivity))
    arr = np.asarray(mask)
    if arr.ndim != 3:
        raise ValueError(f"expected a 3-D mask, found shape {arr.shape}")
    binary = np.ascontiguousarray(arr != 0, dtype=np.uint8)
    comps, n = cc3d.connected_components(
        binary, connectivity=conn, return_N=True, out_dtype=np.uint32, binary_image=True
    )
    return np.asarray(comps, dtype=np.uint32), int(n)


def component_sizes(components: npt.NDArray[np.integer], n: int) -> npt.NDArray[np.int64]:
    """Voxel count of components ``1..n`` (index 0 of the result is component 1)."""
    counts = np.bincount(np.asarray(components).ravel(), minlength=n + 1)
    return counts[1 : n + 1].astype(np.int64)


__all__ = [
    "CONNECTIVITIES",
    "Connectivity",
    "check_connectivity",
    "component_sizes",
    "connected_components",
]
