"""Shared fixtures. Builders live in ``tests/support`` (imported as ``support``)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from support.paths import SAMPLE, shared_path_calls

# The test process grows large (torch, ONNX runtimes, many test modules) and starts many
# subprocesses; under CPython 3.11 a vfork-based start from it has been seen to leave the
# parent's interpreter frame corrupt (SIGSEGV in the eval loop right after the child started,
# always at the same test of the full run, never when run alone). Starting children with fork
# costs a little time and avoids it; medseg itself starts no subprocesses this way.
subprocess._USE_VFORK = False  # type: ignore[attr-defined]


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
