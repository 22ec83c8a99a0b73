"""Checkpoint integrity: flipped bytes inside a weight tensor (.pt and .safetensors) are refused
naming the file; malicious pickles are refused by the refusal's type (whatever torch's wording);
a checkpoint path that links to another kind of file is one clear error; a network whose
outputs are not finite (NaN weights) fails the case naming the checkpoint."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from support.paths import SAMPLE
from support.plans import tiny_network, tiny_plan

from medseg.checkpoint import CheckpointMeta, load_checkpoint, save_checkpoint, weights_sha256
from medseg.errors import InputError
from medseg.models import build_model

PLAN = tiny_plan(target_spacing=(2.0, 2.0, 2.0), network=tiny_network(3, [4, 8, 8]))


def _weights() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return build_model(PLAN).state_dict()


def _largest(sd: dict[str, torch.Tensor]) -> str:
    return max(sd, key=lambda k: sd[k].numel())


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_flipped_weight_bytes_are_refused(tmp_path: Path, suffix: str) -> None:
    sd = _weights()
    p = save_checkpoint(tmp_path / f"model{suffix}", sd, CheckpointMeta(PLAN))
    assert load_checkpoint(p).state_dict.keys() == sd.keys()  # intact: loads
    raw = bytearray(p.read_bytes())
    tensor = sd[_largest(sd)].contiguous().numpy().tobytes()
    at = bytes(raw).find(tensor)
    assert at > 0  # the tensor's bytes are stored as they are
    for i in range(at + 8, at + 8 + 300):  # 300 bytes inside one weight tensor
        raw[i] ^= 0x5A
    p.write_bytes(bytes(raw))
    with pytest.raises(InputError, match=rf"model\{suffix}: damaged weights: their SHA-256 is"):
        load_checkpoint(p)


def test_hash_is_canonical() -> None:
    """The same weights hash alike whatever the key order or storage; any change alters it."""
    sd = _weights()
    shuffled = {k: sd[k].clone() for k in reversed(list(sd))}
    assert weights_sha256(shuffled) == weights_sha256(sd)
    name = _largest(sd)
    changed = dict(sd)
    changed[name] = sd[name].clone()
    changed[name].view(-1)[0] += 1e-6
    assert weights_sha256(changed) != weights_sha256(sd)
    renamed = {("x" + k if k == name else k): v for k, v in sd.items()}
    assert weights_sha256(renamed) != weights_sha256(sd)


class _System:
    def __reduce__(self) -> tuple[object, ...]:
        return (os.system, ("echo pwned",))


@pytest.mark.parametrize(
    "write",
    [
        lambda p: torch.save({"format": "medseg-checkpoint", "x": _System()}, p),
        lambda p: p.write_bytes(pickle.dumps({"x": _System()}, protocol=2)),
        lambda p: torch.save(
            {"format": "medseg-checkpoint", "x": _System()}, p, _use_new_zipfile_serialization=False
        ),
    ],
    ids=["zip", "plain_pickle", "legacy_torch"],
)
def test_malicious_pickle_refused_by_type(tmp_path: Path, write: object) -> None:
    p = tmp_path / "evil.pt"
    write(p)  # type: ignore[operator]
    with pytest.raises(InputError) as err:
        load_checkpoint(p)
    msg = str(err.value)
    assert msg.startswith(f"{p}: refused: the checkpoint holds objects other than tensors and ")
    assert "\n" not in msg and "weights_only=False" not in msg


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
@pytest.mark.parametrize(
    "target",
    ["spleen.csv", "cord_t2w.nii.gz", "spleen_dataset.json", "ct_dicom", "empty", "npy"],
)
def test_link_to_non_checkpoint_is_one_error(tmp_path: Path, suffix: str, target: str) -> None:
    if target == "empty":
        dest = tmp_path / "empty.bin"
        dest.write_bytes(b"")
    elif target == "npy":
        dest = tmp_path / "a.npy"
        np.save(dest, np.zeros(3))
    else:
        dest = SAMPLE / target
    link = tmp_path / f"last{suffix}"
    link.symlink_to(dest)
    with pytest.raises(InputError) as err:
        load_checkpoint(link)
    msg = str(err.value)
    assert msg.startswith(f"{link}: ") and "\n" not in msg, msg
    if dest.is_file():
        assert f"is a link to {dest.resolve()}" in msg, msg
    else:
        assert "is a folder" in msg, msg


def test_nan_weights_fail_the_case_naming_the_checkpoint(tmp_path: Path) -> None:
    from medseg.inference.predictor import Predictor
    from medseg.volume import Volume

    sd = _weights()
    sd = {
        k: (torch.full_like(v, float("nan")) if v.is_floating_point() else v) for k, v in sd.items()
    }
    p = save_checkpoint(tmp_path / "nan.pt", sd, CheckpointMeta(PLAN))
    pred = Predictor([load_checkpoint(p)])
    vol = Volume(np.random.default_rng(0).normal(size=(20, 20, 20)).astype(np.float32), np.eye(4))
    with pytest.raises(InputError, match=r"nan\.pt: the network produced non-finite outputs"):
        pred.predict([vol])
