"""Every benchmark in ``bench/`` runs in its ``--smoke`` mode (tiny sizes, seconds) and
prints its table, so that a benchmark cannot rot silently. Timings are not asserted."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from support.paths import REPO

SCRIPTS = sorted((REPO / "bench").glob("*.py"))


def test_bench_scripts_are_found() -> None:
    assert SCRIPTS, f"no benchmark scripts found in {REPO / 'bench'}"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_bench_smoke_run_prints_its_table(script: Path, tmp_path: Path) -> None:
    res = subprocess.run(
        [sys.executable, str(script), "--smoke"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, f"{script.name} --smoke failed:\n{res.stderr[-4000:]}"
    lines = [ln for ln in res.stdout.splitlines() if ln.strip()]
    table = [ln for ln in lines if ln.lstrip().startswith("|") or re.search(r"\S\s{2,}\S", ln)]
    assert len(table) >= 3, f"{script.name} --smoke printed no table:\n{res.stdout[-4000:]}"
    # every benchmark compares with a reference in the same run (a speed ratio, or for the
    # accuracy benchmarks the references they score against)
    assert re.search(r"ratio|speed-up|/medseg|medseg/|\bvs\b", res.stdout, re.I), res.stdout[-4000:]
