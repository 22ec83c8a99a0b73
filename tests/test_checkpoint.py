"""Checkpoints: weights-only .pt and safetensors round trips, metadata, atomic writes, refusal
of foreign files."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from medseg.checkpoint import CheckpointMeta, load_checkpoint, save_checkpoint
from medseg.errors import InputError
from medseg.models import NetworkSpec, build_network

SPEC = NetworkSpec(
    in_channels=1,
    out_channels=2,
    kernel_sizes=[[3, 3, 3]] * 3,
    strides=[[1, 1, 1], [2, 2, 2], [2, 2, 2]],
    filters=[4, 8, 8],
)


def _meta() -> CheckpointMeta:
    return CheckpointMeta(
        network=SPEC.model_dump(),
        label_names={0: "background", 1: "left_atrium"},
        channel_names=["MR"],
        spacing=[0.625, 0.625, 0.625],
        patch_size=[16, 16, 16],
        normalization=[{"channel": "MR", "scheme": "zscore", "mean": 1.5, "std": 2.0}],
        plan={"target_spacing": [0.625, 0.625, 0.625]},
        config={"epochs": 3},
        epoch=3,
        metrics={"val_mean_dice": 0.5, "undefined": float("nan")},
    )


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_network(SPEC)


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_round_trip_weights_and_meta(tmp_path: Path, suffix: str) -> None:
    model = _model()
    path = save_checkpoint(tmp_path / f"m{suffix}", model.state_dict(), _meta())
    ck = load_checkpoint(path)
    for k, v in model.state_dict().items():
        assert torch.equal(ck.state_dict[k], v), k
    assert ck.meta.label_names == {0: "background", 1: "left_atrium"}
    assert ck.meta.spacing == [0.625, 0.625, 0.625]
    assert ck.meta.normalization[0]["mean"] == 1.5
    assert math.isnan(ck.meta.metrics["undefined"])
    assert ck.meta.network_spec == SPEC
    rebuilt = ck.build_model()
    x = torch.randn(1, 1, 16, 16, 16)
    with torch.no_grad():
        assert torch.allclose(rebuilt(x), model.eval()(x))
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left behind


def test_pt_loads_with_plain_weights_only_torch_load(tmp_path: Path) -> None:
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(1, 1, 16, 16, 16)).sum().backward()
    opt.step()
    training = {"epoch": 1, "optimizer": opt.state_dict(), "rng": {"torch": torch.get_rng_state()}}
    p = save_checkpoint(tmp_path / "last.pt", model.state_dict(), _meta(), training=training)
    raw = torch.load(p, weights_only=True)  # would raise if anything needed unpickling
    assert raw["format"] == "medseg-checkpoint"
    ck = load_checkpoint(p)
    assert ck.training is not None
    opt2 = torch.optim.SGD(_model().parameters(), lr=0.1, momentum=0.9)
    opt2.load_state_dict(ck.training["optimizer"])
    buf = opt2.state_dict()["state"][0]["momentum_buffer"]
    assert torch.equal(buf, opt.state_dict()["state"][0]["momentum_buffer"])
    assert load_checkpoint(p, with_training=False).training is None


def test_overwrite_is_atomic_replacement(tmp_path: Path) -> None:
    p = tmp_path / "c.pt"
    save_checkpoint(p, _model().state_dict(), _meta())
    meta = _meta()
    meta.epoch = 7
    save_checkpoint(p, _model().state_dict(), meta)
    assert load_checkpoint(p).meta.epoch == 7
    assert sorted(x.name for x in tmp_path.iterdir()) == ["c.pt"]


def test_refuses_foreign_and_missing_files(tmp_path: Path) -> None:
    foreign = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(InputError, match=r"other\.pt: expected a medseg-checkpoint"):
        load_checkpoint(foreign)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a zip")
    with pytest.raises(InputError, match=r"junk\.pt: not a readable checkpoint"):
        load_checkpoint(junk)
    with pytest.raises(InputError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "missing.pt")


class Evil:
    """An arbitrary class: unpickling it must be refused."""


def test_pickled_object_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "evil.pt"
    torch.save({"format": "medseg-checkpoint", "x": Evil()}, p)
    with pytest.raises(InputError, match="weights-only load failed"):
        load_checkpoint(p)


def test_training_state_not_allowed_in_safetensors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot be stored"):
        save_checkpoint(tmp_path / "m.safetensors", _model().state_dict(), _meta(), {"epoch": 1})
