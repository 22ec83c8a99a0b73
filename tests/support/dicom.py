"""Synthetic DICOM series with known geometry and values (pydicom only, independent of medseg).

:func:`write_series` writes single-frame CT slices with known ImagePositionPatient,
ImageOrientationPatient, PixelSpacing, rescale and pixel values (random, or given as
``volume``), so expected affines and voxels can be computed without medseg's reader
(:func:`expected_affine`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    generate_uid,
)

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def _rot(axis: Sequence[float], deg: float) -> np.ndarray:
    a = np.asarray(axis, dtype=float)
    a /= np.linalg.norm(a)
    t = np.deg2rad(deg)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + np.sin(t) * k + (1 - np.cos(t)) * k @ k


def oblique_iop(deg: float = 23.0) -> tuple[float, ...]:
    r = _rot((0.3, -0.5, 0.8), deg)
    row, col = r @ np.array([1.0, 0, 0]), r @ np.array([0, 1.0, 0])
    return tuple(float(v) for v in np.concatenate([row, col]))


def expected_affine(
    iop: Sequence[float], ipp0: Sequence[float], ps: tuple[float, float], step: float
) -> np.ndarray:
    row, col = np.array(iop[:3]), np.array(iop[3:])
    normal = np.cross(row, col)
    lps = np.eye(4)
    lps[:3, 0] = row * ps[1]
    lps[:3, 1] = col * ps[0]
    lps[:3, 2] = normal * step
    lps[:3, 3] = ipp0
    return LPS_TO_RAS @ lps


def write_series(
    folder: Path,
    *,
    n: int = 5,
    rows: int = 6,
    cols: int = 7,
    pixel_spacing: tuple[float, float] = (0.5, 0.7),
    step: float = 2.0,
    iop: Sequence[float] = AXIAL,
    origin: Sequence[float] = (-10.0, 20.0, 30.0),
    positions: Sequence[Sequence[float]] | None = None,
    slope: float = 1.0,
    intercept: float = -1024.0,
    dtype: type = np.uint16,
    series_uid: str | None = None,
    series_number: int = 3,
    description: str = "synthetic CT",
    seed: int = 0,
    shuffle: bool = True,
    extra: dict[str, object] | None = None,
    per_slice: Sequence[dict[str, object]] | None = None,
    transfer_syntax: str = ExplicitVRLittleEndian,
    prefix: str = "im",
    volume: np.ndarray | None = None,
    modality: str = "CT",
    study_uid: str = "1.2.3.4",
    frame_of_reference_uid: str | None = None,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Write ``n`` single-frame CT slices; returns (stored frames, LPS positions) in slice
    order along the normal. File names and InstanceNumbers are shuffled when ``shuffle``.

    ``volume`` (``(columns i, rows j, slices k)``, medseg's array order) gives the stored
    values instead of random ones; then ``rows``, ``cols`` and ``n`` come from its shape.
    """
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    series_uid = series_uid or generate_uid()
    row, col = np.array(iop[:3]), np.array(iop[3:])
    normal = np.cross(row, col)
    if volume is not None:
        cols, rows, n = (int(v) for v in volume.shape)
    if positions is None:
        positions = [np.asarray(origin) + k * step * normal for k in range(n)]
    n = len(positions)
    if volume is not None:
        frames = [np.ascontiguousarray(volume[:, :, k].T).astype(dtype) for k in range(n)]
    else:
        info = np.iinfo(dtype)
        hi = min(int(info.max), 4000)
        frames = [
            rng.integers(max(int(info.min), -1000), hi, (rows, cols)).astype(dtype)
            for _ in range(n)
        ]
    order = rng.permutation(n) if shuffle else np.arange(n)
    for file_idx, k in enumerate(order):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.PatientName = "Doe^Secret"
        ds.PatientID = "PID-SECRET-42"
        ds.PatientBirthDate = "19010101"
        ds.Modality = modality
        ds.SeriesInstanceUID = series_uid
        ds.StudyInstanceUID = study_uid
        if frame_of_reference_uid is not None:
            ds.FrameOfReferenceUID = frame_of_reference_uid
        ds.SeriesNumber = series_number
        ds.SeriesDescription = description
        ds.InstanceNumber = int(rng.integers(1, 10000)) if shuffle else int(k) + 1
        ds.ImagePositionPatient = [f"{v:.6f}" for v in positions[k]]
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in iop]
        ds.PixelSpacing = [str(pixel_spacing[0]), str(pixel_spacing[1])]
        ds.SliceThickness = "9.9"  # deliberately wrong: spacing must come from positions
        ds.Rows, ds.Columns = rows, cols
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        itemsize = np.dtype(dtype).itemsize
        ds.BitsAllocated = ds.BitsStored = 8 * itemsize
        ds.HighBit = 8 * itemsize - 1
        ds.PixelRepresentation = 1 if np.issubdtype(dtype, np.signedinteger) else 0
        ds.RescaleSlope = str(slope)
        ds.RescaleIntercept = str(intercept)
        for key, v in (extra or {}).items():
            setattr(ds, key, v)
        for key, v in ((per_slice[k] if per_slice else None) or {}).items():
            setattr(ds, key, v)
        ds.PixelData = frames[k].tobytes()
        if transfer_syntax in (ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian):
            meta.TransferSyntaxUID = transfer_syntax
        elif transfer_syntax != ExplicitVRLittleEndian:
            ds.compress(transfer_syntax)
        ds.save_as(folder / f"{prefix}{file_idx:04d}.dcm", enforce_file_format=True)
    return frames, [np.asarray(p, dtype=float) for p in positions]
