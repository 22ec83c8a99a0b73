"""Shared fixtures: shipped sample data, the real-data tier (``../shared/data``), tiny volumes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "medseg" / "sample_data"
SHARED_DATA = Path(os.environ.get("MEDSEG_SHARED_DATA", REPO.parent / "shared" / "data"))


def shared_path(*parts: str) -> Path:
    """Path under ``../shared/data``; skips the test (with the reason) when it is absent."""
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"real-data tier: {p} not present (set MEDSEG_SHARED_DATA or add ../shared)")
    return p


@pytest.fixture
def sample_dir() -> Path:
    return SAMPLE


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
