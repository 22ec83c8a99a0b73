"""Sliding-window inference: window placement, Gaussian map, exact blending for a pointwise
network, padding of small images, mirroring, ensembles and predict() on a Volume."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

from medseg.checkpoint import CheckpointMeta, load_checkpoint, save_checkpoint
from medseg.errors import InputError
from medseg.inference import (
    Predictor,
    compute_gaussian,
    compute_steps,
    predict_array,
    sliding_window_probabilities,
)
from medseg.models import NetworkSpec, build_network


def test_compute_steps_known_answers() -> None:
    assert compute_steps([10], [10], 0.5) == [[0]]
    assert compute_steps([20], [10], 0.5) == [[0, 5, 10]]
    assert compute_steps([21], [10], 0.5) == [[0, 4, 7, 11]]
    assert compute_steps([20], [10], 0.0) == [[0, 10]]
    steps = compute_steps([64, 40, 17], [32, 32, 16], 0.5)
    for s, im, p in zip(steps, (64, 40, 17), (32, 32, 16), strict=True):
        assert s[0] == 0 and s[-1] == im - p  # covers the image, ends on its border
        assert all(b - a <= p * 0.5 for a, b in itertools.pairwise(s))  # >= 50 % overlap
    with pytest.raises(ValueError, match="smaller than patch"):
        compute_steps([8], [10])
    with pytest.raises(ValueError, match="overlap"):
        compute_steps([20], [10], 1.0)


def test_gaussian_peak_centre_symmetric_positive() -> None:
    g = compute_gaussian((9, 9, 5))
    assert g.shape == (9, 9, 5)
    assert g[4, 4, 2] == pytest.approx(1.0)
    assert np.unravel_index(np.argmax(g), g.shape) == (4, 4, 2)
    assert g.min() > 0
    assert np.allclose(g, g[::-1, ::-1, ::-1])


class Pointwise(torch.nn.Module):
    """A 1x1x1 network: its sliding-window output must equal whole-image application."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv3d(2, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


@pytest.mark.parametrize("shape", [(20, 18, 11), (6, 18, 11)])  # second: smaller than patch
def test_pointwise_network_blends_exactly(shape: tuple[int, int, int]) -> None:
    net = Pointwise()
    img = torch.randn(2, *shape, generator=torch.Generator().manual_seed(1))
    probs = sliding_window_probabilities(net, img, (8, 8, 8), overlap=0.5, batch_size=3)
    with torch.no_grad():
        expect = torch.softmax(net(img[None]), 1)[0]
    assert probs.shape == (3, *shape)
    assert torch.allclose(probs, expect, atol=1e-5)
    lab = predict_array(net, img, (8, 8, 8))
    assert lab.shape == shape
    assert np.array_equal(lab, expect.argmax(0).numpy())


def test_mirroring_of_a_flip_equivariant_network_changes_nothing() -> None:
    net = Pointwise()
    img = torch.randn(2, 12, 12, 12, generator=torch.Generator().manual_seed(2))
    a = sliding_window_probabilities(net, img, (8, 8, 8))
    b = sliding_window_probabilities(net, img, (8, 8, 8), mirror_axes=(0, 1, 2))
    assert torch.allclose(a, b, atol=1e-5)


def test_rejects_non_4d_input() -> None:
    with pytest.raises(ValueError, match=r"\(C, X, Y, Z\)"):
        sliding_window_probabilities(Pointwise(), torch.zeros(1, 2, 8, 8, 8), (8, 8, 8))


SPEC = NetworkSpec(
    in_channels=1,
    out_channels=2,
    kernel_sizes=[[3, 3, 3]] * 3,
    strides=[[1, 1, 1], [2, 2, 2], [2, 2, 2]],
    filters=[4, 8, 8],
)


def _ckpt(path: Path, seed: int, **meta_kw: object) -> Path:
    torch.manual_seed(seed)
    meta = CheckpointMeta(
        network=SPEC.model_dump(),
        label_names={0: "background", 1: "ball"},
        channel_names=["MR"],
        spacing=[1.0, 1.0, 1.0],
        patch_size=[16, 16, 16],
    )
    for k, v in meta_kw.items():
        setattr(meta, k, v)
    return save_checkpoint(path, build_network(SPEC).state_dict(), meta)


def test_ensemble_averages_probabilities(tmp_path: Path) -> None:
    p1, p2 = _ckpt(tmp_path / "a.pt", 1), _ckpt(tmp_path / "b.pt", 2)
    img = torch.randn(1, 20, 20, 16, generator=torch.Generator().manual_seed(0))
    ens = Predictor.from_paths([p1, p2]).probabilities(img)
    a = Predictor.from_paths([p1]).probabilities(img)
    b = Predictor.from_paths([p2]).probabilities(img)
    assert torch.allclose(ens, (a + b) / 2, atol=1e-6)


def test_ensemble_refuses_mismatched_checkpoints(tmp_path: Path) -> None:
    p1 = _ckpt(tmp_path / "a.pt", 1)
    p2 = _ckpt(tmp_path / "b.pt", 2, spacing=[2.0, 2.0, 2.0])
    with pytest.raises(InputError, match="spacing"):
        Predictor([load_checkpoint(p1), load_checkpoint(p2)])


def test_model_folder_without_checkpoints_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"checkpoint_best\.pt"):
        Predictor.from_paths([tmp_path])


@pytest.mark.realdata
def test_predict_real_la_case_lands_on_the_original_grid(tmp_path: Path) -> None:
    from support.paths import shared_path

    from medseg.datasets import load_dataset, read_case
    from medseg.models import network_spec_from_plan
    from medseg.plan import network_topology, plan_dataset, plan_from_dict

    root = shared_path("la2018_msd")
    ds = load_dataset(root)
    plan = plan_dataset(ds, 8.0)
    d = plan.model_dump(mode="json")
    d.update(target_spacing=[2.5, 2.5, 2.5], patch_size=[32, 32, 16])
    d["network"] = network_topology([32, 32, 16], [2.5, 2.5, 2.5]).model_dump()
    plan = plan_from_dict(d)
    spec = network_spec_from_plan(plan).model_copy(
        update={"filters": [4, 4, 4, 4][: len(d["network"]["filters"])]}
    )
    torch.manual_seed(0)
    meta = CheckpointMeta(
        network=spec.model_dump(),
        label_names=dict(plan.label_names),
        channel_names=list(plan.channel_names),
        spacing=list(plan.target_spacing),
        patch_size=list(plan.patch_size),
        plan=plan.model_dump(mode="json"),
    )
    ck = save_checkpoint(tmp_path / "la.pt", build_network(spec).state_dict(), meta)
    vols, _ = read_case(ds.cases[0], plan.label_names)
    lm = Predictor.from_paths([ck]).predict(vols)
    assert lm.same_grid(vols[0])
    assert lm.label_names == {0: "background", 1: "left_atrium"}
    assert set(np.unique(lm.array)) <= {0, 1}


def test_keep_largest_component_removes_smaller_islands_per_label() -> None:
    from medseg.inference import keep_largest_component

    a = np.zeros((12, 12, 12), dtype=np.uint8)
    a[1:5, 1:5, 1:5] = 1  # 64 voxels: kept
    a[8:10, 8:10, 8:10] = 1  # 8 voxels: removed
    a[0, 11, 11] = 2  # single voxel of label 2: its only component, kept
    a[6, 6, 6] = 2
    a[6, 6, 7] = 2  # a 2-voxel component of label 2: the largest, kept; the single one removed
    out = keep_largest_component(a)
    assert out[1:5, 1:5, 1:5].min() == 1 and int((out == 1).sum()) == 64
    assert int((out == 2).sum()) == 2 and out[0, 11, 11] == 0
    assert int((a == 1).sum()) == 72  # input untouched
    assert np.array_equal(keep_largest_component(a, [2]) == 1, a == 1)
