"""The HTML report: its numbers equal the CSV files, it renders in a real headless Chromium
without console errors and with every picture loaded from the file itself, and its pictures
follow the radiological convention with the true aspect ratio.

The browser test drives Debian's ``chromium`` through ``chromedriver`` (selenium); it skips
with the reason where they are absent, unless ``MEDSEG_REQUIRE_CHROMIUM`` is set (``.ci/run``
installs Chromium and sets it), where a missing browser fails the test.
"""

from __future__ import annotations

import csv
import io
import os
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support.volumes import box, sphere, write_nifti

from medseg.cli import main
from medseg.volume import LabelMap, Volume, VolumeMeta, affine_from_geometry
from medseg.volumetry import label_statistics
from medseg.volumetry.figures import label_figure, plane, view_specs

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1300,1000",
)
#: Tables whose cells are checked against a CSV file: (CSV file, key columns).
TABLES = {
    "volumes": ("volumes.csv", ("case", "label")),
    "longitudinal": ("longitudinal.csv", ("case", "label")),
    "comparison": ("comparison.csv", ("case", "label")),
}


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-case run with images, a baseline, a comparison set and one failing case."""
    root = tmp_path_factory.mktemp("report")
    shape = (32, 30, 16)
    ras = affine_from_geometry((0.9, 0.7, 2.5), (-10.0, 5.0, 0.0))
    lps = affine_from_geometry((0.8, 0.8, 2.0), (40.0, 30.0, 0.0), np.diag([-1.0, -1.0, 1.0]))
    rng = np.random.default_rng(0)
    for name, aff, r in (("ras_case", ras, 6.0), ("lps_case", lps, 5.0)):
        lab = sphere(shape, (16, 15, 8), r, 1)
        lab[box(shape, (3, 3, 0), (8, 9, 4)) > 0] = 2  # touches the k = 0 face
        img = (rng.normal(40, 20, shape) + 80 * lab).astype(np.int16)
        write_nifti(root / "segs" / f"{name}.nii.gz", lab, aff)
        write_nifti(root / "imgs" / f"{name}.nii.gz", img, aff)
        write_nifti(root / "base" / f"{name}.nii.gz", sphere(shape, (16, 15, 8), r - 1, 1), aff)
        write_nifti(root / "ref" / f"{name}.nii.gz", sphere(shape, (16, 15, 8), r + 1, 1), aff)
    write_nifti(root / "segs" / "bad_case.nii.gz", sphere(shape, (16, 15, 8), 4, 1), ras)
    write_nifti(root / "imgs" / "bad_case.nii.gz", np.zeros((8, 8, 8), np.int16), ras)
    out = root / "out"
    inputs = {"--images": "imgs", "--baseline": "base", "--compare": "ref"}
    args = [x for flag, sub in inputs.items() for x in (flag, str(root / sub))]
    rc = main(["volumetry", str(root / "segs"), *args, "--image-units", "HU", "--out", str(out)])
    assert rc == 1  # bad_case: reported, the others measured
    return out


class _Cells(HTMLParser):
    """Collects every ``td[data-col]`` with its table class and case section."""

    def __init__(self) -> None:
        super().__init__()
        self.case = ""
        self.table = ""
        self.rows: list[tuple[str, str, list[dict[str, str]]]] = []
        self._cell: dict[str, str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "section" and "data-case" in a:
            self.case = a["data-case"]
        elif tag == "table":
            self.table = a.get("class", "")
        elif tag == "tr":
            self.rows.append((self.table, self.case, []))
        elif tag == "td" and "data-col" in a:
            self._cell = {
                "col": a["data-col"],
                "value": a["data-value"],
                "fmt": a["data-format"],
                "text": "",
            }

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell["text"] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None:
            self.rows[-1][2].append(self._cell)
            self._cell = None


def _check_rows(out: Path, rows: list[tuple[str, str, list[dict[str, str]]]]) -> int:
    """Every shown cell of the checked tables equals its CSV cell; returns cells checked."""
    csvs = {
        t: {tuple(r[k] for k in keys): r for r in _csv(out / f)} for t, (f, keys) in TABLES.items()
    }
    checked = 0
    for table, case, cells in rows:
        if table not in TABLES or not cells:
            continue
        values = {c["col"]: c for c in cells}
        row_case = values["case"]["value"] if "case" in values else case
        key = (row_case, values["label"]["value"])
        ref = csvs[table][key]
        for c in cells:
            expected = ref[c["col"]]
            assert c["value"] == expected, (table, key, c)
            text = c["text"].strip()
            if c["fmt"]:
                shown = (
                    "—"
                    if expected == "nan"
                    else format(int(expected) if c["fmt"] == "d" else float(expected), c["fmt"])
                )
                assert text == shown, (table, key, c)
            checked += 1
    return checked


def test_numbers_in_report_equal_csv(report: Path) -> None:
    parser = _Cells()
    parser.feed((report / "report.html").read_text(encoding="utf-8"))
    n = _check_rows(report, parser.rows)
    n_rows = len(_csv(report / "volumes.csv"))
    assert n_rows == 4 and n >= n_rows * 10
    html = (report / "report.html").read_text(encoding="utf-8")
    assert "patient&#39;s right is on the left of the image" in html
    assert "bad_case" in html and "Failures" in html
    assert "http://" not in html and "https://" not in html  # nothing fetched from outside


def _chromium() -> Any:
    reasons = []
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        reasons.append(
            f"{CHROMIUM} / {CHROMEDRIVER} not installed (apt-get install chromium chromium-driver)"
        )
    try:
        import selenium  # noqa: F401
    except ImportError:
        reasons.append("selenium not installed (pip install -e '.[dev]')")
    if reasons:
        msg = "headless Chromium test: " + "; ".join(reasons)
        if os.environ.get("MEDSEG_REQUIRE_CHROMIUM", "") not in ("", "0"):
            pytest.fail(msg + "; MEDSEG_REQUIRE_CHROMIUM is set, so this is an error")
        pytest.skip(msg)
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    opts.binary_location = CHROMIUM
    for flag in FLAGS:
        opts.add_argument(flag)
    return webdriver, Service, opts


def test_report_in_headless_chromium(report: Path, tmp_path: Path) -> None:
    webdriver, service, opts = _chromium()
    opts.add_argument(f"--user-data-dir={tmp_path / 'profile'}")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=service(CHROMEDRIVER), options=opts)
    try:
        driver.get((report / "report.html").as_uri())
        assert driver.title == "medseg volumetry report"
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.complete, i.naturalWidth, "
            "i.naturalHeight, i.src.slice(0, 22)]);"
        )
        # 2 cases × 2 structures, the volume distribution, 2 change plots, the agreement plots.
        assert len(images) == 8
        for complete, width, height, src in images:
            assert complete and width > 0 and height > 0
            assert src == "data:image/png;base64,"
        external = driver.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name)"
            ".filter(n => !n.startsWith('data:'));"
        )
        assert external == []
        convention = driver.find_element("id", "convention").text
        assert "patient's right is on the left of the image" in convention
        rows = driver.execute_script(
            """return Array.from(document.querySelectorAll('tr')).map(tr => {
                 const sec = tr.closest('section[data-case]');
                 const table = tr.closest('table');
                 return [table ? table.className : '', sec ? sec.dataset.case : '',
                   Array.from(tr.querySelectorAll('td[data-col]')).map(td => ({
                     col: td.dataset.col, value: td.dataset.value,
                     fmt: td.dataset.format, text: td.innerText}))];
               });"""
        )
        n = _check_rows(report, [(t, c, cells) for t, c, cells in rows])
        assert n >= 40
        logs = driver.get_log("browser")
        assert [e for e in logs if e.get("level") in ("SEVERE", "WARNING")] == []
    finally:
        driver.quit()


# --- pictures: orientation and aspect ratio ------------------------------------------------


@pytest.mark.parametrize(
    "direction",
    [
        np.eye(3),  # RAS
        np.diag([-1.0, -1.0, 1.0]),  # LPS (DICOM axial)
        np.array([[0, 0, -1.0], [1.0, 0, 0], [0, -1.0, 0]]),  # a sagittal-like acquisition
        np.array([[0.96, -0.28, 0], [0.28, 0.96, 0], [0, 0, -1.0]]),  # oblique, feet first
    ],
)
def test_views_follow_radiological_convention(direction: np.ndarray) -> None:
    """World coordinates pushed through the display: screen columns run to the patient's
    left (axial, coronal) or posterior (sagittal), rows to posterior (axial) or inferior."""
    shape = (9, 8, 7)
    aff = affine_from_geometry((1.0, 1.2, 2.0), (3.0, -4.0, 5.0), direction)
    ijk = np.indices(shape).reshape(3, -1).T
    world = (ijk @ aff[:3, :3].T + aff[:3, 3]).T.reshape(3, *shape)
    code = LabelMap(np.zeros(shape, np.uint8), aff).orientation
    specs = {s.name: s for s in view_specs(code)}
    x, y, z = world
    expect = {  # (world coordinate, sign along columns), (world coordinate, sign along rows)
        "axial": ((x, -1), (y, -1)),
        "coronal": ((x, -1), (z, -1)),
        "sagittal": ((y, -1), (z, -1)),
    }
    for name, ((c_world, c_sign), (r_world, r_sign)) in expect.items():
        spec = specs[name]
        cols = plane(c_world, spec, 0)
        rows = plane(r_world, spec, 0)
        assert np.all(c_sign * np.diff(cols, axis=1) > 0), (code, name, "columns")
        assert np.all(r_sign * np.diff(rows, axis=0) > 0), (code, name, "rows")
    assert [s.edges for s in view_specs(code)] == [
        ("R", "L", "A", "P"),
        ("R", "L", "S", "I"),
        ("A", "P", "S", "I"),
    ]


def _decode(uri: str) -> np.ndarray:
    import base64

    from matplotlib import image

    return image.imread(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])), format="png")


def test_picture_aspect_ratio_from_spacing() -> None:
    """A 20 mm × 20 mm square on a 0.5 × 2 mm grid (40 × 10 voxels) is drawn square in the
    axial picture (its red outline's extent), not 4:1 as its voxel counts would give."""
    shape = (120, 40, 9)
    lab = np.zeros(shape, np.uint8)
    lab[40:80, 15:25, 3:6] = 1
    aff = affine_from_geometry((0.5, 2.0, 1.0), (0.0, 0.0, 0.0))
    lm = LabelMap(lab, aff)
    img = Volume(np.zeros(shape, np.int16), aff, meta=VolumeMeta(units="HU"))
    (rec,) = label_statistics(lm, img)
    uri, caption = label_figure(lm, img, rec, (-160.0, 240.0))
    rgb = _decode(uri)
    axial = rgb[:, : rgb.shape[1] // 3, :3]
    red = (axial[..., 0] > 0.8) & (axial[..., 1] < 0.45) & (axial[..., 2] < 0.45)
    rr, cc = np.nonzero(red)
    assert rr.size > 50
    width, height = np.ptp(cc) + 1, np.ptp(rr) + 1
    assert width / height == pytest.approx(1.0, rel=0.15)
    assert "axial k=4" in caption  # through the centroid (k = 4)


def test_failure_listed_in_report(report: Path) -> None:
    fails = _csv(report / "failures.csv")
    assert [(f["case"], f["role"]) for f in fails] == [("bad_case", "grid")]


def test_single_slice_volume_pictures() -> None:
    """A one-slice image (2-D data stored as 3-D) still gets its three pictures."""
    lab = np.zeros((20, 16, 1), np.uint8)
    lab[5:12, 4:9, 0] = 1
    lab[15, 15, 0] = 2
    lm = LabelMap(lab, affine_from_geometry((0.7, 0.7, 5.0), (0.0, 0.0, 0.0)))
    for rec in label_statistics(lm):
        uri, caption = label_figure(lm, None, rec, (0.0, 1.0))
        assert _decode(uri).shape[0] > 50 and "sagittal" in caption
