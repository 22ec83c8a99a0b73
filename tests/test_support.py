"""The test tier rules enforced by ``conftest.py``: ``realdata`` marks exactly the tests that
read ``../shared`` (through ``shared_path``), and in CI a missing data set fails."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from support.paths import REPO

_TESTS = """
import pytest
from support.paths import shared_path

@pytest.mark.realdata
def test_marked_but_never_reads_shared():
    pass

def test_reads_shared_but_not_marked():
    shared_path("no-such-data-set")

@pytest.mark.realdata
def test_marked_and_reads_shared():
    shared_path("no-such-data-set")

def test_plain():
    pass
"""


def _run(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    shutil.copy(REPO / "tests" / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_tiers.py").write_text(_TESTS)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(tmp_path),
            "-q",
            "-rA",
            "-p",
            "no:cacheprovider",
            "-o",
            f"pythonpath={REPO / 'tests'}",
            "-o",
            "markers=realdata: x",
            "-o",
            "addopts=",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "MEDSEG_SHARED_DATA": str(tmp_path / "absent"), **env},
    )


def test_realdata_marker_must_match_the_use_of_shared_data(tmp_path: Path) -> None:
    res = _run(tmp_path, MEDSEG_REQUIRE_SHARED_DATA="")
    out = res.stdout
    assert res.returncode == 1, out
    assert "ERROR test_tiers.py::test_marked_but_never_reads_shared" in out
    assert "is marked realdata but never reads ../shared" in out
    assert "ERROR test_tiers.py::test_reads_shared_but_not_marked" in out
    assert "reads ../shared but is not marked realdata" in out
    assert "2 passed, 2 skipped, 2 errors" in out  # both shared_path calls skip
    assert "PASSED test_tiers.py::test_plain" in out


def test_missing_shared_data_fails_when_required(tmp_path: Path) -> None:
    res = _run(tmp_path, MEDSEG_REQUIRE_SHARED_DATA="1")
    assert "FAILED test_tiers.py::test_marked_and_reads_shared" in res.stdout
    assert "MEDSEG_REQUIRE_SHARED_DATA is set, so this is an error" in res.stdout
