"""medseg.volumetry.stats against independent references: voxel counts × |det| of the affine,
brute-force pairwise distances (scipy ``pdist``), ``scipy.ndimage.label`` components, numpy
statistics on the masked image, analytic spheres, and world coordinates computed directly from
the affine."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial.distance import pdist
from support.volumes import box, label_map, sphere, volume

from medseg.errors import GeometryMismatchError, InvalidVolumeError
from medseg.volume import LabelMap, Volume, VolumeMeta, affine_from_geometry
from medseg.volumetry import label_statistics, max_pairwise_distance
from medseg.volumetry.stats import VOLUME_FIELDS


def _rotation(axis: tuple[float, float, float], deg: float) -> np.ndarray:
    a = np.asarray(axis, dtype=float)
    a /= np.linalg.norm(a)
    t = np.deg2rad(deg)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + np.sin(t) * k + (1 - np.cos(t)) * k @ k


def _blobs(shape: tuple[int, int, int], seed: int, n_labels: int = 4) -> np.ndarray:
    """Random multi-label map of irregular, partly disconnected blobs."""
    rng = np.random.default_rng(seed)
    noise = ndimage.gaussian_filter(rng.normal(size=shape), 1.5)
    arr = np.zeros(shape, dtype=np.uint8)
    edges = np.quantile(noise, np.linspace(0.55, 0.98, n_labels + 1))
    for v in range(n_labels):
        arr[(noise > edges[v]) & (noise <= edges[v + 1])] = v + 1
    return arr


def _by_label(recs):  # type: ignore[no-untyped-def]
    return {r.label: r for r in recs}


OBLIQUE = _rotation((0.3, -0.5, 0.8), 27.0)


@pytest.mark.parametrize(
    "spacing, direction",
    [((1.0, 1.0, 1.0), None), ((0.7, 0.45, 2.5), None), ((0.8, 1.1, 3.0), OBLIQUE)],
)
def test_counts_volumes_centroids_bbox_against_brute_force(spacing, direction) -> None:
    arr = _blobs((23, 19, 17), seed=1)
    lm = label_map(arr, spacing, direction, origin=(-12.0, 30.5, 7.0))
    recs = _by_label(label_statistics(lm))
    det = abs(np.linalg.det(lm.affine[:3, :3]))
    assert det == pytest.approx(np.prod(spacing), rel=1e-12)
    for v in range(1, 5):
        idx = np.argwhere(arr == v)
        world = idx @ lm.affine[:3, :3].T + lm.affine[:3, 3]
        r = recs[v]
        assert r.voxels == len(idx)
        assert r.volume_mm3 == len(idx) * det
        assert r.volume_ml == pytest.approx(len(idx) * np.prod(spacing) / 1000.0, rel=1e-12)
        np.testing.assert_allclose(r.centroid_mm, world.mean(axis=0), atol=1e-9)
        np.testing.assert_allclose(r.bbox_min_mm, world.min(axis=0), atol=1e-9)
        np.testing.assert_allclose(r.bbox_max_mm, world.max(axis=0), atol=1e-9)
        assert r.diameter_mm == pytest.approx(pdist(world).max(), rel=1e-12)
        assert r.bbox_index == tuple(zip(idx.min(axis=0), idx.max(axis=0), strict=True))


def test_sheared_grid_volume_is_abs_det() -> None:
    aff = np.array([[0.8, 0.2, 0.0, 0], [0.0, 0.9, 0.0, 0], [0.0, 0.3, -2.0, 0], [0, 0, 0, 1]])
    arr = box((6, 6, 6), (1, 1, 1), (4, 5, 3))
    (r,) = label_statistics(LabelMap(arr, aff))
    assert r.volume_mm3 == pytest.approx(24 * abs(np.linalg.det(aff[:3, :3])), rel=1e-12)
    assert r.volume_mm3 == pytest.approx(24 * 0.8 * 0.9 * 2.0, rel=1e-12)  # det, not norms


def test_components_26_connected_against_scipy_label() -> None:
    for seed in range(3):
        arr = _blobs((30, 26, 20), seed=seed + 10, n_labels=3)
        recs = _by_label(label_statistics(label_map(arr)))
        full = np.ones((3, 3, 3), dtype=bool)
        for v in range(1, 4):
            _, n = ndimage.label(arr == v, structure=full)
            assert recs[v].components == n


def test_diagonal_neighbours_are_one_component() -> None:
    arr = np.zeros((5, 5, 5), dtype=np.uint8)
    arr[1, 1, 1] = arr[2, 2, 2] = arr[3, 3, 3] = 1  # corner contacts only
    arr[0, 4, 0] = 1  # isolated
    (r,) = label_statistics(label_map(arr))
    assert r.components == 2


@pytest.mark.parametrize("radius", [4, 7, 10])
def test_sphere_diameter_is_two_r(radius: int) -> None:
    n = 2 * radius + 5
    c = n // 2
    (r,) = label_statistics(label_map(sphere((n, n, n), (c, c, c), radius), (1.0, 1.0, 1.0)))
    assert r.diameter_mm == pytest.approx(2 * radius, abs=1e-9)  # axis points on the grid
    assert r.components == 1
    assert r.voxels == pytest.approx(4 / 3 * math.pi * radius**3, rel=0.08)


def test_sphere_in_mm_on_anisotropic_and_oblique_grid() -> None:
    """A 12 mm-radius ball drawn in world space on a 0.6×0.9×2 mm grid, straight and rotated:
    the diameter is 24 mm (within one voxel diagonal), whatever the voxel shape."""
    spacing = np.array([0.6, 0.9, 2.0])
    shape = (50, 34, 18)
    for direction in (np.eye(3), OBLIQUE):
        aff = affine_from_geometry(spacing, (0.0, 0.0, 0.0), direction)
        idx = np.indices(shape).reshape(3, -1).T
        world = idx @ aff[:3, :3].T
        centre = (np.array(shape) - 1) / 2 @ aff[:3, :3].T
        inside = np.linalg.norm(world - centre, axis=1) <= 12.0
        arr = inside.reshape(shape).astype(np.uint8)
        (r,) = label_statistics(LabelMap(arr, aff))
        assert 24.0 - 2.2 <= r.diameter_mm <= 24.0
        assert r.diameter_mm == pytest.approx(pdist(world[inside]).max(), rel=1e-12)
        assert r.volume_mm3 == pytest.approx(4 / 3 * math.pi * 12.0**3, rel=0.05)


def test_flat_and_degenerate_labels() -> None:
    arr = np.zeros((50, 50, 5), dtype=np.uint8)
    arr[2:48, 3:47, 2] = 1  # one slice thick, 2024 hull candidates: the planar hull path
    arr[5, 5:30, 4] = 2  # a line
    arr[0, 0, 0] = 3  # one voxel
    lm = label_map(arr, (0.7, 0.9, 3.0), OBLIQUE)
    recs = _by_label(label_statistics(lm))
    for v in (1, 2):
        world = np.argwhere(arr == v) @ lm.affine[:3, :3].T
        assert recs[v].diameter_mm == pytest.approx(pdist(world).max(), rel=1e-12)
    assert recs[2].diameter_mm == pytest.approx(24 * 0.9, rel=1e-12)
    assert recs[3].diameter_mm == 0.0
    assert recs[3].voxels == 1 and recs[3].components == 1


def test_max_pairwise_distance_many_points() -> None:
    rng = np.random.default_rng(3)
    cloud = rng.normal(size=(4000, 3)) * (30.0, 10.0, 3.0)
    assert max_pairwise_distance(cloud) == pytest.approx(pdist(cloud).max(), rel=1e-12)
    planar = np.c_[rng.uniform(-50, 50, (3000, 2)), np.zeros(3000)] @ OBLIQUE.T
    assert max_pairwise_distance(planar) == pytest.approx(pdist(planar).max(), rel=1e-12)
    line = np.outer(rng.uniform(-5, 9, 2500), (0.2, 0.3, -0.9))
    assert max_pairwise_distance(line) == pytest.approx(pdist(line).max(), rel=1e-12)
    assert max_pairwise_distance(np.zeros((1, 3))) == 0.0


def test_border_flag_and_faces() -> None:
    shape = (10, 12, 8)
    arr = box(shape, (3, 3, 3), (6, 6, 6), 1)
    arr[0:2, 4:6, 4] = 2  # i = 0 face
    arr[4, 4, 6:8] = 3  # k = last face
    arr[8:10, 0:12, 0:2] = 4  # i last, j both, k first
    ras = _by_label(label_statistics(label_map(arr)))  # identity: RAS
    assert not ras[1].touches_border and ras[1].border_faces == ()
    assert ras[2].touches_border and ras[2].border_faces == ("L",)  # i points to R
    assert ras[3].border_faces == ("S",)
    assert set(ras[4].border_faces) == {"R", "P", "A", "I"}
    lps = label_map(arr, direction=np.diag([-1.0, -1.0, 1.0]))  # a DICOM-like LPS grid
    assert lps.orientation == "LPS"
    rec = _by_label(label_statistics(lps))
    assert rec[2].border_faces == ("R",)  # i points to L, so index 0 is the right side
    # The volume of a structure at the border is measured, never reported as 0.
    assert rec[4].voxels == 2 * 12 * 2 and rec[4].volume_ml > 0


def test_absent_labels_listed_never_dropped() -> None:
    arr = box((8, 8, 8), (2, 2, 2), (4, 4, 4), 3)
    lm = label_map(arr, label_names={1: "liver", 3: "spleen"})
    recs = label_statistics(lm, include=[7], case="c1")
    assert [r.label for r in recs] == [1, 3, 7]
    absent = _by_label(recs)
    for v, name in ((1, "liver"), (7, "label_7")):
        r = absent[v]
        assert r.absent and r.voxels == 0 and r.volume_ml == 0.0 and r.components == 0
        assert r.name == name and r.case == "c1"
        assert math.isnan(r.diameter_mm) and all(math.isnan(c) for c in r.centroid_mm)
        assert not r.touches_border
    assert not absent[3].absent and absent[3].name == "spleen"
    row = absent[7].as_dict()
    assert tuple(row) == VOLUME_FIELDS
    assert row["absent"] is True and row["voxels"] == 0


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("dtype", [np.float32, np.int16])
def test_intensity_statistics_equal_numpy(order: str, dtype: type) -> None:
    rng = np.random.default_rng(5)
    arr = np.asarray(_blobs((21, 18, 15), seed=4), order=order)
    img = np.asarray((rng.normal(40, 25, arr.shape) * 3).astype(dtype), order=order)
    lm = label_map(arr, (0.8, 0.8, 2.5))
    vol = Volume(img, lm.affine, "img", VolumeMeta(units="HU"))
    recs = _by_label(label_statistics(lm, vol))
    for v in range(1, 5):
        vals = img[arr == v].astype(np.float64)
        it = recs[v].intensity
        assert it is not None and it.units == "HU"
        assert it.mean == pytest.approx(vals.mean(), rel=1e-9)
        assert it.std == pytest.approx(vals.std(), rel=1e-9)
        assert it.min == vals.min() and it.max == vals.max()
        ref = np.percentile(img[arr == v], [5, 50, 95])
        assert it.median == pytest.approx(np.median(vals), rel=1e-6)
        np.testing.assert_allclose([it.p5, it.median, it.p95], ref, rtol=1e-6)
        assert recs[v].voxels == int(np.count_nonzero(arr == v))


def test_no_image_no_intensity_and_nan_in_row() -> None:
    (r,) = label_statistics(label_map(box((5, 5, 5), (1, 1, 1), (3, 3, 3))))
    assert r.intensity is None
    d = r.as_dict()
    assert d["intensity_units"] == "" and math.isnan(d["intensity_mean"])


def test_grid_mismatch_and_bad_labels_refused() -> None:
    arr = box((6, 6, 6), (1, 1, 1), (3, 3, 3))
    with pytest.raises(GeometryMismatchError, match="does not match"):
        label_statistics(label_map(arr), volume(np.zeros((6, 6, 5), np.float32)))
    with pytest.raises(GeometryMismatchError, match="affine differs"):
        label_statistics(label_map(arr), volume(np.zeros((6, 6, 6)), spacing=(1, 1, 1.5)))
    neg = arr.astype(np.int16)
    neg[0, 0, 0] = -2
    with pytest.raises(InvalidVolumeError, match="negative"):
        label_statistics(label_map(neg))


def test_benchmark_smoke() -> None:
    """``bench/bench_volumetry.py --smoke`` runs, agrees with TotalSegmentator's loop on every
    label and prints the table (no timing assertion)."""
    import subprocess
    import sys
    from pathlib import Path

    bench = Path(__file__).resolve().parents[1] / "bench" / "bench_volumetry.py"
    proc = subprocess.run(
        [sys.executable, str(bench), "--smoke"], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert "117 labels present" in proc.stdout
    assert "max relative volume difference" in proc.stdout
    assert "ratio TotalSegmentator loop / medseg" in proc.stdout


def test_max_pairwise_distance_small_random_sets() -> None:
    """The pruned exact search against every pair, on many small sets and point surfaces."""
    rng = np.random.default_rng(11)
    for _ in range(200):
        n = int(rng.integers(2, 60))
        pts = rng.normal(size=(n, 3)) * rng.uniform(0.1, 10, 3)
        assert max_pairwise_distance(pts) == pytest.approx(pdist(pts).max(), rel=1e-12)
    shell = rng.normal(size=(3000, 3))
    shell /= np.linalg.norm(shell, axis=1, keepdims=True)  # nothing prunes on a sphere
    assert max_pairwise_distance(shell) == pytest.approx(pdist(shell).max(), rel=1e-12)


def test_lesion_count_and_volumes_per_component() -> None:
    """Each 26-connected component is a lesion: count and volumes against scipy.ndimage.label
    (full 3×3×3 structure) times the voxel volume, largest first; absent labels have none."""
    rng = np.random.default_rng(4)
    arr = (ndimage.binary_opening(rng.random((40, 36, 20)) > 0.7) * 2).astype(np.uint8)
    lm = label_map(arr, spacing=(0.8, 0.47, 0.47), label_names={1: "nothing", 2: "lesion"})
    by = {s.label: s for s in label_statistics(lm)}
    comps, n = ndimage.label(arr == 2, structure=np.ones((3, 3, 3)))
    sizes = sorted(np.bincount(comps.ravel())[1:], reverse=True)
    voxel_ml = 0.8 * 0.47 * 0.47 / 1000
    s = by[2]
    assert s.components == n > 2
    np.testing.assert_allclose(s.component_volumes_ml, [c * voxel_ml for c in sizes])
    row = s.as_dict()
    assert row["largest_component_ml"] == pytest.approx(sizes[0] * voxel_ml)
    assert row["smallest_component_ml"] == pytest.approx(sizes[-1] * voxel_ml)
    assert row["median_component_ml"] == pytest.approx(np.median(sizes) * voxel_ml)
    assert by[1].components == 0 and by[1].component_volumes_ml == ()
    assert math.isnan(by[1].as_dict()["largest_component_ml"])
