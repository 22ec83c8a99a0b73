"""Pixel data: decode frames and assemble them into one preallocated volume array.

* Uncompressed little-endian frames are read straight from the file into the output buffer
  (offsets found during the header scan): each file is opened once, nothing is copied twice.
* Compressed frames (JPEG baseline/lossless/LS, JPEG 2000, RLE, deflate, big endian) decode
  through pydicom's pixel backends (pylibjpeg plugins). The decoders hold the GIL (measured:
  2 threads are no faster than 1), so large compressed series decode in worker *processes*.
* Rescale: when every slice has slope 1 and the same integral intercept, the result stays an
  integer type (the stored type when the intercept is 0, else int16 if the values fit, else
  int32), converted in place where the item size allows; otherwise float32 filled slice by slice.
  Peak memory stays ≤ 1.5× the returned array's size.

The returned array is ``(I, J, K)`` = (column, row, slice) with
``array[i, j, k] = frame_k[j, i]``; it is a transposed view of a C-ordered ``(K, J, I)`` buffer
(Fortran-ordered, as nibabel returns NIfTI data).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections import defaultdict, deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medseg.errors import InputError
from medseg.io.dicom.headers import FrameHeader

#: Decode in worker processes when a series has at least this many compressed files.
PARALLEL_MIN_FILES = 8
#: At most this many decoding processes.
MAX_WORKERS = 16


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class Rescale:
    """How stored values became the returned values (``value = stored * slope + intercept``).

    ``slope``/``intercept`` are ``None`` when they vary between slices (then applied per slice).
    """

    slope: float | None
    intercept: float | None
    units: str | None


def stored_dtype(h: FrameHeader) -> np.dtype[Any]:
    """The numpy type of the stored pixel values of ``h`` (native byte order)."""
    if h.bits_allocated not in (8, 16, 32):
        raise InputError(
            h.path, f"BitsAllocated {h.bits_allocated} not supported; expected 8/16/32"
        )
    kind = "i" if h.pixel_representation == 1 else "u"
    return np.dtype(f"{kind}{h.bits_allocated // 8}")


def _one_line(exc: BaseException) -> str:
    """A decoder's (often multi-line, per-plugin) message as one line."""
    return "; ".join(ln.strip() for ln in str(exc).splitlines() if ln.strip()) or repr(exc)


def _is_decoder_failure(exc: BaseException) -> bool:
    """Whether ``exc`` means "this data cannot be decoded". Rust-based plugins (pylibjpeg-rle)
    raise ``PanicException``, a ``BaseException``, on corrupt input."""
    if isinstance(exc, Exception):
        return True
    return type(exc).__name__ == "PanicException"


_RLE = "1.2.840.10008.1.2.5"


def _check_rle_frame(path: Path, fragment: bytes, rows: int, cols: int) -> None:
    """An RLE frame must decode to exactly Rows x Columns bytes per segment (one padding byte
    allowed): the decoders silently crop a longer segment, which a wrong Rows/Columns causes.
    Only the first segment (the most significant bytes, which compress best) is decoded again,
    a fraction of the frame's decoding time (measured in ``bench/bench_input_checks.py``)."""
    from rle.rle import decode_segment, parse_header

    n = int.from_bytes(fragment[:4], "little")
    offsets = list(parse_header(bytes(fragment[:64])))[:n] if 0 < n <= 15 else []
    if not offsets or not all(64 <= o < len(fragment) for o in offsets):
        raise InputError(path, f"corrupt RLE header ({n} segments declared)")
    end = offsets[1] if len(offsets) > 1 else len(fragment)
    got = len(decode_segment(bytes(fragment[offsets[0] : end])))  # the MSB plane: cheapest
    if got > rows * cols + 1:
        raise InputError(
            path,
            f"RLE segment decodes to {got} bytes; the header declares Rows {rows} x Columns "
            f"{cols} = {rows * cols} pixels",
        )


def decode_file(path: Path, frames: Sequence[int] | None = None) -> NDArray[Any]:
    """Decode the stored values of one DICOM file, shape ``(n_frames, rows, cols)``.

    ``frames`` selects frame indices (0-based); all frames when ``None``. Raises
    :class:`InputError` naming the file when the data is truncated or cannot be decoded.
    """
    import pydicom
    from pydicom.pixels import pixel_array
    from pydicom.uid import UID

    from medseg.io.dicom.headers import transfer_syntax_name

    name = "unknown transfer syntax"
    try:
        ds = pydicom.dcmread(path)
        ts = UID(str(ds.file_meta.get("TransferSyntaxUID", "1.2.840.10008.1.2")))
        name = transfer_syntax_name(ts)
        rows, cols = int(ds.Rows), int(ds.Columns)
        n = int(ds.get("NumberOfFrames") or 1)
        spp = int(ds.get("SamplesPerPixel") or 1)
        bits = int(ds.get("BitsAllocated") or 16)
    except Exception as exc:  # pydicom raises many types on corrupt input
        raise InputError(path, f"cannot read the file for decoding ({name}): {exc}") from exc
    declared = f"Rows {rows} x Columns {cols} x {n} frame(s) x {spp} sample(s)"
    if not ts.is_compressed and "PixelData" in ds and bits % 8 == 0:
        got, want = len(ds.PixelData), rows * cols * n * spp * bits // 8
        if got not in (want, want + want % 2):
            raise InputError(
                path,
                f"pixel data holds {got} bytes; the header declares {declared} x "
                f"{bits} bits = {want} bytes",
            )
    try:
        if ts == _RLE:
            from pydicom.encaps import generate_frames

            for fragment in generate_frames(ds.PixelData, number_of_frames=n):
                _check_rle_frame(path, fragment, rows, cols)
        arr = pixel_array(ds)
    except InputError:
        raise
    except BaseException as exc:  # decoder errors come in many types; re-raised with the file
        if not _is_decoder_failure(exc):
            raise
        raise InputError(path, f"cannot decode pixel data ({name}): {_one_line(exc)}") from exc
    if arr.size != rows * cols * n * spp:
        raise InputError(
            path, f"decoded pixel data hold {arr.size} values; the header declares {declared}"
        )
    if arr.ndim == 2 or (arr.ndim == 3 and n == 1 and int(ds.get("SamplesPerPixel") or 1) > 1):
        arr = arr[None]
    if frames is not None:
        arr = arr[list(frames)]
    return np.asarray(arr)


def decode_encapsulated(h: FrameHeader) -> NDArray[Any]:
    """Decode the one frame of a single-frame compressed file from the encapsulated Pixel
    Data value located by the header scan (no second parse of the header), shape
    ``(1, rows, cols)``. Decoding itself is pydicom's (same plugins and corrections as
    :func:`decode_file`)."""
    from pydicom.pixels import get_decoder

    assert h.encapsulated_offset is not None
    try:
        with open(h.path, "rb") as f:
            f.seek(h.encapsulated_offset)
            data = f.read()
        opts: dict[str, Any] = {
            "rows": h.rows,
            "columns": h.cols,
            "samples_per_pixel": 1,
            "bits_allocated": h.bits_allocated,
            "bits_stored": h.bits_stored,
            "pixel_representation": h.pixel_representation,
            "photometric_interpretation": "MONOCHROME2",
            "number_of_frames": 1,
        }
        if h.transfer_syntax_uid == _RLE:
            from pydicom.encaps import generate_frames

            _check_rle_frame(
                h.path, next(generate_frames(data, number_of_frames=1)), h.rows, h.cols
            )
        arr, _ = get_decoder(h.transfer_syntax_uid).as_array(data, **opts)
    except InputError:
        raise
    except BaseException as exc:  # decoder errors come in many types; re-raised with the file
        if not _is_decoder_failure(exc):
            raise
        raise InputError(
            h.path, f"cannot decode pixel data ({h.transfer_syntax}): {_one_line(exc)}"
        ) from exc
    arr = np.asarray(arr)
    if arr.size != h.rows * h.cols:
        raise InputError(
            h.path,
            f"decoded frame holds {arr.size} values; the header declares Rows {h.rows} x "
            f"Columns {h.cols} = {h.rows * h.cols}",
        )
    return arr.reshape(1, h.rows, h.cols)


_Job = tuple[Path, tuple[int, ...] | None, FrameHeader | None]


def _decode_job(job: _Job) -> NDArray[Any]:
    path, frames, single = job
    if single is not None:
        return decode_encapsulated(single)
    return decode_file(path, frames)


def _context() -> Any:
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def _decode_in_workers(jobs: list[_Job], workers: int) -> Iterator[NDArray[Any]]:
    """Decode ``jobs`` in a process pool, yielding results in job order.

    A worker that raises sends its (picklable) :class:`InputError`, re-raised here. A worker
    that *dies* (a decoder segfault, the OOM killer) breaks the pool without saying which
    file it was decoding: the jobs not yet finished are then run one at a time, each in its
    own process, so the file that kills its process is named in an :class:`InputError`.
    """
    ex = ProcessPoolExecutor(workers, mp_context=_context())
    try:
        # a deque, popped as results are used, so no future keeps a decoded array alive
        pending = deque((job, ex.submit(_decode_job, job)) for job in jobs)
        while pending:
            job, fut = pending.popleft()
            try:
                res = fut.result()
            except BrokenProcessPool:
                ex.shutdown(wait=True, cancel_futures=True)
                yield _decode_isolated(job)
                while pending:
                    job, f = pending.popleft()
                    done = f.done() and not f.cancelled() and f.exception() is None
                    yield f.result() if done else _decode_isolated(job)
                return
            del fut
            yield res
            del res
    finally:
        ex.shutdown(wait=True, cancel_futures=True)


def _isolated_child(conn: Any, job: _Job) -> None:
    try:
        conn.send(("ok", _decode_job(job)))
    except BaseException as exc:  # sent to the parent, which re-raises it
        conn.send(("error", exc))
    finally:
        conn.close()


def _decode_isolated(job: _Job) -> NDArray[Any]:
    """Run one decoding job in its own process; a process that dies becomes an
    :class:`InputError` naming the file (and the signal that killed it)."""
    ctx = _context()
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_isolated_child, args=(child, job), daemon=True)
    proc.start()
    child.close()
    try:
        status, value = parent.recv()
    except EOFError:
        status, value = "died", None
    finally:
        parent.close()
        proc.join()
    if status == "ok":
        return np.asarray(value)
    if status == "error":
        raise value
    code = proc.exitcode
    how = (
        f"killed by {signal.Signals(-code).name}"
        if code is not None and code < 0 and -code in signal.valid_signals()
        else f"exit status {code}"
    )
    path, _, single = job
    ts = single.transfer_syntax if single is not None else "pydicom decoder"
    raise InputError(path, f"the decoding process died ({how}) while decoding this file ({ts})")


def _read_native(h: FrameHeader, out: NDArray[Any]) -> None:
    """Read uncompressed frame bytes of ``h`` straight into ``out`` (one C-contiguous frame)."""
    assert h.pixel_offset is not None
    nbytes = out.nbytes
    if h.pixel_length is not None and h.pixel_length < nbytes:
        raise InputError(
            h.path,
            f"pixel data holds {h.pixel_length} bytes; expected {nbytes} "
            f"({h.rows}x{h.cols}, {h.bits_allocated} bits)",
        )
    with open(h.path, "rb") as f:
        f.seek(h.pixel_offset)
        got = f.readinto(memoryview(out).cast("B"))  # type: ignore[arg-type]
    if got != nbytes:
        raise InputError(
            h.path, f"truncated file: pixel data expected {nbytes} bytes, found {got or 0}"
        )


def _rescaled(raw: NDArray[Any], h: FrameHeader) -> NDArray[Any]:
    """``raw * slope + intercept`` of one frame in float64 (rounded once when stored)."""
    return raw.astype(np.float64) * h.slope + h.intercept


def _fast_ok(h: FrameHeader, dt: np.dtype[Any]) -> bool:
    return (
        h.pixel_offset is not None
        and h.samples_per_pixel == 1
        and (h.bits_stored == h.bits_allocated or h.pixel_representation == 0)
        and stored_dtype(h) == dt
    )


def _decoded_frames(
    frames: Sequence[FrameHeader], todo: list[int], parallel: bool
) -> Iterator[tuple[int, NDArray[Any]]]:
    """Decode frames ``todo`` (indices into ``frames``) through pydicom, one job per file;
    yields ``(index, frame)`` as results arrive so the caller can copy and drop them."""
    by_file: dict[Path, list[int]] = defaultdict(list)
    for k in todo:
        by_file[frames[k].path].append(k)
    jobs: list[_Job] = []
    for path, ks in by_file.items():
        sel = tuple(frames[k].frame for k in ks)
        first = frames[ks[0]]
        direct = len(ks) == 1 and first.encapsulated_offset is not None
        direct = direct and first.samples_per_pixel == 1
        jobs.append(
            (
                path,
                None if None in sel else tuple(int(f or 0) for f in sel),
                first if direct else None,
            )
        )
    workers = min(_usable_cpus(), MAX_WORKERS, len(jobs))
    if parallel and workers > 1 and len(jobs) >= PARALLEL_MIN_FILES:
        results = _decode_in_workers(jobs, workers)
        for ks, arr in zip(by_file.values(), results, strict=True):
            for pos, k in enumerate(ks):
                yield k, arr[pos]
            del arr
    else:
        for ks, job in zip(by_file.values(), jobs, strict=True):
            arr = _decode_job(job)
            for pos, k in enumerate(ks):
                yield k, arr[pos]
            del arr


def assemble(
    frames: Sequence[FrameHeader], source: Path, parallel: bool = True
) -> tuple[NDArray[Any], Rescale]:
    """Read, rescale and stack ``frames`` (already in slice order) into an ``(I, J, K)`` array.

    A Siemens mosaic (one frame holding all slices as tiles) is de-tiled: slice ``s`` is the
    tile at row ``s // t``, column ``s % t`` of the ``t × t`` grid.
    """
    first = frames[0]
    if first.mosaic:
        return _assemble_mosaic(first)
    rows, cols, n = first.rows, first.cols, len(frames)
    for h in frames:
        if (h.rows, h.cols) != (rows, cols):
            raise InputError(h.path, f"frame is {h.rows}x{h.cols}; expected {rows}x{cols}")
    slopes = {h.slope for h in frames}
    intercepts = {h.intercept for h in frames}
    dtypes = {stored_dtype(h) for h in frames}
    units = first.units
    integer = (
        slopes == {1.0}
        and len(intercepts) == 1
        and float(next(iter(intercepts))).is_integer()
        and len(dtypes) == 1
    )
    sdt = next(iter(dtypes))
    buf: NDArray[Any] = np.empty((n, rows, cols), dtype=sdt if integer else np.float32)

    fast = [k for k, h in enumerate(frames) if _fast_ok(h, sdt)]
    fast_set = set(fast)
    slow = [k for k in range(n) if k not in fast_set]
    scratch = None if integer else np.empty((rows, cols), dtype=sdt)
    for k in fast:
        h = frames[k]
        if integer:
            _read_native(h, buf[k])
        else:
            assert scratch is not None
            _read_native(h, scratch)
            buf[k] = _rescaled(scratch, h)
    if slow:
        for k, raw in _decoded_frames(frames, slow, parallel):
            h = frames[k]
            if raw.shape != (rows, cols):
                raise InputError(
                    h.path, f"decoded frame has shape {raw.shape}; expected ({rows}, {cols})"
                )
            if raw.dtype.kind not in "iu":
                raise InputError(
                    h.path, f"decoded pixel values are {raw.dtype}; expected integer stored values"
                )
            if integer:
                buf[k] = raw
            else:
                buf[k] = _rescaled(raw, h)

    if integer:
        intercept = next(iter(intercepts))
        buf = _apply_integer_intercept(buf, int(intercept))
        rescale = Rescale(1.0, float(intercept), units)
    else:
        rescale = Rescale(
            next(iter(slopes)) if len(slopes) == 1 else None,
            next(iter(intercepts)) if len(intercepts) == 1 else None,
            units,
        )
    return buf.transpose(2, 1, 0), rescale


def _assemble_mosaic(h: FrameHeader) -> tuple[NDArray[Any], Rescale]:
    from medseg.io.dicom.geometry import mosaic_tiles

    assert h.mosaic_n is not None
    tiles, tr, tc = mosaic_tiles(h)
    sdt = stored_dtype(h)
    if _fast_ok(h, sdt):
        raw = np.empty((h.rows, h.cols), dtype=sdt)
        _read_native(h, raw)
    else:
        raw = decode_file(h.path, None if h.frame is None else [h.frame])[0]
    if raw.shape != (h.rows, h.cols):
        raise InputError(h.path, f"decoded mosaic is {raw.shape}; expected ({h.rows}, {h.cols})")
    integer = h.slope == 1.0 and float(h.intercept).is_integer()
    buf: NDArray[Any] = np.empty((h.mosaic_n, tr, tc), dtype=sdt if integer else np.float32)
    for s in range(h.mosaic_n):
        r0, c0 = (s // tiles) * tr, (s % tiles) * tc
        tile = raw[r0 : r0 + tr, c0 : c0 + tc]
        if integer:
            buf[s] = tile
        else:
            buf[s] = _rescaled(tile, h)
    if integer:
        buf = _apply_integer_intercept(buf, int(h.intercept))
    return buf.transpose(2, 1, 0), Rescale(h.slope, h.intercept, h.units)


def _apply_integer_intercept(buf: NDArray[Any], intercept: int) -> NDArray[Any]:
    """``buf + intercept`` as int16 when it fits, else int32 (stored type when intercept is 0)."""
    if intercept == 0 or buf.size == 0:
        return buf
    lo = int(buf.min()) + intercept
    hi = int(buf.max()) + intercept
    for target in (np.int16, np.int32, np.int64):
        info = np.iinfo(target)
        if info.min <= lo and hi <= info.max:
            break
    tdt = np.dtype(target)
    if tdt.itemsize == buf.dtype.itemsize:
        # In place with modular arithmetic: the result fits the target, so wrapping is exact.
        view = buf.view(tdt)
        np.add(view, np.array(intercept).astype(tdt), out=view, casting="unsafe")
        return view
    out = buf.astype(tdt)
    del buf
    out += intercept
    return out


__all__ = ["Rescale", "assemble", "decode_file", "stored_dtype"]
