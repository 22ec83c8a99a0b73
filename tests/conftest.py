"""Shared fixtures. Builders live in ``tests/support`` (imported as ``support``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from support.child import MEASURED_AUTO_ORDER  # noqa: F401  (read before any test narrows it)
from support.paths import SAMPLE, shared_path_calls

from medseg.inference import runtimes


@pytest.fixture(autouse=True)
def _auto_is_torch_here(monkeypatch: pytest.MonkeyPatch) -> None:
    """ONNX Runtime and OpenVINO never run in the pytest process (``support.child``): here the
    default runtime ``auto`` resolves to torch. What ``auto`` chooses for real (OpenVINO on
    the CPU when installed) is tested in child processes (``tests/test_runtimes.py``), and
    the ordering itself against :data:`MEASURED_AUTO_ORDER`."""
    monkeypatch.setitem(runtimes.AUTO_ORDER, "cpu", ("torch",))


@pytest.fixture(autouse=True)
def _realdata_marker_matches_use(request: pytest.FixtureRequest) -> object:
    """A test that reads ``../shared`` (through ``shared_path``) carries ``realdata``, and only
    such a test does; a mismatch fails the test at teardown."""
    before = shared_path_calls()
    yield
    used = shared_path_calls() > before
    marked = request.node.get_closest_marker("realdata") is not None
    if used and not marked:
        pytest.fail(f"{request.node.nodeid} reads ../shared but is not marked realdata")
    if marked and not used:
        pytest.fail(f"{request.node.nodeid} is marked realdata but never reads ../shared")


@pytest.fixture
def sample_dir() -> Path:
    return SAMPLE


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
