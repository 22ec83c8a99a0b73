"""NIfTI-1/2 (``.nii``, ``.nii.gz``) reading and writing through nibabel.

Geometry: nibabel's ``img.affine`` is used, i.e. the sform when its code is non-zero, else the
qform when its code is non-zero, else a diagonal affine from ``pixdim`` (positive pixdim
required; a warning in ``meta.extra["warnings"]``). sform and qform that disagree are reported
there too. Scale slope/intercept are applied; unscaled data keep their
stored dtype. Spatial units in metres or micrometres are converted to mm.
Written files carry the affine in both sform and qform (code 1, scanner), units mm.

Label tables: a segmentation written with ``label_table`` gets intent code
``NIFTI_INTENT_LABEL`` (1002: "values are label indices") and a header extension of code 6
(``NIFTI_ECODE_COMMENT``, plain text) holding the ``labels.json`` document (JSON, UTF-8; see
:mod:`medseg.io.labels`); NIfTI has no registered code for label names, and a comment
extension is kept by every NIfTI library. Reading such a file puts ``{value: name}`` in
``meta.extra["label_names"]``.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nibabel as nib
import numpy as np
from numpy.typing import NDArray

from medseg.errors import InputError, InvalidVolumeError
from medseg.io.atomic import atomic_path, full_suffix
from medseg.io.files import path_problem
from medseg.volume import Volume, VolumeMeta, add_warning

if TYPE_CHECKING:
    from medseg.io.labels import LabelInfo

#: NIfTI extension code of a plain-text comment (where the label table is stored).
COMMENT_ECODE = 6

_UNIT_TO_MM = {"meter": 1000.0, "mm": 1.0, "micron": 1e-3, "unknown": 1.0}


#: A deflate stream expands at most ~1032:1, so a gzip file of N bytes holds < 1032·N bytes.
_MAX_DEFLATE_RATIO = 1032
#: The gzip ISIZE trailer is only a claim (any bytes can be written there), so it is trusted
#: as proof of the voxel data only up to this many bytes: a lie then costs at most this much
#: memory before nibabel's read fails. Larger claims are proven by a streaming count.
TRUST_ISIZE_BYTES = 64 << 20
#: sform and qform are reported as disagreeing beyond this (mm, any affine entry).
FORM_ATOL_MM = 1e-3


def _human(n: float) -> str:
    for unit in ("bytes", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.3g} {unit}"
        n /= 1000
    return f"{n:.3g} TB"  # pragma: no cover


def _gzip_payload_at_least(p: Path, needed: int) -> int:
    """Decompress ``p`` as a stream (all gzip members, 1 MiB at a time, nothing kept) until
    ``needed`` bytes are seen; returns the count (less than ``needed`` when the file is
    shorter). Truncated or corrupt streams count what could be read."""
    total = 0
    try:
        with gzip.open(p, "rb") as f:
            while total < needed:
                chunk = f.read(1 << 20)
                if not chunk:
                    break
                total += len(chunk)
    except (EOFError, OSError, zlib.error):
        pass
    return total


def _check_data_size(p: Path, img: Any, raw: Any) -> None:
    """Refuse a header whose voxel data cannot fit in the file, before anything is allocated.

    Uncompressed: offset + voxel bytes must not exceed the file size. Gzip: the uncompressed
    size cannot be known without decompressing, so (1) a claim above what deflate can expand
    the file to (~1032:1) is refused at once; (2) for at most :data:`TRUST_ISIZE_BYTES` of
    data, the gzip ISIZE trailer (uncompressed size modulo 2^32 of the last member) confirms a
    single-member file cheaply; (3) otherwise the file is decompressed as a stream and counted,
    1 MiB at a time and keeping nothing, until enough data are seen. The trailer is written by
    whoever wrote the file and proves nothing about the deflate stream, so a large claim is
    never trusted from it: a forged trailer would make nibabel allocate the declared size
    before finding the data short. Memory stays bounded; a genuine large file is decompressed
    twice (about 0.3 s per 100 MB).
    """
    itemsize = np.dtype(img.get_data_dtype()).itemsize
    n_vox = int(np.prod([int(v) for v in img.shape], dtype=object))
    offset = int(raw.get_data_offset())
    needed = offset + n_vox * itemsize
    size = p.stat().st_size
    declared = (
        f"the header declares shape {tuple(int(v) for v in img.shape)} of "
        f"{np.dtype(img.get_data_dtype())} = {_human(n_vox * itemsize)} of voxel data"
    )
    if full_suffix(p) != ".nii.gz":
        if needed > size:
            raise InputError(
                p,
                f"truncated or corrupt: {declared} from byte {offset}, but the file holds "
                f"{_human(size)}",
            )
        return
    if needed > size * _MAX_DEFLATE_RATIO + 4096:
        raise InputError(
            p,
            f"corrupt header: {declared}, more than a {_human(size)} gzip file can hold "
            f"(at most ~{_human(size * _MAX_DEFLATE_RATIO)})",
        )
    with open(p, "rb") as f:
        f.seek(max(0, size - 4))
        tail = f.read(4)
    trailer_fits = len(tail) == 4 and int.from_bytes(tail, "little") == needed % (1 << 32)
    if trailer_fits and needed <= TRUST_ISIZE_BYTES:
        return
    got = _gzip_payload_at_least(p, needed)
    if got < needed:
        raise InputError(
            p,
            f"truncated or corrupt: {declared} from byte {offset}, but the file decompresses "
            f"to {_human(got)}",
        )


def _raw_header(p: Path, img: Any) -> Any:
    """The header as stored (nibabel's loader silently 'fixes' zero/negative pixdim)."""
    from nibabel.openers import ImageOpener

    with ImageOpener(str(p), "rb") as f:
        return type(img.header).from_fileobj(f, check=False)


def _geometry_notes(p: Path, img: Any, raw: Any) -> list[str]:
    """Refuse an unusable grid; return warnings about what was assumed or found."""
    hdr = img.header
    sform_code, qform_code = int(raw["sform_code"]), int(raw["qform_code"])
    notes: list[str] = []
    if sform_code == 0 and qform_code == 0:
        zooms = tuple(float(v) for v in raw["pixdim"][1:4])
        if not all(np.isfinite(z) and z > 0 for z in zooms):
            raise InvalidVolumeError(
                p,
                f"no sform or qform, and pixdim {zooms} is not three positive voxel sizes: "
                "the voxel grid is unknown (refusing to invent one)",
            )
        notes.append(
            f"{p}: no sform or qform: the affine is built from pixdim {zooms} only, with "
            "nibabel's default orientation and origin (NIfTI method 1: scanner position unknown)"
        )
    elif sform_code == 0:  # the qform: rotation + offset from quaternions, sizes from pixdim
        zooms = tuple(float(v) for v in raw["pixdim"][1:4])
        if not all(np.isfinite(z) and z != 0 for z in zooms):
            raise InvalidVolumeError(
                p,
                f"qform with pixdim {zooms}: a voxel size is zero or not finite; the voxel grid "
                "is unknown (refusing to invent one)",
            )
        if any(z < 0 for z in zooms):
            notes.append(
                f"{p}: pixdim {zooms} has negative voxel sizes; the qform uses their absolute "
                "values (as nibabel and niftilib do)"
            )
    elif sform_code > 0 and qform_code > 0:
        diff = float(np.max(np.abs(hdr.get_sform() - hdr.get_qform())))
        if diff > FORM_ATOL_MM:
            notes.append(
                f"{p}: sform (code {sform_code}) and qform (code {qform_code}) disagree by up "
                f"to {diff:.4g} mm; using the sform (as nibabel does)"
            )
    return notes


def read_nifti(path: str | Path, channel: int | None = None) -> Volume:
    """Read a NIfTI file as a :class:`Volume`.

    Args:
        path: ``.nii`` or ``.nii.gz`` file.
        channel: index along the 4th axis to read from a 4-D file. 4-D files (other than a
            singleton 4th axis) are refused without it.

    Refused before any voxel is allocated: a header whose voxel data cannot fit in the file
    (see :func:`_check_data_size`), a zero-length axis, complex or RGB voxels, no sform/qform
    with non-positive pixdim. Recorded in ``meta.extra["warnings"]`` (and logged): no
    sform/qform (affine from pixdim), sform and qform that disagree.
    """
    p = Path(path)
    problem = path_problem(p)
    if problem is not None:
        raise InputError(p, "file not found" if problem.startswith("no such") else problem)
    try:
        img = nib.load(str(p))
        raw = _raw_header(p, img) if isinstance(img, nib.Nifti1Image | nib.Nifti2Image) else None
    except Exception as exc:  # nibabel raises many types for corrupt headers
        raise InputError(p, f"not a readable NIfTI file ({type(exc).__name__}: {exc})") from exc
    if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
        raise InputError(p, f"expected a NIfTI image, nibabel found {type(img).__name__}")
    shape = tuple(int(v) for v in img.shape)
    if any(v == 0 for v in shape):
        raise InvalidVolumeError(
            p,
            f"the header declares shape {shape}: axis {shape.index(0)} has length 0; expected "
            "at least one voxel along each axis",
        )
    dt = np.dtype(img.get_data_dtype())
    if dt.kind not in "biuf":
        what = "complex-valued" if dt.kind == "c" else "RGB/structured"
        raise InvalidVolumeError(
            p, f"{what} voxels ({dt}); expected real scalar values (split the components first)"
        )
    assert raw is not None
    _check_data_size(p, img, raw)
    notes = _geometry_notes(p, img, raw)
    extra: dict[str, object] = {}
    try:
        if len(shape) == 3:
            data = np.asanyarray(img.dataobj)
        elif len(shape) == 4 or (len(shape) == 5 and shape[3] == 1):
            n = shape[-1]
            if channel is None:
                if n != 1:
                    raise InvalidVolumeError(
                        p,
                        f"4-D image with {n} volumes/channels (shape {shape}); expected 3-D. "
                        "Choose one with channel=K",
                    )
                channel = 0
            if not 0 <= channel < n:
                raise InvalidVolumeError(p, f"channel {channel} out of range: file has {n}")
            data = np.asanyarray(img.dataobj[..., channel]).reshape(shape[:3])
            extra["channel"] = channel
        else:
            raise InvalidVolumeError(p, f"expected a 3-D or 4-D image, found shape {shape}")
    except (EOFError, OSError, zlib.error, gzip.BadGzipFile, ValueError) as exc:
        raise InputError(p, f"truncated or corrupt voxel data ({exc})") from exc
    except MemoryError:
        need = _human(float(np.prod(shape[:3], dtype=float)) * dt.itemsize)
        raise InputError(p, f"not enough memory to load {need} of voxel data") from None
    hdr = img.header
    for note in notes:
        add_warning(extra, note)
    affine = np.asarray(img.affine, dtype=np.float64)
    unit = hdr.get_xyzt_units()[0]
    scale = _UNIT_TO_MM.get(unit, 1.0)
    if scale != 1.0:
        affine = affine.copy()
        affine[:3, :] *= scale
        extra["converted_units_from"] = unit
    # nibabel moves scl_slope/scl_inter from the loaded header to the data proxy
    slope = getattr(img.dataobj, "slope", 1.0)
    inter = getattr(img.dataobj, "inter", 0.0)
    scaled = (slope, inter) != (1.0, 0.0)
    if scaled and data.dtype == np.float64 and dt.itemsize <= 4:
        data = data.astype(np.float32)  # nibabel scales in float64; the stored data are <= 32-bit
    names = _label_names_from_extensions(hdr)
    if names is not None:
        extra["label_names"] = names
    meta = VolumeMeta(
        rescale_slope=float(slope) if scaled else None,
        rescale_intercept=float(inter) if scaled else None,
        extra=extra,
    )
    return Volume(np.ascontiguousarray(data), affine, p, meta)


def _storage_array(arr: NDArray[Any]) -> NDArray[Any]:
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8)
    if arr.dtype == np.int64 and arr.size:
        lo, hi = int(arr.min()), int(arr.max())
        if np.iinfo(np.int32).min <= lo and hi <= np.iinfo(np.int32).max:
            return arr.astype(np.int32)  # many viewers handle int64 NIfTI poorly
    if arr.dtype == np.float16:
        return arr.astype(np.float32)
    return arr


def _label_names_from_extensions(hdr: Any) -> dict[int, str] | None:
    """``{value: name}`` from a medseg label-table comment extension, else ``None``."""
    import json

    from medseg.io.labels import FORMAT_TAG

    for ext in hdr.extensions:
        if ext.get_code() != COMMENT_ECODE:
            continue
        try:
            doc = json.loads(ext.get_content().decode("utf-8").rstrip("\x00"))
        except (UnicodeDecodeError, ValueError):
            continue
        if isinstance(doc, dict) and doc.get("format") == FORMAT_TAG:
            try:
                return {int(r["value"]): str(r["name"]) for r in doc["labels"]}
            except (KeyError, TypeError, ValueError):
                return None
    return None


def write_nifti(
    volume: Volume,
    path: str | Path,
    overwrite: bool = False,
    *,
    label_table: Sequence[LabelInfo] | None = None,
) -> Path:
    """Write ``volume`` to ``path`` (``.nii`` / ``.nii.gz``) atomically; geometry kept exactly
    (within float32 storage of the affine). With ``label_table`` the file is marked as a label
    image and carries the table (see the module docstring)."""
    arr = _storage_array(volume.array)
    img = nib.Nifti1Image(arr, volume.affine)
    img.set_qform(volume.affine, code=1)
    img.set_sform(volume.affine, code=1)
    img.header.set_xyzt_units(xyz="mm")
    if label_table is not None:
        from medseg.io.labels import label_table_text

        img.header.set_intent("label")
        text = label_table_text(label_table).encode("utf-8")
        img.header.extensions.append(nib.nifti1.Nifti1Extension(COMMENT_ECODE, text))
    with atomic_path(path, overwrite) as tmp:
        nib.save(img, str(tmp))
    return Path(path)
