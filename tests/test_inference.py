"""Sliding-window inference: window placement, Gaussian map, exact blending for a pointwise
network, padding of small images, mirroring, ensembles and predict() on a Volume."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from support.plans import tiny_network, tiny_plan

from medseg.checkpoint import CheckpointMeta, load_checkpoint, save_checkpoint
from medseg.errors import ConfigError, InputError
from medseg.inference import (
    Predictor,
    compute_gaussian,
    compute_steps,
    predict_array,
    sliding_window_probabilities,
)
from medseg.models import build_model
from medseg.plan.schema import Plan


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
    with pytest.raises(ConfigError, match="overlap"):
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


@pytest.mark.parametrize(
    "shape", [(20, 18, 11), (6, 18, 11), (5, 7, 8)]
)  # second: smaller than the patch on one axis; third: one padded window
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


class Asymmetric(torch.nn.Module):
    """Looks one voxel ahead along every axis: not mirror-symmetric, so flipping matters."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv3d(1, 2, 3, padding=1, bias=False)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[0, 0, 2, 1, 1] = 3.0
            self.conv.weight[1, 0, 1, 2, 2] = 2.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def test_mirroring_averages_the_flipped_predictions_of_an_asymmetric_network() -> None:
    net = Asymmetric().eval()
    img = torch.randn(1, 8, 8, 8, generator=torch.Generator().manual_seed(3))
    plain = sliding_window_probabilities(net, img, (8, 8, 8))
    tta = sliding_window_probabilities(net, img, (8, 8, 8), mirror_axes=(0, 2))
    with torch.no_grad():
        expect = torch.zeros_like(plain)
        for dims in ([], [2], [4], [2, 4]):  # batch dims of (1, C, X, Y, Z): axes 0 and 2
            x = torch.flip(img[None], dims) if dims else img[None]
            p = torch.softmax(net(x), 1)
            expect += (torch.flip(p, dims) if dims else p)[0]
        expect /= 4
    assert torch.allclose(tta, expect, atol=1e-6)
    assert not torch.allclose(tta, plain, atol=1e-3)  # mirroring is not silently ignored


def test_predictor_tta_uses_the_axes_each_network_was_flipped_on(tmp_path: Path) -> None:
    from medseg.plan.schema import AugmentationPlan

    plan = tiny_plan(network=tiny_network(3, [4, 8, 8]))
    some = plan.model_copy(update={"augmentation": AugmentationPlan(flip_axes=[0, 1])})
    none = plan.model_copy(update={"augmentation": AugmentationPlan(flip_prob=0.0)})
    ck = [load_checkpoint(_ckpt(tmp_path / f"{i}.pt", i, p)) for i, p in enumerate((some, none))]
    p = Predictor(ck, tta=True)
    assert p.mirror_axes == [(0, 1), ()]
    assert Predictor(ck).mirror_axes == [(), ()]
    assert Predictor(ck, mirror_axes=(2,)).mirror_axes == [(2,), (2,)]


def test_rejects_non_4d_input() -> None:
    with pytest.raises(ValueError, match=r"\(C, X, Y, Z\)"):
        sliding_window_probabilities(Pointwise(), torch.zeros(1, 2, 8, 8, 8), (8, 8, 8))


PLAN = tiny_plan(network=tiny_network(3, [4, 8, 8]))


def _ckpt(path: Path, seed: int, plan: Plan = PLAN) -> Path:
    torch.manual_seed(seed)
    return save_checkpoint(path, build_model(plan).state_dict(), CheckpointMeta(plan=plan))


def test_ensemble_averages_probabilities(tmp_path: Path) -> None:
    p1, p2 = _ckpt(tmp_path / "a.pt", 1), _ckpt(tmp_path / "b.pt", 2)
    img = torch.randn(1, 20, 20, 16, generator=torch.Generator().manual_seed(0))
    ens = Predictor.from_paths([p1, p2]).probabilities(img)
    a = Predictor.from_paths([p1]).probabilities(img)
    b = Predictor.from_paths([p2]).probabilities(img)
    assert torch.allclose(ens, (a + b) / 2, atol=1e-6)


def test_ensemble_refuses_mismatched_checkpoints(tmp_path: Path) -> None:
    p1 = _ckpt(tmp_path / "a.pt", 1)
    coarse = tiny_plan(target_spacing=(2.0, 2.0, 2.0), network=tiny_network(3, [4, 8, 8]))
    p2 = _ckpt(tmp_path / "b.pt", 2, coarse)
    with pytest.raises(InputError, match="preprocessing differ"):
        Predictor([load_checkpoint(p1), load_checkpoint(p2)])
    other_labels = tiny_plan(labels={0: "background", 1: "tumour"}, network=PLAN.network)
    p3 = _ckpt(tmp_path / "c.pt", 3, other_labels)
    with pytest.raises(InputError, match="label names differ"):
        Predictor([load_checkpoint(p1), load_checkpoint(p3)])


def test_model_folder_without_checkpoints_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"expected fold_\*/checkpoint_last\.pt"):
        Predictor.from_paths([tmp_path])


def test_model_folder_fold_and_checkpoint_selection(tmp_path: Path) -> None:
    from medseg.inference import model_checkpoints

    for fold in ("0", "1", "10", "all"):
        (tmp_path / f"fold_{fold}").mkdir()
        _ckpt(tmp_path / f"fold_{fold}" / "checkpoint_last.pt", 0)
    _ckpt(tmp_path / "fold_1" / "checkpoint_best.pt", 0)
    names = [p.parent.name for p in model_checkpoints(tmp_path)]
    assert names == ["fold_0", "fold_1", "fold_10"]  # the CV folds, in numeric order
    assert [p.parent.name for p in model_checkpoints(tmp_path, folds=["all"])] == ["fold_all"]
    best = model_checkpoints(tmp_path, folds=[1], checkpoint="best")
    assert best == [tmp_path / "fold_1" / "checkpoint_best.pt"]
    with pytest.raises(InputError, match=r"fold_0/checkpoint_best\.pt: best checkpoint not"):
        model_checkpoints(tmp_path, checkpoint="best")
    with pytest.raises(ConfigError, match=r"^checkpoint: expected 'last' or 'best'"):
        model_checkpoints(tmp_path, checkpoint="final")


@pytest.mark.realdata
def test_predict_real_la_case_lands_on_the_original_grid(tmp_path: Path) -> None:
    from support.paths import shared_path

    from medseg.datasets import load_dataset, read_case
    from medseg.planning.rules import network_topology, plan_dataset

    root = shared_path("la2018_msd")
    ds = load_dataset(root)
    plan = plan_dataset(ds, 8.0)
    net = network_topology([32, 32, 16], [2.5, 2.5, 2.5])
    plan = plan.model_copy(
        update={
            "preprocessing": plan.preprocessing.model_copy(
                update={"target_spacing": (2.5, 2.5, 2.5)}
            ),
            "patch_size": (32, 32, 16),
            "network": net.model_copy(update={"filters": [4] * len(net.filters)}),
        }
    )
    ck = _ckpt(tmp_path / "la.pt", 0, Plan.model_validate(plan))
    vols, _ = read_case(ds.cases[0], plan.label_names)
    lm = Predictor.from_paths([ck]).predict(vols)
    assert lm.same_grid(vols[0])
    assert lm.label_names == {0: "background", 1: "left_atrium"}
    assert set(np.unique(lm.array)) <= {0, 1}


def test_torch_restore_equals_the_scipy_inverse_of_preprocessing() -> None:
    """labels_on_original_grid (torch, slabs) against restore_to_original (scipy zoom) on an
    oblique LPS case that is cropped, reoriented and resampled."""
    from medseg.inference import labels_on_original_grid
    from medseg.transforms.preprocessing import preprocess_case, restore_to_original
    from medseg.volume import Volume, affine_from_geometry

    rng = np.random.default_rng(0)
    arr = np.zeros((30, 26, 14), np.float32)
    arr[3:27, 2:24, 1:13] = rng.normal(size=(24, 22, 12))  # a non-zero box: cropping applies
    rot = np.array([[np.cos(0.3), -np.sin(0.3), 0], [np.sin(0.3), np.cos(0.3), 0], [0, 0, 1]])
    aff = affine_from_geometry((0.9, 1.1, 2.5), (3.0, -4.0, 10.0), rot @ np.diag([-1, -1, 1]))
    plan = tiny_plan(target_spacing=(1.5, 1.5, 1.5), crop=True)
    pre = preprocess_case([Volume(arr, aff)], plan.preprocessing)
    logits = torch.from_numpy(rng.normal(size=(3, *pre.info.resampled_shape)).astype(np.float32))
    probs = torch.softmax(logits * 3, 0)
    labels, half = labels_on_original_grid(probs, pre.info, with_probabilities=True)
    ref = restore_to_original(probs.numpy(), pre.info, is_label=False)
    assert labels.shape == arr.shape and half is not None and half.shape == (3, *arr.shape)
    assert np.mean(labels == ref.argmax(0)) >= 0.999
    np.testing.assert_allclose(half.astype(np.float32), ref, atol=2e-3)  # float16
    nearest, _ = labels_on_original_grid(probs, pre.info, resample_probabilities=False)
    lab = probs.argmax(0).numpy().astype(np.uint8)
    assert np.array_equal(nearest, restore_to_original(lab, pre.info, is_label=True))
