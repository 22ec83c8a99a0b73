"""Tests of ``medseg segment``: every method from the command line, outputs on the input's grid
(checked with nibabel and SimpleITK, independently of medseg's readers), the same result as the
Python API, and clear errors for inapplicable or bad options."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from support.cases import deepest_voxel, spleen_ct
from support.paths import SAMPLE

from medseg.classical import PostOptions, segment
from medseg.cli import main

CT = SAMPLE / "spleen_ct.nii.gz"


def spleen_seed() -> str:
    ct, ref = spleen_ct()
    x, y, z = ct.voxel_to_world(deepest_voxel(ref["spleen"], ct.spacing))
    return f"{x:.3f},{y:.3f},{z:.3f}"


@pytest.mark.parametrize(
    "args",
    [
        ["--method", "threshold", "--lower", "50", "--upper", "200"],
        ["--method", "otsu"],
        ["--method", "multi-otsu", "--classes", "3"],
        ["--method", "kmeans", "--classes", "3", "--random-seed", "1"],
        ["--method", "region-growing", "--lower", "60", "--upper", "160"],
        ["--method", "region-growing", "--growing", "confidence", "--radius-mm", "5"],
        ["--method", "edges", "--low", "100", "--high", "200"],
        ["--method", "edges", "--operator", "canny", "--low", "200", "--high", "300"],
    ],
    ids=lambda a: "-".join(a[1:4:2]),
)
def test_every_method_writes_a_label_map_on_the_input_grid(tmp_path, capsys, args) -> None:
    if args[1] == "region-growing":
        args = [*args, f"--seed={spleen_seed()}"]
    out = tmp_path / "seg.nii.gz"
    assert main(["segment", str(CT), str(out), *args]) == 0
    text = capsys.readouterr().out
    assert "wrote" in text and "mL" in text
    img, seg = nib.load(str(CT)), nib.load(str(out))
    assert seg.shape == img.shape
    np.testing.assert_allclose(seg.affine, img.affine, atol=1e-5)
    data = np.asarray(seg.dataobj)
    assert np.issubdtype(data.dtype, np.integer) and data.max() >= 1


def test_cli_equals_the_python_api_with_shared_options(tmp_path) -> None:
    ct, _ = spleen_ct()
    out = tmp_path / "seg.nrrd"
    args = [
        "segment", str(CT), str(out), "--method", "threshold", "--lower", "60", "--upper", "160",
        "--smooth-mm", "1.5", "--opening-mm", "2", "--closing-mm", "1", "--fill-holes",
        "--min-component-ml", "0.5", "--keep-largest",
    ]  # fmt: skip
    assert main(args) == 0
    api = segment(
        ct, "threshold", lower=60, upper=160, smooth_mm=1.5,
        post=PostOptions(opening_mm=2, closing_mm=1, fill_holes=True, min_component_ml=0.5,
                         keep_largest=True),
    )  # fmt: skip
    written = np.transpose(sitk.GetArrayFromImage(sitk.ReadImage(str(out))), (2, 1, 0))
    np.testing.assert_array_equal(written, api.array)
    # NRRD geometry (LPS) read by SimpleITK equals the NIfTI affine (RAS)
    img = sitk.ReadImage(str(out))
    aff = nib.load(str(CT)).affine
    np.testing.assert_allclose(img.GetSpacing(), np.linalg.norm(aff[:3, :3], axis=0), rtol=1e-6)
    np.testing.assert_allclose(img.GetOrigin(), aff[:3, 3] * [-1, -1, 1], atol=1e-4)


def test_watershed_from_the_cli_with_a_mask_and_markers(tmp_path) -> None:
    mask = tmp_path / "body.nii.gz"
    assert main(["segment", str(CT), str(mask), "--method", "otsu", "--fill-holes"]) == 0
    out = tmp_path / "ws.nii.gz"
    rc = main([
        "segment", str(CT), str(out), "--method", "watershed", "--mask", str(mask),
        "--min-distance-mm", "30", "--landscape", "distance",
    ])  # fmt: skip
    assert rc == 0
    ws = np.asarray(nib.load(str(out)).dataobj)
    assert ws.max() >= 1 and not ws[np.asarray(nib.load(str(mask)).dataobj) == 0].any()
    markers = tmp_path / "markers.nii.gz"
    m = np.zeros(ws.shape, np.uint8)
    m[80, 80, 13] = 1
    m[5, 5, 13] = 2
    nib.save(nib.Nifti1Image(m, nib.load(str(CT)).affine), str(markers))
    rc = main([
        "segment", str(CT), str(tmp_path / "ws2.nii.gz"), "--method", "watershed",
        "--markers", str(markers), "--sigma-mm", "2",
    ])  # fmt: skip
    assert rc == 0
    assert set(np.unique(np.asarray(nib.load(str(tmp_path / "ws2.nii.gz")).dataobj))) == {1, 2}


def test_errors_are_one_line_and_nothing_is_overwritten(tmp_path, capsys) -> None:
    out = tmp_path / "seg.nii.gz"
    base = ["segment", str(CT), str(out)]
    cases = [
        (["--method", "otsu", "--classes", "3"], "--classes does not apply"),
        (["--method", "threshold"], "give --lower, --upper or both"),
        (["--method", "threshold", "--lower", "10", "--upper", "1"], "above upper"),
        (["--method", "region-growing", "--lower", "0"], "at least one --seed"),
        (["--method", "region-growing", "--seed=0,0,0", "--lower", "0"], "lies outside"),
        (
            [
                "--method",
                "region-growing",
                "--seed=0,0,0",
                "--growing",
                "confidence",
                "--lower",
                "3",
            ],
            "chooses its own window",
        ),
        (["--method", "region-growing", "--seed=0,0,0", "--multiplier", "2"], "confidence only"),
        (["--method", "edges"], "give --low"),
        (["--method", "edges", "--operator", "canny", "--low", "1"], "give --high"),
        (["--method", "edges", "--low", "1", "--sigma-mm", "1"], "--operator canny"),
        (["--method", "watershed"], "give a mask"),
    ]
    for extra, message in cases:
        assert main([*base, *extra]) == 1, extra
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and err.count("\n") == 1, (extra, err)
    assert not out.exists()
    assert main([*base, "--method", "otsu"]) == 0
    before = out.read_bytes()
    capsys.readouterr()
    assert main([*base, "--method", "otsu", "--classes", "2"]) == 1
    assert main([*base, "--method", "threshold", "--lower", "0"]) == 1
    assert "output exists" in capsys.readouterr().err
    assert out.read_bytes() == before
    assert main([*base, "--method", "threshold", "--lower", "0", "--overwrite"]) == 0
    assert main(["segment", str(CT), str(tmp_path / "x.png"), "--method", "otsu"]) == 1
    assert "cannot tell the segmentation format" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*base, "--method", "region-growing", "--seed", "1,2"])
    for extra in (["--method", "kmeans", "--classes", "1"], ["--opening-mm", "-1"]):
        with pytest.raises(SystemExit) as ex:  # out of range: refused when parsed
            main([*base, "--method", "otsu", *extra])
        assert ex.value.code == 2
