"""Checkpoints: weights-only .pt and safetensors round trips, one record per fact (the plan
carries network, labels, channels, spacing, patch size), atomic writes, refusal of foreign,
malformed and pickled files, weights verified against their stored SHA-256 (damaged weights
and checkpoints without the hash refused), non-finite network outputs refused."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from support.plans import tiny_network, tiny_plan

from medseg.checkpoint import CheckpointMeta, load_checkpoint, save_checkpoint, weights_sha256
from medseg.errors import ConfigError, InputError
from medseg.models import build_model

PLAN = tiny_plan(
    labels={0: "background", 1: "left_atrium"},
    target_spacing=(0.625, 0.625, 0.625),
    network=tiny_network(3, [4, 8, 8]),
)


def _meta() -> CheckpointMeta:
    return CheckpointMeta(
        plan=PLAN,
        config={"epochs": 3},
        fold=0,
        epoch=3,
        metrics={"val_mean_dice": 0.5, "undefined": float("nan")},
    )


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(PLAN)


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_round_trip_weights_and_meta(tmp_path: Path, suffix: str) -> None:
    model = _model()
    path = save_checkpoint(tmp_path / f"m{suffix}", model.state_dict(), _meta())
    ck = load_checkpoint(path)
    for k, v in model.state_dict().items():
        assert torch.equal(ck.state_dict[k], v), k
    assert ck.meta.plan == PLAN  # network, labels, channels, spacing, patch: one record
    assert ck.meta.label_names == {0: "background", 1: "left_atrium"}
    assert ck.meta.channel_names == ["MR"]
    assert ck.meta.fold == 0 and ck.meta.config == {"epochs": 3}
    assert math.isnan(ck.meta.metrics["undefined"])
    stored = json.loads(ck.meta.to_json())
    assert set(stored) == {"plan", "config", "fold", "epoch", "metrics", "medseg_version"}
    rebuilt = ck.build_model()
    x = torch.randn(1, 1, 16, 16, 16)
    with torch.no_grad():
        assert torch.allclose(rebuilt(x), model.eval()(x))
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left behind


def test_pt_loads_with_plain_weights_only_torch_load(tmp_path: Path) -> None:
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model.eval()(torch.randn(1, 1, 16, 16, 16)).sum().backward()
    opt.step()
    training = {"epoch": 1, "optimizer": opt.state_dict(), "rng": {"torch": torch.get_rng_state()}}
    p = save_checkpoint(tmp_path / "last.pt", model.state_dict(), _meta(), training=training)
    raw = torch.load(p, weights_only=True)  # would raise if anything needed unpickling
    assert raw["format"] == "medseg-checkpoint" and raw["format_version"] == 3
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
    save_checkpoint(p, _model().state_dict(), replace(_meta(), epoch=7))
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


def _payload(**changes: object) -> dict[str, object]:
    sd = {k: v.clone() for k, v in _model().state_dict().items()}
    base: dict[str, object] = {
        "format": "medseg-checkpoint",
        "format_version": 3,
        "meta_json": _meta().to_json(),
        "weights_sha256": weights_sha256(sd),
        "model": sd,
    }
    base.update(changes)
    return base


@pytest.mark.parametrize(
    "changes, fragment",
    [
        ({"meta_json": None}, "lacks its metadata or weights"),
        ({"meta_json": "{}"}, "checkpoint metadata is not valid: no 'plan' record"),
        ({"meta_json": "[1, 2"}, "checkpoint metadata is not valid"),
        ({"format_version": 99}, "checkpoint format version 99"),
    ],
)
def test_malformed_checkpoints_are_input_errors(
    tmp_path: Path, changes: dict[str, object], fragment: str
) -> None:
    p = tmp_path / "bad.pt"
    torch.save(_payload(**changes), p)
    with pytest.raises(InputError, match=fragment) as err:
        load_checkpoint(p)
    assert str(p) in str(err.value)


def test_bad_network_record_and_mismatched_weights_are_input_errors(tmp_path: Path) -> None:
    doc = json.loads(_meta().to_json())
    doc["plan"]["network"]["deep_supr_num"] = 7
    p = tmp_path / "net.pt"
    torch.save(_payload(meta_json=json.dumps(doc)), p)
    with pytest.raises(InputError, match=r"net\.pt.*deep_supr_num"):
        load_checkpoint(p)
    sd = _model().state_dict()
    first = next(iter(sd))
    sd[first] = torch.zeros(3, 3)
    p = tmp_path / "shapes.pt"
    torch.save(_payload(model=sd, weights_sha256=weights_sha256(sd)), p)
    ck = load_checkpoint(p)
    with pytest.raises(InputError, match=r"shapes\.pt: weights do not fit the network"):
        ck.build_model()


class Evil:
    """An arbitrary class: unpickling it must be refused."""


def test_pickled_object_is_refused_in_one_line(tmp_path: Path) -> None:
    p = tmp_path / "evil.pt"
    torch.save({"format": "medseg-checkpoint", "x": Evil()}, p)
    with pytest.raises(
        InputError,
        match=r"refused: the checkpoint holds objects other than tensors .*test_checkpoint\.Evil",
    ) as err:
        load_checkpoint(p)
    msg = str(err.value)
    assert "\n" not in msg and "weights_only=False" not in msg  # no advice to turn it off


def test_training_state_not_allowed_in_safetensors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be stored"):
        save_checkpoint(tmp_path / "m.safetensors", _model().state_dict(), _meta(), {"epoch": 1})


@pytest.mark.parametrize("version", [1, 2])
def test_checkpoints_without_weights_hash_are_refused(tmp_path: Path, version: int) -> None:
    """Formats 1 and 2 were written before the weights hash: refused, saying why."""
    p = tmp_path / "old.pt"
    payload = _payload(format_version=version)
    del payload["weights_sha256"]
    torch.save(payload, p)
    with pytest.raises(InputError, match=rf"old\.pt: checkpoint format version {version} carries "):
        load_checkpoint(p)
    p3 = tmp_path / "nohash.pt"
    payload["format_version"] = 3
    torch.save(payload, p3)
    with pytest.raises(InputError, match=r"nohash\.pt: checkpoint lacks its weights hash"):
        load_checkpoint(p3)
