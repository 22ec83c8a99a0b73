"""Shared fixtures. Builders live in ``tests/support`` (imported as ``support``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from support.paths import SAMPLE


@pytest.fixture
def sample_dir() -> Path:
    return SAMPLE


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
