"""Network construction from a NetworkSpec / plan: output shapes, deep supervision, validation."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from medseg.models import NetworkSpec, build_network, count_parameters, network_spec_from_plan


def _spec(arch: str = "dynunet", **kw: object) -> NetworkSpec:
    base: dict[str, object] = dict(
        architecture=arch,
        in_channels=2,
        out_channels=3,
        kernel_sizes=[[3, 3, 3], [3, 3, 3], [3, 3, 3]],
        strides=[[1, 1, 1], [2, 2, 2], [2, 2, 1]],
        filters=[4, 8, 16],
    )
    base.update(kw)
    return NetworkSpec.model_validate(base)


@pytest.mark.parametrize("arch", ["dynunet", "unet", "segresnet"])
def test_eval_output_shape_is_b_k_xyz(arch: str) -> None:
    torch.manual_seed(0)
    strides = [[1, 1, 1], [2, 2, 2], [2, 2, 2]]
    net = build_network(_spec(arch, strides=strides)).eval()
    x = torch.randn(2, 2, 16, 16, 8)
    with torch.no_grad():
        y = net(x)
    assert tuple(y.shape) == (2, 3, 16, 16, 8)
    assert count_parameters(net) > 0


def test_unet_keeps_anisotropic_strides() -> None:
    """A plan that never pools the thin axis gives a UNet that does not pool it either."""
    net = build_network(_spec("unet", strides=[[1, 1, 1], [2, 2, 1], [2, 2, 1]])).eval()
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
    net = build_network(spec).train()
    y = net(torch.randn(1, 2, 16, 16, 8))
    assert tuple(y.shape) == (1, 3, 3, 16, 16, 8)  # (B, 1 + heads, K, X, Y, Z)
    assert tuple(net.eval()(torch.randn(1, 2, 16, 16, 8)).shape) == (1, 3, 16, 16, 8)


def test_anisotropic_strides_follow_spec() -> None:
    spec = _spec(deep_supervision=False)
    assert spec.divisor() == (4, 4, 2)
    net = build_network(spec).eval()
    with torch.no_grad():
        assert tuple(net(torch.randn(1, 2, 8, 8, 2)).shape) == (1, 3, 8, 8, 2)


def test_too_deep_supervision_is_clamped_to_available_stages() -> None:
    spec = _spec(deep_supr_num=5)
    assert spec.deep_supr_num == 1  # 3 stages -> at most 1 extra head


@pytest.mark.parametrize(
    "bad, fragment",
    [
        ({"filters": [4, 8]}, "one entry per stage"),
        (
            {"strides": [[1, 1, 1], [2, 2]], "kernel_sizes": [[3, 3, 3]] * 2, "filters": [4, 8]},
            "3 positive ints",
        ),
        ({"out_channels": 1}, "greater than or equal to 2"),
        ({"unknown": 1}, "Extra inputs"),
    ],
)
def test_spec_rejects_bad_values(bad: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        _spec(**bad)


def test_spec_from_plan_uses_plan_topology_and_labels() -> None:
    net = SimpleNamespace(
        kernel_sizes=[[3, 3, 1], [3, 3, 3]], strides=[[1, 1, 1], [2, 2, 1]], filters=[32, 64]
    )
    plan = SimpleNamespace(
        network=net, channel_names=["T1", "T2"], label_names={0: "background", 1: "a", 3: "c"}
    )

    spec = network_spec_from_plan(plan, architecture="unet", deep_supervision=False)
    assert spec.in_channels == 2
    assert spec.out_channels == 4  # max label + 1
    assert spec.kernel_sizes == [[3, 3, 1], [3, 3, 3]]
    assert spec.architecture == "unet"
