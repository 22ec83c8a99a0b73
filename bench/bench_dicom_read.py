"""Benchmark: medseg ``read_dicom`` vs SimpleITK ``ImageSeriesReader`` on a synthetic CT series.

Writes a realistic-looking 512×512×N CT (int16 HU, stored unsigned 12-bit with
RescaleIntercept -1024, 0.7×0.7×1.0 mm, ~70 header attributes per file) to a temporary folder,
once uncompressed (Explicit VR Little Endian) and once JPEG 2000 lossless (pydicom +
pylibjpeg-openjpeg encoder), then times, in the same run:

* medseg ``read_dicom(folder)`` (header scan + pixels, default settings),
* SimpleITK ``GetGDCMSeriesFileNames`` + ``ImageSeriesReader.Execute`` (the reference),

each the median of ``--repeats`` runs (page cache warm for both), and the peak memory of one
read in a fresh subprocess (RSS growth during the read, incl. worker processes, and numpy
allocations traced by tracemalloc for medseg). Prints a table with ratios medseg/SimpleITK.

Usage::

    python bench/bench_dicom_read.py                 # 400 slices
    python bench/bench_dicom_read.py --slices 100 --repeats 3
    python bench/bench_dicom_read.py --smoke         # 8 slices of 64x64, seconds (tests)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np


def phantom_slice(k: int, n: int, rows: int = 512, cols: int = 512) -> np.ndarray:
    """HU slice of an abdomen/chest-like phantom: air, body, fat rim, lungs, spine, noise
    (drawn on a 512-pixel scale whatever ``rows``/``cols``)."""
    rng = np.random.default_rng(k)
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float32)
    y, x = y * (512 / rows), x * (512 / cols)
    cy, cx = 256.0, 256.0
    z = k / max(n - 1, 1)
    hu = np.full((rows, cols), -1000.0, dtype=np.float32)
    body = ((x - cx) / 220) ** 2 + ((y - cy) / 160) ** 2 < 1
    hu[body] = -90.0  # fat
    inner = ((x - cx) / 200) ** 2 + ((y - cy) / 140) ** 2 < 1
    hu[inner] = 45.0  # soft tissue
    lung_r = 60 + 30 * np.sin(np.pi * z)
    for sx in (-85, 85):
        lung = ((x - cx - sx) / lung_r) ** 2 + ((y - cy + 10) / (lung_r * 1.3)) ** 2 < 1
        hu[lung] = -820.0
    spine = (x - cx) ** 2 + (y - cy - 105) ** 2 < 22**2
    hu[spine] = 700.0
    hu[(x - cx) ** 2 + (y - cy - 105) ** 2 < 10**2] = 250.0
    hu += rng.normal(0, 12, hu.shape).astype(np.float32) * (hu > -950)
    table = (y > cy + 175) & (y < cy + 182) & (np.abs(x - cx) < 230)
    hu[table] = 300.0
    return np.clip(np.rint(hu), -1024, 3071).astype(np.int16)


def _dataset(k: int, n: int, series_uid: str, study_uid: str, size: int = 512) -> object:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = "20260101"
    ds.StudyTime = ds.SeriesTime = "120000"
    ds.AcquisitionTime = ds.ContentTime = f"1201{k % 60:02d}.000"
    ds.AccessionNumber = ""
    ds.Modality = "CT"
    ds.Manufacturer = "SYNTHETIC"
    ds.InstitutionName = ""
    ds.ReferringPhysicianName = ""
    ds.StationName = "BENCH"
    ds.StudyDescription = "benchmark"
    ds.SeriesDescription = "synthetic CT 1.0"
    ds.ManufacturerModelName = "phantom"
    ds.PatientName = "Bench^Phantom"
    ds.PatientID = "BENCH"
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.BodyPartExamined = "CHEST"
    ds.SliceThickness = "1.0"
    ds.KVP = "120"
    ds.DataCollectionDiameter = "500"
    ds.ReconstructionDiameter = "358.4"
    ds.GantryDetectorTilt = "0"
    ds.TableHeight = "150"
    ds.RotationDirection = "CW"
    ds.ExposureTime = "500"
    ds.XRayTubeCurrent = "200"
    ds.Exposure = "100"
    ds.FilterType = "FLAT"
    ds.ConvolutionKernel = "B30f"
    ds.PatientPosition = "HFS"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = "1"
    ds.SeriesNumber = 2
    ds.AcquisitionNumber = 1
    ds.InstanceNumber = k + 1
    ds.ImagePositionPatient = ["-179.15", "-179.15", f"{-200.0 + k * 1.0:.2f}"]
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.FrameOfReferenceUID = study_uid + ".1"
    ds.PositionReferenceIndicator = ""
    ds.SliceLocation = f"{-200.0 + k:.2f}"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = size
    ds.Columns = size
    ds.PixelSpacing = [f"{0.7 * 512 / size:g}"] * 2
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.WindowCenter = "40"
    ds.WindowWidth = "400"
    ds.RescaleIntercept = "-1024"
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"
    return ds


def _write_one(args: tuple[int, int, str, str, str, bool, int]) -> None:
    k, n, folder, series_uid, study_uid, j2k, size = args
    ds = _dataset(k, n, series_uid, study_uid, size)
    stored = (phantom_slice(k, n, size, size).astype(np.int32) + 1024).astype(np.uint16)
    ds.PixelData = stored.tobytes()  # type: ignore[attr-defined]
    if j2k:
        from pydicom.uid import JPEG2000Lossless

        ds.compress(JPEG2000Lossless, encoding_plugin="pylibjpeg")  # type: ignore[attr-defined]
    # shuffled file names: the reader must sort by position
    name = f"IM{(k * 7919) % 100003:06d}.dcm"
    ds.save_as(Path(folder) / name, enforce_file_format=True)  # type: ignore[attr-defined]


def write_series(folder: Path, n: int, j2k: bool, size: int = 512) -> None:
    from pydicom.uid import generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    series_uid, study_uid = generate_uid(), generate_uid()
    jobs = [(k, n, str(folder), series_uid, study_uid, j2k, size) for k in range(n)]
    with ProcessPoolExecutor(os.cpu_count() or 1) as ex:
        list(ex.map(_write_one, jobs, chunksize=8))


def read_medseg(folder: str) -> np.ndarray:
    """Full work each time: header scan (no cached scan reused) + pixels."""
    from medseg.io.dicom import read_dicom, scan_dicom_folder

    return read_dicom(folder, scan=scan_dicom_folder(folder)).array


def read_sitk(folder: str) -> object:
    """The SimpleITK image (its pixel buffer is the volume; no extra numpy copy is timed)."""
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(folder))
    return reader.Execute()


def read_pydicom_loop(folder: str) -> np.ndarray:
    """Baseline: a plain pydicom loop (read every file fully, sort by z, stack, rescale)."""
    import pydicom

    dss = [pydicom.dcmread(p) for p in sorted(Path(folder).iterdir())]
    dss.sort(key=lambda d: float(d.ImagePositionPatient[2]))
    vol = np.stack([d.pixel_array for d in dss], axis=-1).astype(np.int16)
    vol += np.int16(int(dss[0].RescaleIntercept))
    return vol


def time_reader(name: str, folder: Path, repeats: int) -> list[float]:
    fn = {"medseg": read_medseg, "sitk": read_sitk, "pydicom": read_pydicom_loop}[name]
    fn(str(folder))  # warm-up: page cache, imports
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(str(folder))
        times.append(time.perf_counter() - t0)
    return times


def decode_strategies(folder: Path, n_files: int, workers: int) -> dict[str, float]:
    """Seconds to decode ``n_files`` compressed files serially, with a thread pool and with a
    process pool (``workers`` each): do the decoders release the GIL?"""
    from concurrent.futures import ThreadPoolExecutor

    from medseg.io.dicom.pixels import decode_file

    files = sorted(folder.iterdir())[:n_files]
    out: dict[str, float] = {}
    t0 = time.perf_counter()
    for f in files:
        decode_file(f)
    out["serial"] = time.perf_counter() - t0
    with ThreadPoolExecutor(workers) as ex:
        t0 = time.perf_counter()
        list(ex.map(decode_file, files))
        out[f"{workers} threads"] = time.perf_counter() - t0
    with ProcessPoolExecutor(workers) as ex:
        list(ex.map(abs, range(workers)))  # start the workers outside the timing
        t0 = time.perf_counter()
        list(ex.map(decode_file, files, chunksize=2))
        out[f"{workers} processes"] = time.perf_counter() - t0
    return out


_MEM_CHILD = r"""
import json, sys, threading, time, tracemalloc, psutil
sys.path.insert(0, {bench_dir!r})
import bench_dicom_read as b
name, folder = {name!r}, {folder!r}
import SimpleITK, pydicom, numpy  # imports before the baseline
from medseg.io.dicom import read_dicom
proc = psutil.Process()
rss0 = proc.memory_info().rss
peak = [rss0, 0]
done = threading.Event()
def sample():
    while not done.is_set():
        peak[0] = max(peak[0], proc.memory_info().rss)
        kids = 0
        for ch in proc.children(recursive=True):
            try:
                kids += ch.memory_info().rss
            except psutil.Error:
                pass
        peak[1] = max(peak[1], kids)
        time.sleep(0.002)
th = threading.Thread(target=sample, daemon=True)
th.start()
if name == "medseg":
    tracemalloc.start()
    nbytes = int(b.read_medseg(folder).nbytes)
    traced = tracemalloc.get_traced_memory()[1]
else:
    img = b.read_sitk(folder)
    nbytes = img.GetNumberOfPixels() * img.GetSizeOfPixelComponent()
    traced = None
time.sleep(0.01)
done.set()
th.join()
print(json.dumps({{"rss_growth": peak[0] - rss0, "child_peak_rss": peak[1], "traced": traced,
                  "nbytes": nbytes}}))
"""


def peak_memory(name: str, folder: Path) -> dict[str, float]:
    code = _MEM_CHILD.format(bench_dir=str(Path(__file__).parent), name=name, folder=str(folder))
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--slices", type=int, default=400)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=None, help="keep the series here")
    ap.add_argument("--size", type=int, default=512, help="rows = columns of each slice")
    ap.add_argument("--smoke", action="store_true", help="8 slices of 64x64, 1 repeat")
    args = ap.parse_args()
    if args.smoke:
        args.slices, args.repeats, args.size = 8, 1, 64
    import warnings

    warnings.filterwarnings("ignore", message="The value length")  # long generated UIDs
    from medseg.io.dicom import read_dicom

    tmp = tempfile.TemporaryDirectory(prefix="medseg_bench_dicom_")
    root = args.workdir or Path(tmp.name)
    rows = []
    loops = []
    for label, j2k in (("uncompressed", False), ("JPEG 2000 lossless", True)):
        folder = root / ("j2k" if j2k else "raw")
        if not folder.exists():
            t0 = time.perf_counter()
            write_series(folder, args.slices, j2k, args.size)
            print(f"wrote {label} series ({args.slices} files) in {time.perf_counter() - t0:.1f} s")
        ours = read_dicom(folder)
        import SimpleITK as sitk

        ref = sitk.GetArrayFromImage(read_sitk(str(folder))).transpose(2, 1, 0)
        assert np.array_equal(ours.array, ref), "medseg and SimpleITK disagree"
        t_m = time_reader("medseg", folder, args.repeats)
        t_s = time_reader("sitk", folder, args.repeats)
        t_p = time_reader("pydicom", folder, args.repeats)
        mem_m = peak_memory("medseg", folder)
        mem_s = peak_memory("sitk", folder)
        vol_mb = ours.array.nbytes / 2**20
        rows.append(
            (label, statistics.median(t_m), statistics.median(t_s), mem_m, mem_s, vol_mb, t_m, t_s)
        )
        loops.append((label, statistics.median(t_p), statistics.median(t_s), t_p))

    print(
        f"\n{args.size}x{args.size}x{args.slices} CT, int16 HU ({rows[0][5]:.1f} MiB); median of "
        f"{args.repeats} warm-cache runs; {os.cpu_count()} CPU cores\n"
    )
    hdr = (
        "| series | medseg s | SimpleITK s | ratio medseg/SimpleITK | medseg peak RSS growth "
        "/ volume | medseg numpy peak (tracemalloc) / volume | SimpleITK peak RSS growth / volume |"
    )
    print(hdr)
    print("|---|---|---|---|---|---|---|")
    for label, tm, ts, mm, ms, _, _, _ in rows:
        nb = mm["nbytes"]
        print(
            f"| {label} | {tm:.3f} | {ts:.3f} | {tm / ts:.2f} | {mm['rss_growth'] / nb:.2f} "
            f"(workers' peak RSS {mm['child_peak_rss'] / 2**20:.0f} MiB) | "
            f"{mm['traced'] / nb:.2f} | {ms['rss_growth'] / nb:.2f} |"
        )
    print("\nbaseline: plain pydicom loop (dcmread + pixel_array per file, sort, stack)")
    print("| series | pydicom loop s | SimpleITK s | ratio pydicom loop/SimpleITK |")
    print("|---|---|---|---|")
    for label, tp, ts, _ in loops:
        print(f"| {label} | {tp:.3f} | {ts:.3f} | {tp / ts:.2f} |")
    n_dec = min(args.slices, 60)
    workers = min(os.cpu_count() or 1, 16)
    strat = decode_strategies(root / "j2k", n_dec, workers)
    print(f"\nJPEG 2000 decode of {n_dec} files (medseg.io.dicom.pixels.decode_file):")
    print("| strategy | s | speed-up vs serial |")
    print("|---|---|---|")
    for name, t in strat.items():
        print(f"| {name} | {t:.3f} | {strat['serial'] / t:.2f} |")
    print("\nall runs (s):")
    for label, _, _, _, _, _, t_m, t_s in rows:
        runs_m = [round(t, 3) for t in t_m]
        runs_s = [round(t, 3) for t in t_s]
        print(f"  {label}: medseg {runs_m}, SimpleITK {runs_s}")


if __name__ == "__main__":
    main()
