"""Network construction from the plan's NetworkSpec: output shapes, deep supervision, and
impossible requests refused (never rewritten)."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError
from support.plans import tiny_network, tiny_plan

from medseg.models import build_model, build_network, count_parameters
from medseg.plan.schema import NetworkSpec


def _spec(arch: str = "dynunet", **kw: object) -> NetworkSpec:
    base: dict[str, object] = dict(
        architecture=arch,
        kernel_sizes=[[3, 3, 3], [3, 3, 3], [3, 3, 3]],
        strides=[[1, 1, 1], [2, 2, 2], [2, 2, 1]],
        filters=[4, 8, 16],
        deep_supervision=arch == "dynunet",
        deep_supr_num=1,
    )
    base.update(kw)
    return NetworkSpec.model_validate(base)


@pytest.mark.parametrize("arch", ["dynunet", "unet", "segresnet"])
def test_eval_output_shape_is_b_k_xyz(arch: str) -> None:
    torch.manual_seed(0)
    strides = [[1, 1, 1], [2, 2, 2], [2, 2, 2]]
    net = build_network(_spec(arch, strides=strides), 2, 3).eval()
    x = torch.randn(2, 2, 16, 16, 8)
    with torch.no_grad():
        y = net(x)
    assert tuple(y.shape) == (2, 3, 16, 16, 8)
    assert count_parameters(net) > 0


def test_unet_keeps_anisotropic_strides() -> None:
    """A plan that never pools the thin axis gives a UNet that does not pool it either."""
    net = build_network(_spec("unet", strides=[[1, 1, 1], [2, 2, 1], [2, 2, 1]]), 2, 3).eval()
    with torch.no_grad():
        y = net(torch.randn(1, 2, 16, 16, 1))  # one slice: pooling z would fail
    assert tuple(y.shape) == (1, 3, 16, 16, 1)


def test_dynunet_deep_supervision_stack_in_training_mode() -> None:
    spec = _spec(
        strides=[[1, 1, 1], [2, 2, 2], [2, 2, 2], [2, 2, 1]],
        kernel_sizes=[[3, 3, 3]] * 4,
        filters=[4, 8, 8, 8],
        deep_supr_num=2,
    )
    assert spec.deep_supervision_heads() == 2
    net = build_network(spec, 2, 3).train()
    y = net(torch.randn(1, 2, 16, 16, 8))
    assert tuple(y.shape) == (1, 3, 3, 16, 16, 8)  # (B, 1 + heads, K, X, Y, Z)
    assert tuple(net.eval()(torch.randn(1, 2, 16, 16, 8)).shape) == (1, 3, 16, 16, 8)


def test_anisotropic_strides_follow_spec() -> None:
    spec = _spec(deep_supervision=False)
    assert spec.total_stride() == (4, 4, 2)
    net = build_network(spec, 2, 3).eval()
    with torch.no_grad():
        assert tuple(net(torch.randn(1, 2, 8, 8, 2)).shape) == (1, 3, 8, 8, 2)


@pytest.mark.parametrize(
    "bad, fragment",
    [
        ({"deep_supr_num": 5}, "deep_supr_num: 5 heads need at least 7 stages, the network has 3"),
        ({"architecture": "unet", "deep_supervision": True}, "only the dynunet architecture"),
        ({"filters": [4, 8]}, "one entry per stage"),
        (
            {"strides": [[1, 1, 1], [2, 2]], "kernel_sizes": [[3, 3, 3]] * 2, "filters": [4, 8]},
            "3 positive ints",
        ),
        ({"in_channels": 1}, "Extra inputs"),
    ],
)
def test_impossible_network_requests_are_refused_not_rewritten(
    bad: dict[str, object], fragment: str
) -> None:
    with pytest.raises(ValidationError, match=fragment):
        _spec(**bad)


def test_build_model_takes_channels_and_classes_from_the_plan() -> None:
    plan = tiny_plan(
        channels=("T1", "T2"),
        labels={0: "background", 1: "a", 3: "c"},
        network=tiny_network(3),
    )
    net = build_model(plan).eval()
    with torch.no_grad():
        y = net(torch.randn(1, 2, 16, 16, 16))
    assert tuple(y.shape) == (1, 4, 16, 16, 16)  # max label + 1 classes
