"""The one reader of the launcher's environment and the one device/precision resolver."""

from __future__ import annotations

import pytest
import torch

from medseg.errors import ConfigError
from medseg.runtime import DistInfo, dist_info, resolve_amp, resolve_device


def test_dist_info_reads_the_torchrun_environment() -> None:
    assert dist_info({}) == DistInfo(0, 1, 0)
    info = dist_info({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert info == DistInfo(3, 4, 1) and info.enabled and not info.is_main
    assert dist_info({"RANK": "2", "WORLD_SIZE": "4"}).local_rank == 2
    with pytest.raises(ConfigError, match=r"RANK: expected 0 \.\. 1 \(WORLD_SIZE 2\), found 2"):
        dist_info({"RANK": "2", "WORLD_SIZE": "2"})
    with pytest.raises(ConfigError, match="WORLD_SIZE: expected an integer >= 1"):
        dist_info({"WORLD_SIZE": "two"})


def test_device_and_precision() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    for bad in ("gpu", "cuda:x", ""):
        with pytest.raises(ConfigError, match=r"^device: expected auto, cpu, cuda or cuda:N") as e:
            resolve_device(bad)
        assert e.value.param == "device"
    if not torch.cuda.is_available():
        assert resolve_device("auto") == torch.device("cpu")
        with pytest.raises(ConfigError, match="no CUDA device"):
            resolve_device("cuda:1")
    cpu = torch.device("cpu")
    assert resolve_amp("auto", cpu) is None and resolve_amp("none", cpu) is None
    assert resolve_amp("bf16", cpu) is torch.bfloat16
    with pytest.raises(ConfigError, match=r"^amp: fp16 needs a CUDA device"):
        resolve_amp("fp16", cpu)
    with pytest.raises(ConfigError, match=r"^amp: expected auto, none, bf16, fp16"):
        resolve_amp("fp8", cpu)
