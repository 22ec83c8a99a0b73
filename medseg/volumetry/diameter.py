"""The largest diameter of a point set, exactly: the maximum pairwise distance, found among
the convex hull's vertices when there are many points (the farthest pair is always a pair of
hull vertices) and by a pruned pairwise search otherwise. :func:`line_extremes` thins a voxel
set to the hull candidates (the first and last voxel of every line along an axis)."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

#: At most this many hull candidate points are compared pairwise without a convex hull.
_BRUTE_FORCE_POINTS = 1500


def max_pairwise_distance(points: npt.ArrayLike) -> float:
    """Largest Euclidean distance between two of ``points`` (``(n, d)``), exactly.

    Uses the convex hull's vertices (``scipy.spatial.ConvexHull``) when there are many points
    (the farthest pair is always a pair of hull vertices); flat (coplanar or collinear) sets are
    handled in their own plane or line.
    """
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"expected an (n, d) array of points, found shape {p.shape}")
    if len(p) < 2:
        return 0.0
    if len(p) > _BRUTE_FORCE_POINTS:
        p = _hull_vertices(p)
    return _brute_force_diameter(p)


def _hull_vertices(p: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    from scipy.spatial import ConvexHull, QhullError

    centred = p - p.mean(axis=0)
    # Work in the affine span of the points: full-dimensional sets go to qhull directly,
    # flat ones (a slab one voxel thick, a line) are first expressed in their own basis.
    evals, evecs = np.linalg.eigh(centred.T @ centred)
    order = np.argsort(evals)[::-1]
    evals, evecs = evals[order], evecs[:, order]
    rank = int(np.sum(evals > max(float(evals[0]), 1e-300) * 1e-12))
    coords = centred @ evecs[:, :rank]
    if rank <= 1:
        x = coords[:, 0] if rank == 1 else np.zeros(len(p))
        return p[[int(np.argmin(x)), int(np.argmax(x))]]
    try:
        hull = ConvexHull(coords)
    except QhullError:  # nearly flat beyond the tolerance above: joggled input, same vertices
        hull = ConvexHull(coords, qhull_options="QJ")
    result: npt.NDArray[np.float64] = p[hull.vertices]
    return result


def _brute_force_diameter(p: npt.NDArray[np.float64]) -> float:
    """Exact maximum pairwise distance, pruned: with ``c`` the centre of the points' box,
    ``R`` their largest distance from it and ``L`` a distance already found, a pair longer
    than ``L`` has both ends farther than ``L - R`` from ``c`` (triangle inequality)."""
    c = p - (p.min(axis=0) + p.max(axis=0)) / 2.0
    r = np.sqrt(np.einsum("ij,ij->i", c, c))
    big_r = float(r.max())
    # A long pair to start from: the farthest point from the farthest point (twice).
    a = int(np.argmax(r))
    b = int(np.argmax(np.einsum("ij,ij->i", c - c[a], c - c[a])))
    a2 = int(np.argmax(np.einsum("ij,ij->i", c - c[b], c - c[b])))
    best_pair = (b, a2)
    best = float(np.sum((c[b] - c[a2]) ** 2))
    keep = np.flatnonzero(r >= math.sqrt(best) - big_r - 1e-9 * max(big_r, 1.0))
    q = c[keep]
    step = 256
    for s in range(0, len(q), step):
        block, rest = q[s : s + step], q[s:]
        d2 = np.zeros((len(block), len(rest)))
        for axis in range(c.shape[1]):
            d2 += (block[:, None, axis] - rest[None, :, axis]) ** 2
        flat = int(np.argmax(d2))
        i, j = divmod(flat, d2.shape[1])
        if d2[i, j] > best:
            best, best_pair = float(d2[i, j]), (int(keep[s + i]), int(keep[s + j]))
    return float(np.linalg.norm(p[best_pair[0]] - p[best_pair[1]]))


def line_extremes(idx: npt.NDArray[np.int64], axis: int) -> npt.NDArray[np.bool_]:
    """Of integer points ``idx`` ``(n, 3)``, those that are the first or last on their line
    parallel to ``axis``; the others lie strictly between two points, so they are neither
    vertices of the convex hull nor extreme in any direction."""
    u, w = (a for a in range(3) if a != axis)
    key = idx[:, u] * (int(idx[:, w].max()) + 1) + idx[:, w]
    order = np.lexsort((idx[:, axis], key))
    ks = key[order]
    change = ks[1:] != ks[:-1]
    ends = np.concatenate(([True], change)) | np.concatenate((change, [True]))
    keep = np.zeros(len(idx), dtype=bool)
    keep[order[ends]] = True
    return keep


__all__ = ["line_extremes", "max_pairwise_distance"]
