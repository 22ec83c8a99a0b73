"""The notebooks in ``notebooks/`` run top to bottom without error (in-process, headless, on
the CPU and the shipped sample data); their cells assert what they show. The repository holds
them with outputs stripped, and none may go missing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.paths import REPO

FOLDER = REPO / "notebooks"
EXPECTED = [
    "01_reading_and_geometry.ipynb",
    "02_train_and_predict.ipynb",
    "03_evaluate_and_volumetry.ipynb",
]


def test_every_notebook_is_there_and_stripped() -> None:
    assert sorted(p.name for p in FOLDER.glob("*.ipynb")) == EXPECTED
    for name in EXPECTED:
        nb = json.loads((FOLDER / name).read_text(encoding="utf-8"))
        for cell in nb["cells"]:
            if cell["cell_type"] == "code":
                assert cell["outputs"] == [] and cell["execution_count"] is None, name


@pytest.mark.parametrize("name", EXPECTED)
def test_notebook_runs(name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the notebooks' work folders
    nb = json.loads((FOLDER / name).read_text(encoding="utf-8"))
    cells = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert cells, f"{name} has no code cells"
    assert sum("assert " in "".join(c["source"]) for c in cells) >= 3, "a notebook checks itself"
    namespace: dict[str, object] = {"__name__": "__notebook__"}
    for i, cell in enumerate(cells):
        exec(compile("".join(cell["source"]), f"{name}[code cell {i}]", "exec"), namespace)
