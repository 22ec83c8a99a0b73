"""Choosing the runtime of a prediction (medseg.inference.runtimes): ``auto`` is resolved and
logged, an explicitly requested runtime whose package is missing is one clear error naming the
package and the extra, `medseg predict --help` names the runtimes, and a graph run by each
runtime gives the torch network's output.

ONNX Runtime and OpenVINO run only in child processes (:mod:`support.child`): the tests here
resolve runtimes by looking for the packages (``find_spec``) or by faking their import as
failing, never by importing them."""

from __future__ import annotations

import builtins
import importlib
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from support.child import MEASURED_AUTO_ORDER, assert_runtimes_not_imported, run_graph

from medseg.cli import main
from medseg.errors import ConfigError
from medseg.inference import runtimes
from medseg.inference.runtimes import onnx_graph, resolve_runtime


def _hide(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    """Make ``import NAME`` fail as it does when the package is not installed."""
    real_import = builtins.__import__
    real_import_module = importlib.import_module
    real_find = importlib.util.find_spec

    def fake_import(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.split(".")[0] in names:
            raise ModuleNotFoundError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    def fake_find(name: str, *args: Any, **kwargs: Any) -> Any:
        return None if name.split(".")[0] in names else real_find(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)

    def fake_import_module(name: str, *args: Any) -> Any:
        if name.split(".")[0] in names:
            raise ModuleNotFoundError(f"No module named {name!r}")
        return real_import_module(name, *args)

    monkeypatch.setattr(importlib, "import_module", fake_import_module)
    monkeypatch.setattr(importlib.util, "find_spec", fake_find)


@pytest.mark.parametrize(
    "runtime,package", [("onnxruntime", "onnxruntime"), ("openvino", "openvino")]
)
def test_missing_runtime_package_is_one_clear_error(
    monkeypatch: pytest.MonkeyPatch, runtime: str, package: str
) -> None:
    _hide(monkeypatch, package)
    with pytest.raises(ConfigError) as info:
        resolve_runtime(runtime, "cpu")
    msg = str(info.value)
    assert msg.startswith("runtime: ") and f"'{package}'" in msg
    assert "pip install 'medseg[onnx]'" in msg and "\n" not in msg


def test_missing_package_through_the_cli(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from support.plans import tiny_network, tiny_plan
    from support.volumes import write_nifti

    from medseg.checkpoint import CheckpointMeta, save_checkpoint
    from medseg.models import build_model

    plan = tiny_plan(network=tiny_network(3))
    ckpt = save_checkpoint(
        tmp_path / "m.pt", build_model(plan).state_dict(), CheckpointMeta(plan=plan)
    )
    write_nifti(tmp_path / "in" / "a.nii.gz", np.zeros((20, 20, 20), np.float32))
    _hide(monkeypatch, "openvino")
    args = ["predict", "--model", str(ckpt), str(tmp_path / "in"), str(tmp_path / "out")]
    assert main([*args, "--runtime", "openvino", "--device", "cpu"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "medseg predict: error: runtime: openvino needs the Python package 'openvino', which "
        "is not installed; install it with pip install 'medseg[onnx]'"
    ]


def test_auto_takes_the_fastest_installed_and_says_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="medseg.inference")
    monkeypatch.setattr(runtimes, "AUTO_ORDER", MEASURED_AUTO_ORDER)
    assert MEASURED_AUTO_ORDER["cpu"] == ("openvino", "onnxruntime", "torch")
    first, second = runtimes.AUTO_ORDER["cpu"][:2]
    assert resolve_runtime("auto", "cpu") == first
    assert f"runtime auto: {first} on cpu" in caplog.text
    _hide(monkeypatch, runtimes.ONNX_RUNTIMES[first])
    caplog.clear()
    assert resolve_runtime("auto", "cpu") == second
    assert f"{first} not installed" in caplog.text
    assert resolve_runtime("auto", "cuda") == "torch"
    _hide(monkeypatch, *runtimes.ONNX_RUNTIMES.values())
    with pytest.raises(ConfigError, match="pip install 'medseg\\[onnx\\]'"):
        resolve_runtime("auto", "cpu", onnx_only=True)


def test_impossible_requests_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"^runtime: expected auto, torch"):
        resolve_runtime("tensorrt", "cpu")
    with pytest.raises(ConfigError, match="runs on the CPU"):
        resolve_runtime("onnxruntime", "cuda")
    with pytest.raises(ConfigError, match="torch cannot run an ONNX model folder"):
        resolve_runtime("torch", "cpu", onnx_only=True)
    with pytest.raises(ConfigError, match="opset: expected >= 17"):
        onnx_graph(torch.nn.Conv3d(1, 2, 1), 1, (4, 4, 4), opset=13)


def test_predict_help_names_the_runtimes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    out = capsys.readouterr().out
    assert "--runtime" in out
    for name in ("torch", "onnxruntime", "openvino", "auto"):
        assert name in out
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    assert "--format" in capsys.readouterr().out


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_runtime_network_matches_torch_for_any_batch(runtime: str, tmp_path: Path) -> None:
    """A module with deep-supervision-like list output: the graph keeps the first head (the
    graph is made here; the runtime runs it in a child process)."""

    class TwoHeads(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = torch.nn.Conv3d(2, 3, 3, padding=1)
            self.b = torch.nn.Conv3d(2, 3, 1)

        def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
            return [self.a(x).relu(), self.b(x)]

    torch.manual_seed(0)
    net = TwoHeads().eval()
    inputs = [torch.randn(batch, 2, 8, 6, 4) for batch in (1, 3)]
    outputs = run_graph(
        onnx_graph(net, 2, (8, 6, 4)), runtime, [x.numpy() for x in inputs], tmp_path
    )
    for x, got in zip(inputs, outputs, strict=True):
        with torch.no_grad():
            ref = net(x)[0]
        assert got.shape == tuple(ref.shape) and got.dtype == np.float32
        assert torch.allclose(torch.from_numpy(got), ref, atol=1e-5)


def test_no_runtime_was_imported_into_the_test_process() -> None:
    """Last in this module: no test above imported ONNX Runtime or OpenVINO (only looked for
    them, or faked their import failing)."""
    assert_runtimes_not_imported()
