"""A .nii.gz whose header declares far more voxel data than its deflate stream holds, with a
gzip size trailer forged to match the claim: it must be refused before the declared size is
allocated (peak memory measured in a subprocess), by the reader and by ``info --headers-only``.

In the default run again since 2026-12-08. It had been in the ``slow`` tier: full default runs
died with SIGSEGV at this file's first test (never when it ran alone), at a time when ONNX
Runtime and OpenVINO were loaded into the pytest process by earlier tests; they now run only in
child processes (``support.child``), which every module that uses them checks. The refusal is
also covered by the bad-input corpus (``tests/test_bad_inputs.py``: the forged-trailer file for
every command).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from support.paths import REPO

#: the header's claim: 1 GiB of uint8 voxels
CLAIM_SHAPE = (1024, 1024, 1024)
#: peak RSS allowed for the refusal (the interpreter, numpy, nibabel, medseg: ~150 MB)
BOUND_MB = 450


#: Runs in the child: 1.2 MB of incompressible voxel bytes behind a header claiming 1 GiB; the
#: ISIZE trailer says 1 GiB + header (modulo 2^32), as a crafted file would. The file is made in
#: the child too, so that the test process (which holds torch and more) only waits.
MAKE_LIAR = """
import gzip, sys
import nibabel as nib
import numpy as np
path = sys.argv[1]
hdr = nib.Nifti1Header()
hdr.set_data_dtype(np.uint8)
hdr.set_data_shape(CLAIM_SHAPE)
hdr.set_qform(np.eye(4), code=1)
hdr.set_sform(np.eye(4), code=1)
hdr["vox_offset"] = 352
head = hdr.binaryblock + b"\\0" * 4  # 348-byte header + empty extension flag
payload = np.random.default_rng(0).integers(0, 256, 1_200_000, dtype=np.uint8).tobytes()
data = bytearray(gzip.compress(head + payload, compresslevel=1))
needed = len(head) + int(np.prod(CLAIM_SHAPE))
data[-4:] = (needed % (1 << 32)).to_bytes(4, "little")
open(path, "wb").write(bytes(data))
"""


def _peak_rss_mb(code: str, liar: Path) -> tuple[float, str]:
    # VmHWM (/proc/self/status) starts anew at exec; ru_maxrss would carry the parent's
    # resident size over from the fork (the test process holds torch and more).
    make = MAKE_LIAR.replace("CLAIM_SHAPE", repr(CLAIM_SHAPE))
    script = (
        make
        + textwrap.dedent(code)
        + textwrap.dedent(
            """
        from pathlib import Path
        hwm = [ln for ln in Path("/proc/self/status").read_text().splitlines()
               if ln.startswith("VmHWM:")]
        print("PEAK_KB", hwm[0].split()[1])
        """
        )
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    res = subprocess.run(
        [sys.executable, "-c", script, str(liar)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    out = res.stdout + res.stderr
    peak = [ln for ln in res.stdout.splitlines() if ln.startswith("PEAK_KB")]
    assert peak, out
    return int(peak[-1].split()[1]) / 1024, out


def test_forged_trailer_refused_with_bounded_memory(tmp_path: Path) -> None:
    f = tmp_path / "liar.nii.gz"
    peak, out = _peak_rss_mb(
        f"""
        from medseg.errors import InputError
        from medseg.io import read_volume
        try:
            read_volume({str(f)!r})
        except InputError as exc:
            print("REFUSED", exc)
        """,
        f,
    )
    assert "REFUSED" in out and "liar.nii.gz" in out and "truncated or corrupt" in out, out
    assert peak < BOUND_MB, f"peak RSS {peak:.0f} MB: {out}"


@pytest.mark.parametrize("argv", [["info", "--headers-only"], ["info"]])
def test_forged_trailer_refused_by_info(tmp_path: Path, argv: list[str]) -> None:
    f = tmp_path / "liar.nii.gz"
    peak, out = _peak_rss_mb(
        f"""
        from medseg.cli import main
        print("EXIT", main({[*argv, str(f)]!r}))
        """,
        f,
    )
    assert "EXIT 1" in out and "liar.nii.gz" in out and "Traceback" not in out, out
    assert peak < BOUND_MB, f"peak RSS {peak:.0f} MB: {out}"
