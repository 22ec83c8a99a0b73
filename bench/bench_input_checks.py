"""Benchmark: what the input-size checks cost when reading (medseg with vs without them).

The readers refuse headers that do not match their data before allocating or decoding
(``medseg.io.nifti._check_data_size``; ``medseg.io.dicom.pixels._check_rle_frame``). This
times, in the same run and in alternating rounds, ``read_volume`` with the checks and with
them replaced by no-ops (the reference), on:

* a CT-like phantom written as a single-member ``.nii.gz`` (nibabel; the gzip ISIZE trailer
  confirms the size, nothing is decompressed twice),
* the same file as concatenated gzip members (BGZF-like; the size is confirmed by streaming
  the whole file once more: the worst case),
* an RLE Lossless DICOM series (the last RLE segment of every frame is decoded once more).

Usage::

    python bench/bench_input_checks.py [--size 256] [--slices 96] [--rounds 5]
    python bench/bench_input_checks.py --smoke       # 32^3, 2 rounds, seconds (tests)
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np


def phantom(size: int, slices: int) -> np.ndarray:  # (size, size, slices), square slices
    """int16 HU-like volume: a body ellipse, a brighter core, noise (compresses like CT)."""
    rng = np.random.default_rng(0)
    g = np.indices((size, size, slices), dtype=np.float32)
    c = (size - 1) / 2
    body = ((g[0] - c) / (0.4 * size)) ** 2 + ((g[1] - c) / (0.3 * size)) ** 2 < 1
    core = ((g[0] - c) / (0.1 * size)) ** 2 + ((g[1] - c) / (0.1 * size)) ** 2 < 1
    hu = np.where(body, 40.0, -1000.0) + np.where(core, 300.0, 0.0)
    hu += rng.normal(0, 10, hu.shape) * body
    return hu.astype(np.int16)


def write_inputs(root: Path, vol: np.ndarray) -> dict[str, Path]:
    from pydicom.uid import RLELossless, generate_uid

    sys.path.insert(0, str(Path(__file__).parent))
    from bench_dicom_read import _dataset

    single = root / "ct.nii.gz"
    nib.save(nib.Nifti1Image(vol, np.eye(4)), single)
    raw = gzip.decompress(single.read_bytes())
    multi = root / "ct_multi.nii.gz"
    step = 1 << 16  # 64 KiB members, as BGZF
    multi.write_bytes(b"".join(gzip.compress(raw[i : i + step]) for i in range(0, len(raw), step)))
    folder = root / "rle"
    folder.mkdir()
    series, study = generate_uid(), generate_uid()
    for k in range(vol.shape[2]):  # the DICOM benchmark's CT header, stored HU + 1024
        ds: Any = _dataset(k, vol.shape[2], series, study, vol.shape[0])
        ds.PixelData = (
            (np.ascontiguousarray(vol[:, :, k].T).astype(np.int32) + 1024)
            .astype(np.uint16)
            .tobytes()
        )
        ds.compress(RLELossless)
        ds.save_as(folder / f"im{k:04d}.dcm", enforce_file_format=True)
    return {"nii.gz (single member)": single, "nii.gz (64 KiB members)": multi, "DICOM RLE": folder}


@contextlib.contextmanager
def checks_disabled() -> Iterator[None]:
    """The reference: the same readers with the size checks replaced by no-ops."""
    from medseg.io import nifti
    from medseg.io.dicom import pixels

    saved = nifti._check_data_size, pixels._check_rle_frame
    nifti._check_data_size = lambda *a, **k: None  # type: ignore[assignment]
    pixels._check_rle_frame = lambda *a, **k: None  # type: ignore[assignment]
    try:
        yield
    finally:
        nifti._check_data_size, pixels._check_rle_frame = saved


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--size", type=int, default=256, help="rows = columns")
    ap.add_argument("--slices", type=int, default=96)
    ap.add_argument("--rounds", type=int, default=5, help="alternating rounds (medians)")
    ap.add_argument("--smoke", action="store_true", help="32^3, 2 rounds (tests)")
    args = ap.parse_args()
    if args.smoke:
        args.size, args.slices, args.rounds = 32, 32, 2
    from medseg.io import read_volume
    from medseg.io.dicom import read_dicom

    vol = phantom(args.size, args.slices)
    with tempfile.TemporaryDirectory(prefix="medseg_bench_checks_") as tmp:
        inputs = write_inputs(Path(tmp), vol)
        rows = []
        for name, path in inputs.items():

            def read(p: Path = path) -> object:  # serial DICOM decoding: the check's own cost
                if p.is_dir():
                    return read_dicom(p, parallel=False)
                return read_volume(p, check_finite=False)

            read()  # warm-up: imports, page cache
            with_checks, without = [], []
            for r in range(args.rounds):
                order = [True, False] if r % 2 == 0 else [False, True]
                for on in order:
                    if on:
                        with_checks.append(timed(read))
                    else:
                        with checks_disabled():
                            without.append(timed(read))
            a, b = statistics.median(with_checks), statistics.median(without)
            rows.append((name, a, b, a / b))
    mb = vol.nbytes / 1e6
    print(
        f"\nread_volume of a {args.size}x{args.size}x{args.slices} int16 volume ({mb:.1f} MB), "
        f"medians of {args.rounds} alternating rounds, {os.cpu_count()} CPU cores\n"
    )
    print("| input | with checks s | without (reference) s | ratio with/without |")
    print("|---|---|---|---|")
    for name, a, b, ratio in rows:
        print(f"| {name} | {a:.3f} | {b:.3f} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
