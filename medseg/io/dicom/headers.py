"""DICOM header reading: one :class:`FrameHeader` per 2-D frame, no pixel data.

A classic single-frame file gives one frame; an enhanced multi-frame file (Enhanced CT/MR)
gives one frame per item of its Per-Frame Functional Groups, with values taken from the
per-frame groups, then the shared groups, then the top-level dataset.

Only non-identifying attributes are copied into the records: patient names, IDs and birth
dates are never read into them, so they cannot reach logs, errors or metadata.

Positions and orientations are kept in DICOM's LPS+ patient coordinates (mm); the conversion
to RAS+ happens when the affine is built (:mod:`medseg.io.dicom.geometry`).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medseg.errors import UnreadableDicomError
from medseg.io.dicom.elements import (
    DEFLATED,
    as_float,
    as_floats,
    as_int,
    as_str,
    as_text,
    first_item,
    get_value,
    lookup,
    pixel_location,
)
from medseg.io.dicom.sniff import is_dicom_file, sniff_dicom

#: SOP classes that are DICOM files but never image volumes (reason shown in ``skipped``).
_NON_IMAGE_SOP = {
    "1.2.840.10008.1.3.10": (
        "DICOMDIR (media directory; its images are found by walking the folder)"
    ),
    "1.2.840.10008.5.1.4.1.1.66.4": (
        "DICOM-SEG segmentation object (not an image series; read the file itself with "
        "read_label_map / read_dicom_seg)"
    ),
    "1.2.840.10008.5.1.4.1.1.66.7": (
        "DICOM-SEG label-map segmentation object (not an image series; read the file itself "
        "with read_label_map / read_dicom_seg)"
    ),
}


@dataclass(frozen=True)
class FrameHeader:
    """The header values of one 2-D frame that series building and pixel reading need.

    ``ipp`` is ImagePositionPatient (LPS+ mm, centre of the first transmitted pixel), ``iop``
    ImageOrientationPatient (row cosine then column cosine, LPS+), ``pixel_spacing`` is DICOM
    PixelSpacing ``(between rows, between columns)`` in mm. ``frame`` is the 0-based frame
    index inside a multi-frame file, ``None`` for a single-frame file.
    """

    path: Path
    frame: int | None
    n_frames_in_file: int
    sop_class_uid: str
    sop_instance_uid: str | None
    series_uid: str
    series_number: int | None
    description: str | None
    modality: str | None
    instance_number: int | None
    rows: int
    cols: int
    ipp: tuple[float, float, float] | None
    iop: tuple[float, float, float, float, float, float] | None
    pixel_spacing: tuple[float, float] | None
    slice_thickness: float | None
    spacing_between_slices: float | None
    image_type: tuple[str, ...]
    echo_number: int | None
    echo_time: float | None
    temporal_index: int | None
    trigger_time: float | None
    acquisition_number: int | None
    acquisition_time: str | None
    stack_id: str | None
    slope: float
    intercept: float
    units: str | None
    transfer_syntax_uid: str
    bits_allocated: int
    bits_stored: int
    pixel_representation: int
    samples_per_pixel: int
    mosaic: bool
    #: Byte offset of the pixel values in the file, when they can be read directly
    #: (uncompressed little-endian native data); ``None`` otherwise.
    pixel_offset: int | None
    pixel_length: int | None
    #: Siemens mosaic: number of slices tiled in the frame and the slice normal (LPS), from
    #: the CSA image header (NumberOfImagesInMosaic, SliceNormalVector); ``None`` otherwise.
    mosaic_n: int | None = None
    mosaic_normal: tuple[float, float, float] | None = None
    #: Single-frame compressed file (explicit VR little endian): byte offset of the
    #: encapsulated Pixel Data value (its items), so a worker can decode it without parsing
    #: the header again; ``None`` otherwise.
    encapsulated_offset: int | None = None
    #: PhotometricInterpretation (upper case), ``None`` when absent.
    photometric: str | None = None
    #: StudyInstanceUID and FrameOfReferenceUID (``None`` when absent): which study and
    #: which patient coordinate system the frame belongs to (UIDs, not patient identifiers).
    study_uid: str | None = None
    frame_of_reference_uid: str | None = None

    @property
    def transfer_syntax(self) -> str:
        """Transfer syntax name, e.g. ``"JPEG 2000 Image Compression (Lossless Only)"``."""
        return transfer_syntax_name(self.transfer_syntax_uid)

    @property
    def is_compressed(self) -> bool:
        from pydicom.uid import UID

        return bool(UID(self.transfer_syntax_uid).is_compressed)


def transfer_syntax_name(uid: str) -> str:
    from pydicom.uid import UID

    name = UID(uid).name
    return str(name) if name else uid


def _units(
    ds: Any, groups: list[Any], modality: str | None, rescale_type: str | None
) -> str | None:
    for g in groups:
        rwv = first_item(g, "RealWorldValueMappingSequence")
        if rwv is not None:
            code = first_item(rwv, "MeasurementUnitsCodeSequence")
            if code is not None:
                value = as_str(code.get("CodeValue"))
                if value and value not in ("1", "no units"):
                    return value
    if rescale_type and rescale_type.upper() not in ("US", "UNSPECIFIED"):
        return rescale_type
    if modality == "CT":
        return "HU"
    return None


def read_frame_headers(path: Path) -> list[FrameHeader] | str:
    """Header records for every frame of one DICOM file, or the reason it is not an image.

    Raises :class:`InputError` (naming the file) when the file has the DICOM preamble but its
    header cannot be parsed (truncated or corrupt).
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        with open(path, "rb") as f:
            ds = pydicom.dcmread(f, stop_before_pixels=True)
            meta = getattr(ds, "file_meta", None)
            ts = as_str(meta.get("TransferSyntaxUID")) if meta is not None else None
            ts = ts or "1.2.840.10008.1.2"
            has_pixels, loc, enc = pixel_location(f, ts)
            end = f.seek(0, 2)
    except MemoryError:
        raise UnreadableDicomError(
            path, "corrupt DICOM header (an element declares a length larger than memory)"
        ) from None
    except Exception as exc:  # pydicom raises many types on corrupt input; all mean "corrupt"
        reason = (
            exc
            if isinstance(exc, InvalidDicomError | OSError | EOFError)
            else (f"{type(exc).__name__}: {exc}")
        )
        raise UnreadableDicomError(
            path, f"unreadable DICOM header (truncated or corrupt): {reason}"
        ) from exc

    try:
        return _frames_from_dataset(path, ds, meta, ts, has_pixels, loc, end, enc)
    except UnreadableDicomError:
        raise
    except Exception as exc:  # a value pydicom cannot convert (bad DS/IS/US, sequences)
        uid = None
        with contextlib.suppress(Exception):
            uid = as_str(get_value(ds, "SeriesInstanceUID"))
        raise UnreadableDicomError(
            path, f"invalid DICOM header value ({type(exc).__name__}: {exc})", uid
        ) from exc


def _frames_from_dataset(
    path: Path,
    ds: Any,
    meta: Any,
    ts: str,
    has_pixels: bool,
    loc: tuple[int, int] | None,
    end: int,
    enc: int | None = None,
) -> list[FrameHeader] | str:
    sop_class = as_str(get_value(ds, "SOPClassUID"))
    if sop_class is None and meta is not None:
        sop_class = as_str(meta.get("MediaStorageSOPClassUID"))
    sop_class = sop_class or ""
    if not sop_class and "Rows" not in ds:
        # Every DICOM object names its SOP class; a file with the preamble and neither a SOP
        # class nor image attributes is damaged, not a non-image object to skip.
        raise UnreadableDicomError(
            path,
            "corrupt: a file with the DICOM preamble but no SOP Class UID (file meta or "
            "dataset) and no image attributes",
            as_str(get_value(ds, "SeriesInstanceUID")),
        )
    if sop_class in _NON_IMAGE_SOP:
        return _NON_IMAGE_SOP[sop_class]
    if "DirectoryRecordSequence" in ds:
        return _NON_IMAGE_SOP["1.2.840.10008.1.3.10"]
    from pydicom.uid import UID

    sop_name = str(UID(sop_class).name) if sop_class else "unknown SOP class"
    is_image_class = "Image Storage" in sop_name
    if ts != DEFLATED and not has_pixels and (is_image_class or "Rows" in ds):
        raise UnreadableDicomError(
            path,
            f"truncated or corrupt: a {sop_name} file whose header ends (file size {end} "
            "bytes) without a Pixel Data element",
            as_str(get_value(ds, "SeriesInstanceUID")),
        )
    if "Rows" not in ds or "Columns" not in ds:
        return f"no image (Rows/Columns absent; SOP class {sop_name})"
    series_uid = as_str(get_value(ds, "SeriesInstanceUID"))
    real_uid = series_uid
    if series_uid is None:
        # Some anonymisers blank the UID: group by folder + series number instead (documented).
        series_uid = f"nouid:{path.parent}:{as_int(get_value(ds, 'SeriesNumber'))}"

    n_frames = as_int(get_value(ds, "NumberOfFrames")) or 1
    # (5200,9230) / (5200,9229): only converted when present (conversion is slow)
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") if 0x52009230 in ds else None
    shared = first_item(ds, "SharedFunctionalGroupsSequence") if 0x52009229 in ds else None
    modality = as_str(get_value(ds, "Modality"))
    image_type_raw = get_value(ds, "ImageType")
    if isinstance(image_type_raw, str):
        image_type_raw = [image_type_raw]
    image_type_top = tuple(str(x) for x in (image_type_raw or ()))
    mosaic = "MOSAIC" in (x.upper() for x in image_type_top)
    mosaic_n, mosaic_normal = _mosaic_csa(ds) if mosaic else (None, None)
    bits_allocated = as_int(get_value(ds, "BitsAllocated")) or 16
    bits_stored = as_int(get_value(ds, "BitsStored")) or bits_allocated
    if bits_stored > bits_allocated:
        raise UnreadableDicomError(
            path,
            f"BitsStored {bits_stored} > BitsAllocated {bits_allocated}: invalid pixel "
            "description (a stored value cannot have more bits than its container)",
            real_uid,
        )
    photometric = as_str(get_value(ds, "PhotometricInterpretation"))
    common: dict[str, Any] = {
        "path": path,
        "n_frames_in_file": n_frames,
        "sop_class_uid": sop_class,
        "sop_instance_uid": as_str(get_value(ds, "SOPInstanceUID")),
        "series_uid": series_uid,
        "study_uid": as_str(get_value(ds, "StudyInstanceUID")),
        "frame_of_reference_uid": as_str(get_value(ds, "FrameOfReferenceUID")),
        "series_number": as_int(get_value(ds, "SeriesNumber")),
        "description": as_text(ds.get("SeriesDescription")),
        "modality": modality,
        "instance_number": as_int(get_value(ds, "InstanceNumber")),
        "rows": int(ds.Rows),
        "cols": int(ds.Columns),
        "acquisition_number": as_int(get_value(ds, "AcquisitionNumber")),
        "acquisition_time": (
            as_str(get_value(ds, "AcquisitionTime")) or as_str(get_value(ds, "ContentTime"))
        ),
        "transfer_syntax_uid": ts,
        "bits_allocated": bits_allocated,
        "bits_stored": bits_stored,
        "photometric": photometric.upper() if photometric else None,
        "pixel_representation": as_int(get_value(ds, "PixelRepresentation")) or 0,
        "samples_per_pixel": as_int(get_value(ds, "SamplesPerPixel")) or 1,
        "mosaic": bool(mosaic),
        "mosaic_n": mosaic_n,
        "mosaic_normal": mosaic_normal,
    }
    frame_bytes = common["rows"] * common["cols"] * common["samples_per_pixel"] * bits_allocated
    frame_bytes //= 8
    if loc is not None and bits_allocated % 8 == 0:
        _check_pixel_length(path, loc, end, frame_bytes, n_frames, common, real_uid)

    if per_frame is None or len(per_frame) == 0:
        rescale_type = as_str(get_value(ds, "RescaleType"))
        hdr = FrameHeader(
            frame=None if n_frames == 1 else 0,
            ipp=as_floats(get_value(ds, "ImagePositionPatient"), 3),  # type: ignore[arg-type]
            iop=as_floats(get_value(ds, "ImageOrientationPatient"), 6),  # type: ignore[arg-type]
            pixel_spacing=_spacing(path, as_floats(get_value(ds, "PixelSpacing"), 2), real_uid),
            slice_thickness=as_float(get_value(ds, "SliceThickness")),
            spacing_between_slices=as_float(get_value(ds, "SpacingBetweenSlices")),
            image_type=image_type_top,
            echo_number=as_int(get_value(ds, "EchoNumbers")),
            echo_time=as_float(get_value(ds, "EchoTime")),
            temporal_index=as_int(get_value(ds, "TemporalPositionIdentifier")),
            trigger_time=as_float(get_value(ds, "TriggerTime")),
            stack_id=None,
            slope=_rescale(path, "RescaleSlope", get_value(ds, "RescaleSlope"), 1.0, real_uid),
            intercept=_rescale(
                path, "RescaleIntercept", get_value(ds, "RescaleIntercept"), 0.0, real_uid
            ),
            units=_units(ds, [], modality, rescale_type),
            pixel_offset=loc[0] if loc else None,
            pixel_length=loc[1] if loc else None,
            encapsulated_offset=enc if n_frames == 1 else None,
            **common,
        )
        if n_frames == 1:
            return [hdr]
        # A multi-frame file without per-frame functional groups: frames share one geometry.
        return [
            _replace(
                hdr,
                frame=i,
                pixel_offset=loc[0] + i * frame_bytes if loc else None,
                pixel_length=frame_bytes if loc else None,
            )
            for i in range(n_frames)
        ]

    if len(per_frame) != n_frames:
        raise UnreadableDicomError(
            path,
            f"NumberOfFrames is {n_frames} but the Per-Frame Functional Groups hold "
            f"{len(per_frame)} items; expected one item per frame",
            real_uid,
        )
    out: list[FrameHeader] = []
    for i, fg in enumerate(per_frame):
        groups = [fg, shared]
        frame_type = lookup(groups, "MRImageFrameTypeSequence", "FrameType")
        if frame_type is None:
            frame_type = lookup(groups, "CTImageFrameTypeSequence", "FrameType")
        rescale_type = as_str(lookup(groups, "PixelValueTransformationSequence", "RescaleType"))
        pvt = "PixelValueTransformationSequence"
        slope_raw = lookup(groups, pvt, "RescaleSlope")
        intercept_raw = lookup(groups, pvt, "RescaleIntercept")
        if slope_raw is None:
            slope_raw = get_value(ds, "RescaleSlope")
            intercept_raw = get_value(ds, "RescaleIntercept")
        where = f"frame {i}: "
        slope = _rescale(path, where + "RescaleSlope", slope_raw, 1.0, real_uid)
        intercept = _rescale(path, where + "RescaleIntercept", intercept_raw, 0.0, real_uid)
        content = first_item(fg, "FrameContentSequence")
        out.append(
            FrameHeader(
                frame=i,
                ipp=as_floats(  # type: ignore[arg-type]
                    lookup(groups, "PlanePositionSequence", "ImagePositionPatient"), 3
                ),
                iop=as_floats(  # type: ignore[arg-type]
                    lookup(groups, "PlaneOrientationSequence", "ImageOrientationPatient"), 6
                ),
                pixel_spacing=_spacing(
                    path,
                    as_floats(lookup(groups, "PixelMeasuresSequence", "PixelSpacing"), 2),
                    real_uid,
                    f"frame {i}: ",
                ),
                slice_thickness=as_float(lookup(groups, "PixelMeasuresSequence", "SliceThickness")),
                spacing_between_slices=as_float(
                    lookup(groups, "PixelMeasuresSequence", "SpacingBetweenSlices")
                ),
                image_type=tuple(str(x) for x in (frame_type or image_type_top)),
                echo_number=None,
                echo_time=as_float(lookup(groups, "MREchoSequence", "EffectiveEchoTime")),
                temporal_index=as_int(content.get("TemporalPositionIndex")) if content else None,
                trigger_time=as_float(
                    lookup(
                        groups, "CardiacSynchronizationSequence", "NominalCardiacTriggerDelayTime"
                    )
                ),
                stack_id=as_str(content.get("StackID")) if content else None,
                slope=slope,
                intercept=intercept,
                units=_units(ds, groups, modality, rescale_type),
                pixel_offset=loc[0] + i * frame_bytes if loc else None,
                pixel_length=frame_bytes if loc else None,
                **common,
            )
        )
    return out


def _spacing(
    path: Path, values: tuple[float, ...] | None, uid: str | None, where: str = ""
) -> tuple[float, float] | None:
    """PixelSpacing, refused unless two positive finite numbers (a negative spacing would flip
    an axis, a zero one collapse it)."""
    if values is None:
        return None
    if not all(math.isfinite(v) and v > 0 for v in values):
        shown = ", ".join(f"{v:g}" for v in values)
        raise UnreadableDicomError(
            path,
            f"{where}PixelSpacing ({shown}) mm: expected two positive numbers (a negative or "
            "zero spacing would flip or collapse an axis)",
            uid,
        )
    return (values[0], values[1])


def _rescale(path: Path, name: str, raw: Any, default: float, uid: str | None) -> float:
    """A RescaleSlope / RescaleIntercept value: ``default`` when absent or empty (the
    standard's identity transform); refused when not one finite number or a slope of 0."""
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value):
        raise UnreadableDicomError(path, f"{name} {raw!r}: expected one finite number", uid)
    if value == 0 and name.endswith("RescaleSlope"):
        raise UnreadableDicomError(
            path,
            f"{name} 0: expected a non-zero number (every voxel would equal the intercept)",
            uid,
        )
    return value


def _check_pixel_length(
    path: Path,
    loc: tuple[int, int],
    end: int,
    frame_bytes: int,
    n_frames: int,
    common: dict[str, Any],
    uid: str | None,
) -> None:
    """The native Pixel Data element must hold exactly what the header declares (one padding
    byte allowed for an odd length) and lie inside the file: more data than declared means
    Rows/Columns/NumberOfFrames are wrong (the image would be scrambled or cropped)."""
    start, length = loc
    expected = frame_bytes * n_frames
    if length not in (expected, expected + (expected % 2)):
        raise UnreadableDicomError(
            path,
            f"pixel data holds {length} bytes; the header declares Rows {common['rows']} x "
            f"Columns {common['cols']} x {n_frames} frame(s) x {common['samples_per_pixel']} "
            f"sample(s) x {common['bits_allocated']} bits = {expected} bytes",
            uid,
        )
    if start + expected > end:
        raise UnreadableDicomError(
            path,
            f"truncated file: pixel data expected {expected} bytes, found {max(0, end - start)}",
            uid,
        )


def _mosaic_csa(ds: Any) -> tuple[int | None, tuple[float, float, float] | None]:
    """NumberOfImagesInMosaic and SliceNormalVector from the Siemens CSA image header
    (parsed with nibabel's ``csareader``); ``(None, None)`` when absent or unreadable."""
    import warnings

    with warnings.catch_warnings():  # nibabel.nicom warns on import that it is experimental
        warnings.simplefilter("ignore", UserWarning)
        from nibabel.nicom import csareader

    try:
        csa = csareader.get_csa_header(ds, "image")
        n = csareader.get_n_mosaic(csa) if csa else None
        normal = csareader.get_slice_normal(csa) if csa else None
    except (csareader.CSAReadError, ValueError, KeyError, TypeError, IndexError):
        return None, None
    nv = as_floats(normal, 3) if normal is not None else None
    return (int(n) if n else None), nv  # type: ignore[return-value]


def _replace(h: FrameHeader, **changes: Any) -> FrameHeader:
    from dataclasses import replace

    return replace(h, **changes)


__all__ = [
    "FrameHeader",
    "UnreadableDicomError",
    "is_dicom_file",
    "read_frame_headers",
    "sniff_dicom",
    "transfer_syntax_name",
]
