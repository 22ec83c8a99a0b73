"""NIfTI-1/2 (``.nii``, ``.nii.gz``) reading and writing through nibabel.

Geometry: nibabel's ``img.affine`` is used, i.e. the sform when its code is non-zero, else the
qform when its code is non-zero, else a diagonal affine from ``pixdim`` (reported in
``meta.extra["geometry_warning"]``). Scale slope/intercept are applied; unscaled data keep their
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

from medseg.errors import InputError, InvalidVolumeError
from medseg.io.atomic import atomic_path
from medseg.volume import Volume, VolumeMeta

if TYPE_CHECKING:
    from medseg.io.labels import LabelInfo

#: NIfTI extension code of a plain-text comment (where the label table is stored).
COMMENT_ECODE = 6

_UNIT_TO_MM = {"meter": 1000.0, "mm": 1.0, "micron": 1e-3, "unknown": 1.0}


def read_nifti(path: str | Path, channel: int | None = None) -> Volume:
    """Read a NIfTI file as a :class:`Volume`.

    Args:
        path: ``.nii`` or ``.nii.gz`` file.
        channel: index along the 4th axis to read from a 4-D file. 4-D files (other than a
            singleton 4th axis) are refused without it.
    """
    p = Path(path)
    try:
        img = nib.load(str(p))
    except FileNotFoundError:
        raise InputError(p, "file not found") from None
    except Exception as exc:  # nibabel raises many types for corrupt headers
        raise InputError(p, f"not a readable NIfTI file ({type(exc).__name__}: {exc})") from exc
    if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
        raise InputError(p, f"expected a NIfTI image, nibabel found {type(img).__name__}")
    shape = img.shape
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
                        "Choose one with channel=K (CLI: --channel K)",
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
    hdr = img.header
    sform_code = int(hdr["sform_code"])
    qform_code = int(hdr["qform_code"])
    if sform_code == 0 and qform_code == 0:
        extra["geometry_warning"] = "no sform/qform: affine built from pixdim only (no origin)"
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
    if scaled and data.dtype == np.float64 and np.dtype(img.get_data_dtype()).itemsize <= 4:
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


def _storage_array(arr: np.ndarray) -> np.ndarray:
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
