"""Where the test data live: the shipped sample data and the real-data tier.

The real-data tier uses the third-party scans in ``../shared/data`` beside the checkout (or
``$MEDSEG_SHARED_DATA``). On a developer's machine without them the tests skip with the
reason; with ``MEDSEG_REQUIRE_SHARED_DATA=1`` (set by ``.ci/run``, where the data must be
present) a missing path fails the test instead, so CI cannot pass by skipping.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "medseg" / "sample_data"
SHARED_DATA = Path(os.environ.get("MEDSEG_SHARED_DATA", REPO.parent / "shared" / "data"))
REQUIRE_SHARED = os.environ.get("MEDSEG_REQUIRE_SHARED_DATA", "") not in ("", "0")


_CALLS = [0]


def shared_path_calls() -> int:
    """How many times :func:`shared_path` was called (conftest checks each test's markers)."""
    return _CALLS[0]


def shared_path(*parts: str) -> Path:
    """Path under the real-data folder; skips the test (with the reason) when it is absent,
    or fails it when ``MEDSEG_REQUIRE_SHARED_DATA`` is set. The only way a test reaches
    ``../shared``: a test that calls it must be marked ``realdata``, and a test marked
    ``realdata`` must call it (checked for every test by ``conftest.py``)."""
    _CALLS[0] += 1
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        msg = f"real-data tier: {p} not present (set MEDSEG_SHARED_DATA or add ../shared)"
        if REQUIRE_SHARED:
            pytest.fail(msg + "; MEDSEG_REQUIRE_SHARED_DATA is set, so this is an error")
        pytest.skip(msg)
    return p
