"""nnU-Net v2 model folders run by medseg (``medseg.nnunet``), checked against an independent
implementation of nnU-Net's prediction written here from nnU-Net's code (SimpleITK axis
order, transpose, crop to non-zero, its normalisation formulas, skimage ``resize`` as nnU-Net
calls it, one network pass, logits resampled back, argmax, uncrop).

The folders are synthetic: plans.json, dataset.json and fold_0/checkpoint_final.pth in
nnU-Net's layout, the network built with dynamic_network_architectures (tiny, random
weights). The comparison with nnU-Net itself is ``bench/nnunet_predict.py`` (slow test)."""

from __future__ import annotations

import argparse
import importlib.util
import json
import pickle
import sys
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
import torch
from scipy.ndimage import binary_fill_holes, map_coordinates
from skimage.transform import resize
from support.paths import REPO

from medseg.cli import main
from medseg.errors import InputError
from medseg.io import read_label_map
from medseg.nnunet import is_nnunet_folder, load_nnunet_model
from medseg.nnunet.preprocess import Resampling, preprocess, resample_data, resample_logits
from medseg.nnunet.sliding import gaussian_map, mirror_passes, window_starts
from medseg.volume import Volume

_spec = importlib.util.spec_from_file_location("nnunet_bench", REPO / "bench" / "nnunet_predict.py")
assert _spec is not None and _spec.loader is not None
bench = importlib.util.module_from_spec(_spec)
sys.modules["nnunet_bench"] = bench
_spec.loader.exec_module(bench)

CT_PROPS = {"mean": 40.0, "std": 80.0, "percentile_00_5": -100.0, "percentile_99_5": 300.0}


def _dataset(channels: dict[str, str], labels: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"channel_names": channels, "labels": labels, "numTraining": 1,
            "file_ending": ".nii.gz", **extra}  # fmt: skip


def _folder(tmp: Path, name: str = "m", **plans_kw: Any) -> Path:
    ds = plans_kw.pop("dataset", None) or _dataset(
        {"0": "CT"}, {"background": 0, "liver": 1, "spleen": 2}
    )
    plans = bench.synthetic_plans(**plans_kw)
    return Path(bench.synthetic_nnunet_folder(tmp / name, plans, ds))


# ---- the independent reference (nnU-Net's formulas, nnU-Net's library calls) ---------------


def _ref_normalize(
    img: np.ndarray, scheme: str, use_mask: bool, props: dict, seg: np.ndarray
) -> np.ndarray:
    img = img.astype(np.float32)
    if scheme == "CTNormalization":
        img = np.clip(img, props["percentile_00_5"], props["percentile_99_5"])
        return ((img - props["mean"]) / max(props["std"], 1e-8)).astype(np.float32)
    assert scheme == "ZScoreNormalization"
    if use_mask:
        m = seg >= 0
        out = img.copy()
        out[m] = (img[m] - img[m].mean()) / max(img[m].std(), 1e-8)
        return out
    return ((img - img.mean()) / max(img.std(), 1e-8)).astype(np.float32)


def _ref_predict(folder: Path, arrays: list[np.ndarray], spacing: tuple[float, ...]) -> np.ndarray:
    """nnU-Net's prediction of one case whose preprocessed image fits one patch (the Gaussian
    weight cancels), in medseg's (I, J, K) order."""
    plans = json.loads((folder / "plans.json").read_text())
    ds = json.loads((folder / "dataset.json").read_text())
    cfg = plans["configurations"]["3d_fullres"]
    tf, tb = plans["transpose_forward"], plans["transpose_backward"]
    data = np.stack([a.transpose(2, 1, 0) for a in arrays]).astype(np.float32)  # SimpleITK order
    sp = list(spacing)[::-1]
    data = data.transpose([0, *[i + 1 for i in tf]])
    sp = [sp[i] for i in tf]
    before = data.shape[1:]
    mask = binary_fill_holes(np.any(data != 0, axis=0))
    nz = np.argwhere(mask)
    box = tuple(slice(lo, hi + 1) for lo, hi in zip(nz.min(0), nz.max(0), strict=True))
    data, mask = data[(slice(None), *box)], mask[box]
    seg = np.where(mask, 0, -1)
    props = plans["foreground_intensity_properties_per_channel"]
    for c in range(data.shape[0]):
        data[c] = _ref_normalize(data[c], cfg["normalization_schemes"][c],
                                 cfg["use_mask_for_norm"][c], props[str(c)], seg)  # fmt: skip
    after = data.shape[1:]
    new_shape = [round(s / t * n) for s, t, n in zip(sp, cfg["spacing"], after, strict=True)]
    data = np.stack([resize(d.astype(float), new_shape, 3, mode="edge", anti_aliasing=False)
                     for d in data]).astype(np.float32)  # fmt: skip
    patch = cfg["patch_size"]
    assert all(n <= p for n, p in zip(new_shape, patch, strict=True)), (new_shape, patch)
    lo = [(p - n) // 2 for n, p in zip(new_shape, patch, strict=True)]
    padded = np.zeros((data.shape[0], *patch), dtype=np.float32)
    padded[(slice(None), *[slice(a, a + n) for a, n in zip(lo, new_shape, strict=True)])] = data
    from medseg.nnunet.network import build_network

    labels = {k: v for k, v in ds["labels"].items() if k != "ignore"}
    regions = ds.get("regions_class_order")
    net = build_network(cfg["architecture"], data.shape[0],
                        len(labels) - 1 if regions else len(labels), folder)  # fmt: skip
    ck = torch.load(folder / "fold_0" / "checkpoint_final.pth", weights_only=False)
    net.load_state_dict(ck["network_weights"])
    with torch.no_grad():
        logits = net.eval()(torch.from_numpy(padded)[None])[0].numpy()
    logits = logits[(slice(None), *[slice(a, a + n) for a, n in zip(lo, new_shape, strict=True)])]
    back = np.stack([resize(x.astype(float), after, 1, mode="edge", anti_aliasing=False)
                     for x in logits])  # fmt: skip
    if regions:
        prob = 1 / (1 + np.exp(-back))
        out = np.zeros(after, dtype=np.uint8)
        for i, c in enumerate(regions):
            out[prob[i] > 0.5] = c
    else:
        out = back.argmax(0).astype(np.uint8)
    full = np.zeros(before, dtype=np.uint8)
    full[box] = out
    return full.transpose(tb).transpose(2, 1, 0)


def _body(shape: tuple[int, int, int], seed: int, lo: float = -200, hi: float = 400) -> np.ndarray:
    """A noisy block with a zero border (so cropping to the non-zero region matters)."""
    rng = np.random.default_rng(seed)
    a = np.zeros(shape, dtype=np.float32)
    a[2:-3, 3:-2, 1:-2] = rng.uniform(lo, hi, (shape[0] - 5, shape[1] - 5, shape[2] - 3))
    return a


# ---- tests ---------------------------------------------------------------------------------


def test_detection(tmp_path: Path) -> None:
    f = _folder(tmp_path, schemes=["CTNormalization"], spacing=[1.5, 1.5, 1.5], patch=[16, 16, 16])
    assert is_nnunet_folder(f)
    assert not is_nnunet_folder(tmp_path)
    (f / "fold_0" / "checkpoint_final.pth").rename(f / "fold_0" / "checkpoint_best.pth")
    assert is_nnunet_folder(f)  # a best-only folder is still one
    with pytest.raises(InputError, match="final checkpoint not found"):
        load_nnunet_model(f, folds=[0], checkpoint="final")
    assert load_nnunet_model(f, checkpoint="best").identity["checkpoint"] == "best"
    (f / "dataset.json").unlink()
    assert not is_nnunet_folder(f)


def test_checkpoint_weights_only_and_refusal(tmp_path: Path) -> None:
    f = _folder(tmp_path, schemes=["CTNormalization"], spacing=[1.5, 1.5, 1.5], patch=[16, 16, 16])
    # the checkpoint holds NumPy scalars, as nnU-Net's do: torch's defaults alone refuse it
    with pytest.raises(pickle.UnpicklingError, match="numpy"):
        torch.load(f / "fold_0" / "checkpoint_final.pth", weights_only=True)
    m = load_nnunet_model(f)
    ident = m.identity
    assert ident["kind"] == "nnunet" and ident["folds"] == ["0"]
    assert list(ident["weights_sha256"]) == ["fold_0/checkpoint_final.pth"]
    bad = bench.synthetic_nnunet_folder(
        tmp_path / "bad", json.loads((f / "plans.json").read_text()),
        json.loads((f / "dataset.json").read_text()), extra={"args": argparse.Namespace(a=1)},
    )  # fmt: skip
    with pytest.raises(InputError, match=r"checkpoint_final\.pth.*argparse\.Namespace"):
        load_nnunet_model(bad)


def test_ct_normalisation_and_crop_match_nnunet_formulas(tmp_path: Path) -> None:
    arr = _body((20, 18, 12), 1, lo=-1000, hi=1500)
    data = arr.transpose(2, 1, 0)[None]
    pre, info = preprocess(
        data, [2.0, 1.0, 1.0], transpose_forward=[0, 1, 2], target_spacing=[2.0, 1.0, 1.0],
        schemes=["CTNormalization"], use_mask=[False], intensity_props={"0": CT_PROPS},
        resampling=Resampling(3, 0, None),
    )  # fmt: skip
    box = info.bbox
    assert box == ((1, 10), (3, 16), (2, 17))  # z, y, x of the non-zero block
    crop = data[0, 1:10, 3:16, 2:17]
    expect = (np.clip(crop, -100.0, 300.0) - 40.0) / 80.0
    np.testing.assert_allclose(pre[0], expect, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("schemes", "use_mask", "transpose", "spacing_in", "target", "network"),
    [
        (["CTNormalization"], [False], [0, 1, 2], (0.8, 0.9, 1.7), [1.5, 1.5, 2.0],
         "PlainConvUNet"),
        (["CTNormalization", "ZScoreNormalization"], [False, True], [0, 1, 2],
         (1.0, 1.1, 1.3), [1.5, 1.5, 1.5], "PlainConvUNet"),
        (["ZScoreNormalization"], [False], [2, 0, 1], (0.7, 1.0, 1.2), [2.0, 1.5, 1.5],
         "PlainConvUNet"),
        (["ZScoreNormalization"], [True], [0, 1, 2], (1.0, 1.0, 1.0), [1.5, 1.5, 1.5],
         "ResidualEncoderUNet"),
        (["ZScoreNormalization"], [False], [0, 1, 2], (1.0, 1.0, 1.0), [1.5, 1.5, 1.5],
         "ResidualEncoderUNet-old-path"),
    ],
    ids=["ct", "multichannel-ct-zscore-mask", "transposed", "resenc", "resenc-old-module"],
)  # fmt: skip
def test_prediction_matches_the_reference(
    tmp_path: Path, schemes: list[str], use_mask: list[bool], transpose: list[int],
    spacing_in: tuple[float, ...], target: list[float], network: str,
) -> None:  # fmt: skip
    channels = {str(i): ("CT" if s.startswith("CT") else f"MR{i}") for i, s in enumerate(schemes)}
    f = _folder(
        tmp_path, schemes=schemes, use_mask=use_mask, spacing=target, patch=[16, 16, 16],
        transpose_forward=transpose, intensity={str(i): CT_PROPS for i in range(len(schemes))},
        dataset=_dataset(channels, {"background": 0, "liver": 1, "spleen": 2}), network=network,
    )  # fmt: skip
    arrays = [_body((22, 20, 14), 10 + i) for i in range(len(schemes))]
    vols = [Volume.from_geometry(a, spacing_in, origin=(5.0, -3.0, 2.0)) for a in arrays]
    model = load_nnunet_model(f)
    assert type(model.models[0]).__name__ == network.split("-")[0]
    lm = model.predict(vols)
    ref = _ref_predict(f, arrays, spacing_in)
    assert lm.shape == arrays[0].shape and np.allclose(lm.affine, vols[0].affine)
    assert len(np.unique(ref)) >= 2  # the comparison is not between two blank maps
    assert (lm.array == ref).mean() > 0.999
    assert lm.label_names == {0: "background", 1: "liver", 2: "spleen"}


def test_region_based_labels(tmp_path: Path) -> None:
    labels = {"background": 0, "whole": [1, 2], "core": [2]}
    f = _folder(
        tmp_path, schemes=["ZScoreNormalization"], spacing=[1.5, 1.5, 1.5], patch=[16, 16, 16],
        dataset=_dataset({"0": "T1"}, labels, regions_class_order=[1, 2]),
    )  # fmt: skip
    arr = _body((18, 18, 14), 3)
    vol = Volume.from_geometry(arr, (1.2, 1.2, 1.5))
    m = load_nnunet_model(f)
    assert m.label_names == {0: "background", 1: "whole", 2: "core"}
    lm, probs = m.predict_case([vol], with_probabilities=True)
    ref = _ref_predict(f, [arr], (1.2, 1.2, 1.5))
    assert len(np.unique(ref)) >= 2
    assert (lm.array == ref).mean() > 0.999
    assert probs is not None and probs.shape == (2, *arr.shape)  # one sigmoid per region
    inside = probs[1] > 0.5
    assert np.all(lm.array[inside & (arr != 0)] == 2)


def test_separate_z_resampling_matches_nnunet_code() -> None:
    """Anisotropic target spacing: in-plane spline per slice, nearest along the low-resolution
    axis (nnU-Net's resample_data_or_seg with do_separate_z, reproduced with its calls)."""
    rng = np.random.default_rng(0)
    data = rng.normal(size=(1, 7, 20, 18)).astype(np.float32)
    cur, new = [1.0, 1.0, 1.0], [5.0, 1.5, 1.5]  # the target is anisotropic (> 3): axis 0
    shape = (2, 13, 12)
    out = resample_data(data, shape, cur, new, Resampling(3, 0, None))
    here = np.stack([resize(data[0, s].astype(float), shape[1:], 3, mode="edge",
                            anti_aliasing=False) for s in range(7)])  # fmt: skip
    grid = np.mgrid[: shape[0], : shape[1], : shape[2]].astype(float)
    for a, n_in in enumerate(here.shape):
        grid[a] = n_in / shape[a] * (grid[a] + 0.5) - 0.5
    ref = map_coordinates(here, grid, order=0, mode="nearest")
    np.testing.assert_allclose(out[0], ref, atol=1e-4)
    logits = torch.from_numpy(rng.normal(size=(2, 3, 10, 9)).astype(np.float32))
    back = resample_logits(logits, (7, 20, 18), new, cur, Resampling(1, 0, None)).numpy()
    for k in range(2):
        here = np.stack([resize(logits[k, s].double().numpy(), (20, 18), 1, mode="edge",
                                anti_aliasing=False) for s in range(3)])  # fmt: skip
        grid = np.mgrid[:7, :20, :18].astype(float)
        grid[0] = 3 / 7 * (grid[0] + 0.5) - 0.5
        ref = map_coordinates(here, grid, order=0, mode="nearest")
        np.testing.assert_allclose(back[k], ref, atol=1e-5)


def test_sliding_window_pieces_match_nnunet() -> None:
    # nnU-Net's own example (sliding_window_prediction.py): image 110, patch 64, step 0.5
    assert window_starts([110], [64], 0.5) == [[0, 23, 46]]
    assert window_starts([64, 65], [64, 64], 0.5) == [[0], [0, 1]]
    g = gaussian_map([9, 8, 7])
    assert g.shape == (9, 8, 7) and g.max() == pytest.approx(10.0) and g.min() > 0
    assert g[4, 4, 3] == g.max()
    assert mirror_passes((0, 1, 2)) == [(), (0,), (1,), (2,), (0, 1), (0, 2), (1, 2), (0, 1, 2)]
    assert mirror_passes(None) == [()]


def test_refusals(tmp_path: Path) -> None:
    f = _folder(tmp_path, schemes=["CTNormalization"], spacing=[1.5, 1.5, 1.5], patch=[16, 16, 16])
    plans = json.loads((f / "plans.json").read_text())
    cfg = plans["configurations"]["3d_fullres"]
    plans["configurations"]["3d_cascade_fullres"] = {"inherits_from": "3d_fullres",
                                                     "previous_stage": "3d_lowres"}  # fmt: skip
    ds = json.loads((f / "dataset.json").read_text())
    casc = bench.synthetic_nnunet_folder(tmp_path / "casc", plans, ds)
    ck = torch.load(casc / "fold_0" / "checkpoint_final.pth", weights_only=False)
    ck["init_args"]["configuration"] = "3d_cascade_fullres"
    torch.save(ck, casc / "fold_0" / "checkpoint_final.pth")
    with pytest.raises(InputError, match="cascade"):
        load_nnunet_model(casc)
    cfg["architecture"]["network_class_name"] = "os.system"
    evil = bench.synthetic_nnunet_folder(tmp_path / "evil", json.loads(
        (f / "plans.json").read_text()), ds)  # fmt: skip
    (evil / "plans.json").write_text(json.dumps(plans))
    with pytest.raises(InputError, match="dynamic_network_architectures"):
        load_nnunet_model(evil)


def test_cli_predict_overlays_input_and_applies_postprocessing_json(tmp_path: Path) -> None:
    f = _folder(tmp_path, schemes=["CTNormalization"], spacing=[1.5, 1.5, 1.5], patch=[16, 16, 16],
                intensity={"0": CT_PROPS})  # fmt: skip
    affine = np.array([[0.0, -1.1, 0.0, 20.0], [1.2, 0.0, 0.0, -7.0], [0.0, 0.0, 1.4, 3.0],
                       [0, 0, 0, 1]])  # fmt: skip
    inp = tmp_path / "in"
    inp.mkdir()
    arr = _body((20, 18, 12), 5)
    nib.save(nib.Nifti1Image(arr, affine), inp / "ct_0000.nii.gz")
    assert main(["predict", "--model", str(f), str(inp), str(tmp_path / "a"), "--quiet",
                 "--device", "cpu", "--checkpoint", "final"]) == 0  # fmt: skip
    out = read_label_map(tmp_path / "a" / "ct.nii.gz")
    assert out.shape == arr.shape and np.allclose(out.affine, affine)
    names = json.loads((tmp_path / "a" / "labels.json").read_text())
    assert "liver" in json.dumps(names) and "spleen" in json.dumps(names)
    ref = _ref_predict(f, [arr], tuple(np.linalg.norm(affine[:3, :3], axis=0)))
    assert (out.array == ref).mean() > 0.999
    # nnU-Net's postprocessing.json: keep the largest component of label 1
    import cc3d

    n_before = cc3d.connected_components(out.array == 1, connectivity=26).max()
    assert n_before > 1, "the random network should give label 1 in several pieces"
    (f / "postprocessing.json").write_text(json.dumps({
        "postprocessing_fns": ["remove_all_but_largest_component_from_segmentation"],
        "postprocessing_kwargs": [{"labels_or_regions": 1}]}))  # fmt: skip
    assert main(["predict", "--model", str(f), str(inp), str(tmp_path / "b"), "--quiet",
                 "--device", "cpu"]) == 0  # fmt: skip
    pp = read_label_map(tmp_path / "b" / "ct.nii.gz").array
    assert cc3d.connected_components(pp == 1, connectivity=26).max() == 1
    assert np.array_equal(pp == 2, out.array == 2)
    assert main(["predict", "--model", str(f), str(inp), str(tmp_path / "c"), "--quiet",
                 "--device", "cpu", "--checkpoint", "best"]) != 0  # fmt: skip


def test_folds_are_ensembled_in_logits(tmp_path: Path) -> None:
    plans = bench.synthetic_plans(schemes=["ZScoreNormalization"], spacing=[1.5] * 3,
                                  patch=[16, 16, 16])  # fmt: skip
    ds = _dataset({"0": "T1"}, {"background": 0, "a": 1, "b": 2})
    f = bench.synthetic_nnunet_folder(tmp_path / "m", plans, ds, folds=(0, 1))
    both = load_nnunet_model(f)
    assert both.identity["folds"] == ["0", "1"] and len(both.models) == 2
    x = np.random.default_rng(0).normal(size=(1, 20, 18, 16)).astype(np.float32)
    one = [load_nnunet_model(f, folds=[k]).logits(x) for k in (0, 1)]
    torch.testing.assert_close(both.logits(x), (one[0] + one[1]) / 2)
    assert not torch.equal(one[0], one[1])  # two different networks
    with pytest.raises(InputError, match="fold_3"):
        load_nnunet_model(f, folds=[3])
