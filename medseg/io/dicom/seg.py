"""DICOM Segmentation objects (SEG): writing a label map for PACS, reading one back.

Writing (:func:`write_dicom_seg`) uses **highdicom**. The label map must lie on the grid of
its source series exactly as :func:`medseg.io.dicom.read_dicom` reads it (same shape, affine
within :data:`~medseg.volume.GRID_ATOL_MM`); anything else is refused, because a SEG frame is
defined by the source frame it is derived from. Frame ``k`` of the label map
(``array[:, :, k].T``, rows × columns) is the segmentation of the ``k``-th source slice along
the normal, and highdicom copies that slice's position and orientation and references it
(per-frame Derivation Image Sequence, SOP Instance UIDs). The Pixel Measures are the source
grid's, exactly: PixelSpacing and SliceThickness as the source records them (SliceThickness:
the slice spacing where the source has none) and SpacingBetweenSlices the distance between
slice centres :func:`~medseg.io.dicom.read_dicom` reads the series with (for one slice:
SpacingBetweenSlices, else SliceThickness, else 1 mm), so that every reader gives the SEG the
volume of the NIfTI prediction. Before the file is written, the SEG's orientation, pixel
measures and frame positions are checked to describe the source grid (refused otherwise).

* **Segments:** one per non-empty label, in label order, with the label name as Segment Label,
  ``"label value N"`` as Segment Description (so :func:`read_dicom_seg` maps segments back to
  the label values), category/type (and laterality modifier) codes from
  :mod:`medseg.io.terminology`, the colour as Recommended Display CIELab value, algorithm type
  AUTOMATIC with the algorithm's name and version. Empty labels are left out (a segment
  without frames is not useful to a viewer) and reported.
* **Encodings:** ``"binary"`` (default; BINARY, 1 bit per pixel, one frame per segment and
  slice where the segment is present; read by every SEG viewer: OHIF, 3D Slicer, dcmqi) or
  ``"labelmap"`` (LABELMAP, DICOM Supplement 243, Label Map Segmentation Storage
  1.2.840.10008.5.1.4.1.1.66.7: one 8/16-bit frame per slice holding the label values
  themselves, RLE Lossless compressed; compact for many labels, but few viewers read it yet).
* **Copied from the source** (as a derived object must): the Patient, Clinical Trial
  Subject, General Study and Patient Study modules (highdicom), Frame of Reference UID,
  Study Instance UID, and references to the source series and instances. Missing Type 2
  patient/study attributes are written empty. Nothing identifying is logged or returned.
* **Sources:** a single-frame series (the main case), or one enhanced multi-frame file
  (frames referenced by number; frames of the file outside the volume get no segmentation
  frames; in a file holding several volumes at the same positions, e.g. magnitude and field
  map, each SEG frame references its own volume's frame only). Refused with the reason: a
  series without Study/SOP Instance UIDs or Frame of Reference (e.g. stripped by
  anonymisation), a volume spread over several multi-frame files, Siemens mosaics, a source
  whose Study Instance UID equals its Frame of Reference UID (invalid DICOM; the SEG would
  copy both and be invalid too).
* **Values valid for their VR:** Series Number the source's + 1000 where that is a valid IS
  (1 .. 2**31 - 1), else 1000; Series/Content Description, Segment Labels and the algorithm's
  name and version are LO values: control characters (NUL included) and backslashes removed,
  at most 64 characters (:func:`~medseg.io.dicom.strings.dicom_text`).

Reading (:func:`read_dicom_seg`): highdicom's ``get_volume`` (geometry from the Plane
Position / Plane Orientation / Pixel Measures functional groups; slices from the first to the
last frame present, missing frames empty), segment numbers mapped to the label values recorded
in the Segment Descriptions (segment number itself when there is none), array in medseg's
order with the slice axis along the row × column normal, as :func:`read_dicom` orders it.
FRACTIONAL segmentations and overlapping segments are refused (they are not a label map).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medseg.errors import ConfigError, InputError
from medseg.io.atomic import atomic_path
from medseg.io.dicom.seg_source import (
    check_grid,
    geometry_problem,
    keep_volume_references,
    plane_positions,
    resolve_source,
    set_pixel_measures,
    source_datasets,
)
from medseg.io.dicom.series import SeriesInfo
from medseg.io.dicom.strings import (
    IS_MAX,
    ascii_text,
    dicom_text,
    fits_character_set,
    is_valid_is,
)
from medseg.io.labels import LabelInfo, build_label_table
from medseg.volume import LPS_TO_RAS, LabelMap, VolumeMeta

SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
LABELMAP_SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.7"
SEG_SOP_CLASSES = (SEG_STORAGE, LABELMAP_SEG_STORAGE)
ENCODINGS = ("binary", "labelmap")

_VALUE_RE = re.compile(r"label value (\d+)\s*$")


@dataclass(frozen=True)
class DicomSegWritten:
    """What :func:`write_dicom_seg` wrote (no patient data).

    Attributes:
        path: the SEG file.
        encoding: ``"binary"`` or ``"labelmap"``.
        segments: label values written as segments, in segment-number order.
        empty_labels: label values of the table left out because no voxel has them.
        series_instance_uid / sop_instance_uid: UIDs of the new SEG.
        source_series_uid: SeriesInstanceUID of the referenced source series.
        notes: anything adjusted on the way (e.g. a label name shortened to 64 characters).
    """

    path: Path
    encoding: str
    segments: tuple[int, ...]
    empty_labels: tuple[int, ...]
    series_instance_uid: str
    sop_instance_uid: str
    source_series_uid: str
    notes: tuple[str, ...] = ()


def is_dicom_seg(path: str | Path) -> bool:
    """True when ``path`` is a DICOM file of a Segmentation SOP class (header only)."""
    import pydicom

    from medseg.io.dicom.sniff import is_dicom_file

    p = Path(path)
    if not p.is_file() or not is_dicom_file(p):
        return False
    try:
        ds = pydicom.dcmread(p, stop_before_pixels=True, specific_tags=["SOPClassUID"])
    except Exception:  # an unreadable header is reported by the DICOM reader itself
        return False
    sop = str(ds.get("SOPClassUID", "") or ds.file_meta.get("MediaStorageSOPClassUID", ""))
    return sop in SEG_SOP_CLASSES


# --- writing -------------------------------------------------------------------------------
def _apply_lut(lut: NDArray[Any], arr: NDArray[Any]) -> NDArray[Any]:
    """``lut[arr]`` slab by slab along the last axis (numpy would otherwise make an 8-byte
    index copy of the whole volume)."""
    out = np.empty(arr.shape, dtype=lut.dtype)
    for k in range(0, arr.shape[-1], 16):
        out[..., k : k + 16] = lut[arr[..., k : k + 16]]
    return out


def _coded(code: Any) -> Any:
    from highdicom.sr import CodedConcept

    return CodedConcept(code.value, code.scheme, code.meaning)


def _descriptions(
    table: Sequence[LabelInfo], numbers: Sequence[int], algorithm: tuple[str, str], charset: Any
) -> tuple[list[Any], list[str]]:
    import highdicom as hd
    from pydicom.sr.codedict import codes

    algo = hd.AlgorithmIdentificationSequence(
        name=algorithm[0], version=algorithm[1], family=codes.DCM.ArtificialIntelligence
    )
    notes: list[str] = []
    out = []
    for info, number in zip(table, numbers, strict=True):
        t = info.terminology
        label = _lo(info.name, charset) or f"label {info.value}"
        if label != info.name:
            notes.append(
                f"label {info.value}: name written as {label!r} (DICOM LO: at most 64 "
                "characters, no control characters or backslash, in the source's character set)"
            )
        desc = hd.seg.SegmentDescription(
            segment_number=int(number),
            segment_label=label,
            segmented_property_category=_coded(t.category),
            segmented_property_type=_coded(t.type),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algo,
            display_color=hd.color.CIELabColor.from_rgb(*info.color),
        )
        desc.SegmentDescription = f"label value {info.value}"
        if t.modifier is not None:
            desc.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = [
                _coded(t.modifier)
            ]
        out.append(desc)
    return out, notes


def write_dicom_seg(
    seg: LabelMap,
    path: str | Path,
    source: str | Path | SeriesInfo,
    *,
    series: str | int | None = None,
    label_table: Sequence[LabelInfo] | None = None,
    encoding: str = "binary",
    overwrite: bool = False,
    series_number: int | None = None,
    series_description: str | None = None,
    algorithm_name: str = "medseg",
    algorithm_version: str | None = None,
) -> DicomSegWritten:
    """Write ``seg`` as a DICOM Segmentation of its source series (see the module docstring).

    Args:
        seg: label map on the source series' grid (shape and affine as ``read_dicom``).
        path: output ``.dcm`` file (written atomically).
        source: the DICOM folder or file the series is read from, or its ``SeriesInfo``.
        series: which series of ``source`` (index, key or UID), as for ``read_dicom``.
        label_table: names/colours/codes (default: :func:`build_label_table` of ``seg``).
        encoding: ``"binary"`` (default) or ``"labelmap"``.
        series_number: of the new SEG series, 1 .. 2**31 - 1 (default: the source's + 1000
            where that is in range, else 1000).
        series_description: default ``"medseg segmentation of <source description>"``.
        algorithm_name, algorithm_version: Segmentation Algorithm Identification (default
            medseg and its version).

    Raises:
        InputError: grid differs from the source, source lacks the UIDs a SEG must reference,
            no non-empty label, label value above 65535.
        DicomSeriesError: the source is not one readable volume.
        OutputExistsError: ``path`` exists and not ``overwrite``.
    """
    import highdicom as hd
    from pydicom.uid import ExplicitVRLittleEndian, RLELossless

    from medseg._version import __version__

    if encoding not in ENCODINGS:
        raise ConfigError(f"DICOM SEG encoding: expected one of {ENCODINGS}, found {encoding!r}")
    info = resolve_source(source, series)
    check_grid(seg, info)
    present = seg.labels_present()
    table = (
        tuple(label_table)
        if label_table is not None
        else build_label_table(seg.label_names, present)
    )
    described = {i.value for i in table}
    undescribed = sorted(set(present) - described)
    if undescribed:
        raise InputError(seg.source, f"label values {undescribed} are not in the label table")
    if present and (present[0] < 0 or present[-1] > 65535):
        raise InputError(seg.source, "DICOM SEG label values must lie in 1..65535")
    written = [i for i in table if i.value in set(present)]
    empty = tuple(i.value for i in table if i.value not in set(present))
    if not written:
        raise InputError(
            seg.source,
            "label map has no non-zero voxel: a DICOM SEG needs at least one non-empty segment",
        )
    datasets, frame_index, repeated = source_datasets(info)

    arr = np.asarray(seg.array)
    if encoding == "binary":
        numbers = list(range(1, len(written) + 1))
        lut = np.zeros(int(present[-1]) + 1, dtype=np.uint16 if len(written) > 255 else np.uint8)
        for n, li in zip(numbers, written, strict=True):
            lut[li.value] = n
        planes = _apply_lut(lut, arr)
    else:
        numbers = [i.value for i in written]
        planes = arr.astype(np.uint16 if present[-1] > 255 else np.uint8, copy=False)
    planes = planes.transpose(2, 1, 0)  # (slices, rows, columns)
    positions = plane_positions(info) if repeated else None
    if frame_index is not None and positions is None:
        n_frames = int(datasets[0].get("NumberOfFrames", 1))
        full = np.zeros((n_frames, *planes.shape[1:]), dtype=planes.dtype)
        full[frame_index] = planes
        planes = full
    charset = datasets[0].get("SpecificCharacterSet")
    algorithm = (
        _checked_text(algorithm_name, "algorithm_name", charset),
        _checked_text(algorithm_version or __version__, "algorithm_version", charset),
    )
    descriptions, notes = _descriptions(written, numbers, algorithm, charset)
    description = _series_description(series_description, info.description, charset)
    number = _series_number(series_number, info.series_number)
    sop_uid, series_uid = hd.UID(), hd.UID()
    try:
        with warnings.catch_warnings():
            # highdicom warns about the source's Patient Name, quoting it: a patient
            # identifier must not reach a log (the name is copied unchanged either way).
            warnings.filterwarnings("ignore", message=".*intended person name", module="highdicom")
            obj = hd.seg.Segmentation(
                source_images=datasets,
                pixel_array=np.ascontiguousarray(planes),
                segmentation_type="BINARY" if encoding == "binary" else "LABELMAP",
                segment_descriptions=descriptions,
                plane_positions=positions,
                series_instance_uid=series_uid,
                series_number=number,
                sop_instance_uid=sop_uid,
                instance_number=1,
                manufacturer="medseg",
                manufacturer_model_name="medseg",
                software_versions=__version__,
                device_serial_number="0",
                content_description=description or None,
                content_label="MEDSEG",
                series_description=description or None,
                transfer_syntax_uid=(
                    ExplicitVRLittleEndian if encoding == "binary" else RLELossless
                ),
            )
    except (ValueError, TypeError, AttributeError) as exc:
        raise InputError(
            info.files[0], f"highdicom refused to build the SEG from this source: {exc}"
        ) from exc
    texts = [description, *algorithm, *(str(d.SegmentLabel) for d in descriptions)]
    if not all(t.isascii() for t in texts) and _charset_names(charset) in ([], ["ISO_IR 6"]):
        obj.SpecificCharacterSet = "ISO_IR 192"  # UTF-8: the source's ASCII values stay valid
    set_pixel_measures(obj, info)
    problem = geometry_problem(obj, info)
    if problem is not None:
        raise InputError(
            info.files[0],
            f"refusing to write a DICOM SEG whose geometry is not its source's: {problem}",
        )
    if positions is not None:
        keep_volume_references(obj, info)
    with atomic_path(path, overwrite) as tmp:
        obj.save_as(tmp, enforce_file_format=True)
    return DicomSegWritten(
        path=Path(path),
        encoding=encoding,
        segments=tuple(i.value for i in written),
        empty_labels=empty,
        series_instance_uid=str(series_uid),
        sop_instance_uid=str(sop_uid),
        source_series_uid=info.series_uid,
        notes=tuple(notes),
    )


def _series_number(requested: int | None, source: int | None) -> int:
    """The SEG's Series Number: ``requested`` (checked), else the source's + 1000 where that
    is a valid IS value (``1 .. 2**31 - 1``), else 1000."""
    if requested is not None:
        if (
            isinstance(requested, bool)
            or not isinstance(requested, int)
            or not (1 <= requested <= IS_MAX)
        ):
            raise ConfigError(
                f"series_number: expected an integer in 1..{IS_MAX} (DICOM IS), found {requested!r}"
            )
        return requested
    candidate = 1000 + (source or 0)
    return candidate if is_valid_is(candidate) and candidate >= 1 else 1000


def _charset_names(charset: Any) -> list[str]:
    """The values of a Specific Character Set (``[]`` when absent or empty)."""
    names = [charset] if isinstance(charset, str) else list(charset or [])
    return [str(n) for n in names if n]


def _lo(value: str, charset: Any) -> str:
    """``value`` made valid for an LO of the SEG (:func:`~medseg.io.dicom.strings.dicom_text`)
    and for its character set: a source without one (or ISO_IR 6, ASCII) gives the SEG
    ISO_IR 192 (UTF-8) when a value needs it; a value the source's own character set cannot
    encode is written in ASCII (accents dropped, other characters ``?``)."""
    text = dicom_text(value, "LO")
    names = _charset_names(charset)
    if names in ([], ["ISO_IR 6"], ["ISO_IR 192"]) or fits_character_set(text, charset):
        return text
    return dicom_text(ascii_text(text), "LO")


def _series_description(requested: str | None, source: str | None, charset: Any) -> str:
    """Series and Content Description (LO): ``requested``, else ``"medseg segmentation of
    <source description>"``, made valid for LO (:func:`_lo`)."""
    if requested is not None:
        return _lo(requested, charset)
    src = _lo(source or "", charset)
    return _lo(f"medseg segmentation of {src}" if src else "medseg segmentation", charset)


def _checked_text(value: str, parameter: str, charset: Any) -> str:
    """``value`` made valid for LO; a value with nothing left is refused naming ``parameter``."""
    text = _lo(value, charset)
    if not text:
        raise ConfigError(f"{parameter}: expected a non-empty text, found {value!r}")
    return text


# --- reading -------------------------------------------------------------------------------
def _segment_values(ds: Any) -> tuple[dict[int, int], dict[int, str]]:
    """``{segment number: label value}`` and ``{label value: name}`` from the Segment
    Sequence (value from a ``"label value N"`` Segment Description, else the number)."""
    to_value: dict[int, int] = {}
    names: dict[int, str] = {}
    for item in ds.SegmentSequence:
        number = int(item.SegmentNumber)
        if number == 0:
            continue  # LABELMAP background segment
        m = _VALUE_RE.search(str(item.get("SegmentDescription", "") or ""))
        value = int(m.group(1)) if m else number
        to_value[number] = value
        names[value] = str(item.get("SegmentLabel", "") or f"label_{value}")
    if len(set(to_value.values())) != len(to_value):
        raise ValueError("two segments record the same label value")
    return to_value, names


def read_dicom_seg(path: str | Path) -> LabelMap:
    """Read a BINARY or LABELMAP DICOM SEG as a :class:`LabelMap` (see the module docstring).

    Returns a label map whose values are the label values recorded in the segments, with
    ``label_names`` from the Segment Labels and an RAS+ affine; ``meta.study_uid`` and
    ``meta.frame_of_reference_uid`` are the SEG's (its source's) Study Instance and Frame of
    Reference UIDs; ``meta.extra`` records the segmentation type and the referenced series UID.
    """
    import highdicom as hd

    p = Path(path)
    if not p.exists():
        raise InputError(p, "file not found")
    try:
        obj = hd.seg.segread(p)
    except Exception as exc:
        raise InputError(p, f"not a readable DICOM SEG ({type(exc).__name__}: {exc})") from exc
    kind = str(obj.SegmentationType)
    if kind == "FRACTIONAL":
        raise InputError(
            p, "FRACTIONAL DICOM SEG (probabilities/occupancy per segment): not a label map"
        )
    try:
        to_value, names = _segment_values(obj)
    except ValueError as exc:
        raise InputError(p, f"segment descriptions: {exc}") from exc
    if not to_value:
        raise InputError(p, "DICOM SEG without segments")
    try:
        vol = obj.get_volume(combine_segments=True, relabel=False, allow_missing_positions=True)
    except RuntimeError as exc:
        raise InputError(
            p, f"segments cannot form one label map ({exc}); overlapping segments are refused"
        ) from exc
    except ValueError as exc:
        raise InputError(p, f"frames do not form a regular 3-D grid ({exc})") from exc
    numbers = np.asarray(vol.array)  # (slices, rows, columns)
    top = max(to_value)
    if numbers.size and int(numbers.max()) > top:
        raise InputError(p, f"pixel value {int(numbers.max())} has no segment description")
    lut_dtype = np.uint8 if max(to_value.values()) < 256 else np.uint16
    lut = np.zeros(top + 1, dtype=lut_dtype)
    for number, value in to_value.items():
        lut[number] = value
    array = _apply_lut(lut, numbers).transpose(2, 1, 0)  # (col, row, slice)
    perm = np.zeros((4, 4))
    perm[0, 2] = perm[1, 1] = perm[2, 0] = perm[3, 3] = 1.0
    lps = np.asarray(vol.affine, dtype=np.float64) @ perm
    row, col = lps[:3, 0], lps[:3, 1]
    if float(np.cross(row, col) @ lps[:3, 2]) < 0:  # slice axis along row x column normal
        flip = np.eye(4)
        flip[2, 2] = -1.0
        flip[2, 3] = array.shape[2] - 1
        lps = lps @ flip
        array = array[:, :, ::-1]
    ref_series = [str(s.SeriesInstanceUID) for s in obj.get("ReferencedSeriesSequence", [])]
    meta = VolumeMeta(
        modality="SEG",
        series_description=str(obj.get("SeriesDescription", "") or "") or None,
        series_uid=str(obj.SeriesInstanceUID),
        study_uid=str(obj.get("StudyInstanceUID", "") or "") or None,
        frame_of_reference_uid=str(obj.get("FrameOfReferenceUID", "") or "") or None,
        extra={
            "segmentation_type": kind,
            "label_names": names,
            **({"referenced_series_uid": ref_series[0]} if ref_series else {}),
        },
    )
    return LabelMap(np.ascontiguousarray(array), LPS_TO_RAS @ lps, p, meta, names)


__all__ = [
    "ENCODINGS",
    "SEG_SOP_CLASSES",
    "DicomSegWritten",
    "is_dicom_seg",
    "read_dicom_seg",
    "write_dicom_seg",
]
