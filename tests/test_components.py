"""Connected components: counts and sizes against scipy.ndimage.label (an independent
implementation) for each connectivity."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from medseg.components import component_sizes, connected_components
from medseg.errors import ConfigError


@pytest.mark.parametrize("connectivity, rank", [(6, 1), (18, 2), (26, 3)])
def test_components_equal_scipy_label(connectivity: int, rank: int) -> None:
    rng = np.random.default_rng(3)
    mask = rng.random((20, 17, 9)) > 0.7
    comps, n = connected_components(mask, connectivity)
    ref, n_ref = ndimage.label(mask, structure=ndimage.generate_binary_structure(3, rank))
    assert n == n_ref
    assert sorted(component_sizes(comps, n)) == sorted(np.bincount(ref.ravel())[1:])
    # same partition: every scipy component maps to exactly one medseg component
    for k in range(1, n_ref + 1):
        assert len(np.unique(comps[ref == k])) == 1


def test_diagonal_voxels_join_only_at_26() -> None:
    m = np.zeros((3, 3, 3), np.uint8)
    m[0, 0, 0] = m[1, 1, 1] = 1
    assert connected_components(m, 26)[1] == 1
    assert connected_components(m, 18)[1] == 2
    assert connected_components(m, 6)[1] == 2
    with pytest.raises(ConfigError, match="6, 18 or 26"):
        connected_components(m, 8)
