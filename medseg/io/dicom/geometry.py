"""The geometry of one candidate volume (see :mod:`medseg.io.dicom.series`, steps 2 and 3):
frames sorted along the slice normal and checked to form one regular 3-D grid (matrix size,
pixel spacing, orientation, duplicates, gantry tilt, even spacing; Siemens mosaics
de-mosaicked), and the voxel → RAS+ affine in mm."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from medseg.io.dicom.headers import FrameHeader
from medseg.volume import LPS_TO_RAS

#: Two orientation cosines are "the same plane" when they differ by less than this.
IOP_TOL = 1e-4
#: Slices are refused as tilted when the slice direction deviates from the normal by more.
TILT_TOL_DEG = 0.05
#: Relative / absolute tolerance on slice spacing (the larger applies).
SPACING_RTOL = 0.01
SPACING_ATOL_MM = 0.01

#: PhotometricInterpretation values of colour images (refused: medseg reads grayscale).
_COLOUR = frozenset(
    {
        "PALETTE COLOR",
        "RGB",
        "YBR_FULL",
        "YBR_FULL_422",
        "YBR_PARTIAL_422",
        "YBR_PARTIAL_420",
        "YBR_ICT",
        "YBR_RCT",
        "HSV",
        "ARGB",
        "CMYK",
    }
)


@dataclass(frozen=True)
class Geometry:
    """Frames in slice order, the voxel → RAS+ affine (mm), shape ``(columns, rows, slices)``,
    spacing (mm) along those axes and how the slice spacing was obtained."""

    frames: tuple[FrameHeader, ...]
    affine: npt.NDArray[np.float64]
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    slice_spacing_source: str


def _fmt_pos(p: Sequence[float] | npt.NDArray[np.float64]) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in p) + ")"


def check_geometry(frames: Sequence[FrameHeader]) -> Geometry | str:
    """Sort ``frames`` along the slice normal and check they form one regular 3-D grid.

    Returns the geometry, or a one-paragraph reason why the frames are not one volume.
    """
    first = frames[0]
    if any(h.mosaic for h in frames):
        return _mosaic_geometry(frames)
    colour = [h for h in frames if h.samples_per_pixel != 1 or h.photometric in _COLOUR]
    if colour:
        h = colour[0]
        more = f" and {len(colour) - 1} more" if len(colour) > 1 else ""
        return (
            f"colour image ({h.photometric or 'PhotometricInterpretation absent'}, "
            f"{h.samples_per_pixel} samples per pixel in {h.path.name}{more}); expected "
            "grayscale (MONOCHROME1/MONOCHROME2)"
        )
    unknown = [h for h in frames if h.photometric not in (None, "MONOCHROME1", "MONOCHROME2")]
    if unknown:
        h = unknown[0]
        return (
            f"unknown PhotometricInterpretation {h.photometric!r} in {h.path.name}; expected "
            "MONOCHROME1 or MONOCHROME2 (grayscale)"
        )
    missing = [
        name
        for name, v in (
            ("ImagePositionPatient", first.ipp),
            ("ImageOrientationPatient", first.iop),
            ("PixelSpacing", first.pixel_spacing),
        )
        if v is None
    ]
    if missing or any(h.ipp is None or h.iop is None or h.pixel_spacing is None for h in frames):
        return (
            f"no patient geometry ({', '.join(missing) or 'some slices lack position/spacing'} "
            "missing): not a spatial image volume"
        )
    sizes = {(h.rows, h.cols) for h in frames}
    if len(sizes) > 1:
        return f"slices have different matrix sizes {sorted(sizes)}; expected one size"
    assert first.pixel_spacing is not None and first.iop is not None
    ps = np.array([h.pixel_spacing for h in frames], dtype=np.float64)
    if np.max(np.abs(ps - ps[0])) > 1e-4:
        return f"slices have different PixelSpacing (from {ps.min(0)} to {ps.max(0)} mm)"
    iops = np.array([h.iop for h in frames], dtype=np.float64)
    if np.max(np.abs(iops - iops[0])) > IOP_TOL:
        return "slices have different ImageOrientationPatient; expected one image plane"

    row = np.array(first.iop[:3])
    col = np.array(first.iop[3:])
    row /= np.linalg.norm(row)
    col /= np.linalg.norm(col)
    normal = np.cross(row, col)
    ipp = np.array([h.ipp for h in frames], dtype=np.float64)
    proj = ipp @ normal
    order = np.argsort(proj, kind="stable")
    ipp = ipp[order]
    proj = proj[order]
    sorted_frames = tuple(frames[int(i)] for i in order)
    n = len(frames)

    if n > 1:
        d = np.diff(proj)
        dup = np.flatnonzero(np.abs(d) < SPACING_ATOL_MM)
        if dup.size:
            i = int(dup[0])
            a, b = sorted_frames[i], sorted_frames[i + 1]
            same_sop = a.sop_instance_uid is not None and a.sop_instance_uid == b.sop_instance_uid
            return (
                f"duplicate slice positions: {dup.size} pair(s) of the {n} slices share a "
                f"position, e.g. {a.path.name}"
                f"{'' if a.frame is None else f' frame {a.frame}'} and {b.path.name}"
                f"{'' if b.frame is None else f' frame {b.frame}'} at LPS "
                f"{_fmt_pos(ipp[i])} mm"
                + (" (same SOPInstanceUID: copies of one image)" if same_sop else "")
                + "; no echo/time/type tag explains the repetition, refusing to stack"
            )
        step = (ipp[-1] - ipp[0]) / (n - 1)
        rel = ipp - ipp[0]
        along = rel @ normal
        inplane = rel - np.outer(along, normal)
        if n > 2:
            # The slice centres must lie on one line. Its in-plane drift per mm along the
            # normal is the median of the slice-to-slice drifts, so that one displaced slice
            # is reported as displaced, not as a gantry tilt of the whole series.
            drift = np.median(np.diff(inplane, axis=0) / d[:, None], axis=0)
            resid = inplane - np.outer(along, drift)
            off = np.linalg.norm(resid - np.median(resid, axis=0), axis=1)
            worst = int(np.argmax(off))
            tol_in_plane = max(SPACING_ATOL_MM, SPACING_RTOL * float(np.median(np.abs(d))))
            if off[worst] > tol_in_plane:
                return (
                    f"slice positions are not on one line along the normal: slice at "
                    f"{proj[worst]:.4g} mm ({sorted_frames[worst].path.name}) is shifted "
                    f"{off[worst]:.3g} mm in-plane from the line through the other slices "
                    f"(tolerance {tol_in_plane:.3g} mm)"
                )
        else:
            drift = inplane[-1] / along[-1]
        angle = float(np.degrees(np.arctan(float(np.linalg.norm(drift)))))
        if angle > TILT_TOL_DEG:
            return (
                f"gantry tilt: slice positions run {angle:.2f} degrees away from the image "
                f"normal {_fmt_pos(normal)} (tolerance {TILT_TOL_DEG} deg); resampling to an "
                "orthogonal grid is not supported, refusing"
            )
        if n > 2:
            expected = float(np.median(d))
            tol = max(SPACING_ATOL_MM, SPACING_RTOL * expected)
            bad = np.flatnonzero(np.abs(d - expected) > tol)
            if bad.size:
                gaps = "; ".join(
                    f"{d[i]:.4g} mm between slices at {proj[i]:.4g} and {proj[i + 1]:.4g} mm"
                    for i in bad[:5]
                )
                return (
                    f"uneven slice spacing (missing slices?): expected {expected:.4g} mm "
                    f"between consecutive slices (median), found {gaps} (positions along the "
                    f"normal {_fmt_pos(normal)}, LPS; tolerance {tol:.3g} mm)"
                )
        slice_step = step
        slice_spacing = float(np.linalg.norm(step))
        source = "positions"
    else:
        # One slice: the slice axis points along the normal, as for a series; only the
        # distance comes from a tag (a negative SpacingBetweenSlices, written by some
        # scanners to give a direction, would flip the axis).
        if first.spacing_between_slices:
            slice_spacing, source = abs(first.spacing_between_slices), "SpacingBetweenSlices"
        elif first.slice_thickness:
            slice_spacing, source = abs(first.slice_thickness), "SliceThickness"
        else:
            slice_spacing, source = 1.0, "none (single slice: 1 mm nominal)"
        slice_step = normal * slice_spacing

    dr, dc = first.pixel_spacing  # between rows, between columns
    lps = np.eye(4)
    lps[:3, 0] = row * dc
    lps[:3, 1] = col * dr
    lps[:3, 2] = slice_step
    lps[:3, 3] = ipp[0]
    affine = LPS_TO_RAS @ lps
    return Geometry(
        frames=sorted_frames,
        affine=affine,
        shape=(first.cols, first.rows, n),
        spacing=(float(dc), float(dr), float(slice_spacing)),
        slice_spacing_source=source,
    )


def mosaic_tiles(h: FrameHeader) -> tuple[int, int, int]:
    """``(tiles per side, tile rows, tile columns)`` of a Siemens mosaic frame."""
    assert h.mosaic_n is not None
    tiles = int(np.ceil(np.sqrt(h.mosaic_n)))
    return tiles, h.rows // tiles, h.cols // tiles


def _mosaic_geometry(frames: Sequence[FrameHeader]) -> Geometry | str:
    """Geometry of one de-mosaicked Siemens volume (the frame holds ``mosaic_n`` tiles).

    The slices' positions are not in the DICOM header, only the mosaic's (top-left corner of
    the whole tiled frame): the first slice's centre is shifted by half the unused tiles; the
    slice direction is the CSA SliceNormalVector and the slice spacing SpacingBetweenSlices
    (else SliceThickness), as dcm2niix does.
    """
    first = frames[0]
    if len(frames) != 1:
        return (
            f"{len(frames)} Siemens mosaic files with the same position, acquisition and "
            "instance number (copies of one image?); read a single file instead"
        )
    if first.mosaic_n is None or first.mosaic_normal is None:
        return (
            "Siemens mosaic without a readable CSA header (NumberOfImagesInMosaic / "
            "SliceNormalVector): cannot de-mosaic"
        )
    if first.ipp is None or first.iop is None or first.pixel_spacing is None:
        return "Siemens mosaic without ImagePositionPatient/ImageOrientationPatient/PixelSpacing"
    tiles, tr, tc = mosaic_tiles(first)
    if tiles * tr != first.rows or tiles * tc != first.cols:
        return f"mosaic {first.rows}x{first.cols} does not split into {tiles}x{tiles} tiles"
    row = np.array(first.iop[:3])
    col = np.array(first.iop[3:])
    normal = np.array(first.mosaic_normal)
    dr, dc = first.pixel_spacing
    if first.spacing_between_slices:
        ds, source = first.spacing_between_slices, "SpacingBetweenSlices (mosaic)"
    elif first.slice_thickness:
        ds, source = first.slice_thickness, "SliceThickness (mosaic)"
    else:
        return "Siemens mosaic without SpacingBetweenSlices or SliceThickness"
    origin = (
        np.array(first.ipp)
        + row * dc * (first.cols - tc) / 2.0
        + col * dr * (first.rows - tr) / 2.0
    )
    lps = np.eye(4)
    lps[:3, 0] = row * dc
    lps[:3, 1] = col * dr
    lps[:3, 2] = normal * ds
    lps[:3, 3] = origin
    return Geometry(
        frames=tuple(frames),
        affine=LPS_TO_RAS @ lps,
        shape=(tc, tr, first.mosaic_n),
        spacing=(float(dc), float(dr), float(ds)),
        slice_spacing_source=source,
    )


__all__ = [
    "IOP_TOL",
    "SPACING_ATOL_MM",
    "SPACING_RTOL",
    "TILT_TOL_DEG",
    "Geometry",
    "check_geometry",
    "mosaic_tiles",
]
