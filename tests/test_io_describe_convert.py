"""The library behind ``medseg info`` and ``medseg convert``: :func:`medseg.describe` and
:func:`medseg.convert`, callable without the command line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import medseg
from medseg.errors import OutputExistsError, UnsupportedFormatError


def test_describe_and_convert_a_file(tmp_path: Path) -> None:
    affine = np.diag([0.8, 0.9, 2.5, 1.0])
    affine[:3, 3] = (10.0, -20.0, 5.0)
    arr = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    src = tmp_path / "a.nii.gz"
    medseg.write_volume(medseg.Volume(arr, affine), src)
    rec = medseg.describe(src)
    assert rec["shape"] == [4, 5, 6] and rec["format"] == "NIfTI"
    assert rec["spacing_mm"] == pytest.approx([0.8, 0.9, 2.5])
    assert rec["range"] == [0.0, float(arr.max())]
    assert "range" not in medseg.describe(src, headers_only=True)
    out = medseg.convert(src, tmp_path / "a.nrrd")
    back = medseg.read_volume(out)
    np.testing.assert_array_equal(back.array, arr)
    np.testing.assert_allclose(back.affine, affine, atol=1e-6)
    with pytest.raises(OutputExistsError):
        medseg.convert(src, out)
    with pytest.raises(UnsupportedFormatError, match="cannot write"):
        medseg.convert(src, tmp_path / "a.png")
    folder = medseg.describe(tmp_path)
    assert sorted(Path(v["path"]).name for v in folder["volumes"]) == ["a.nii.gz", "a.nrrd"]
