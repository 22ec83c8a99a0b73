"""The shape of the house: imports point downward (the layer table below is the README's
architecture table), modules stay small, the public API is the documented list, user-facing
errors live in medseg/errors.py, and ``import medseg`` does not import torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from support.paths import REPO

PACKAGE = REPO / "medseg"

#: module (or package prefix) -> layer: a module may import modules of lower layers and the
#: modules of its own entry (``medseg.io.dicom.series`` may import ``medseg.io.atomic``). The
#: package root (the lazy public facade) and the CLI's entry points are not checked.
LAYERS: dict[str, int] = {
    "medseg.errors": 0,
    "medseg.io.files": 1,
    "medseg.config": 2,
    "medseg.volume": 2,
    "medseg.components": 2,
    "medseg.io": 3,
    "medseg.metrics": 3,
    "medseg.postprocess": 3,
    "medseg.plan.schema": 3,
    "medseg.transforms": 4,
    "medseg.classical": 4,
    "medseg.plan.files": 4,
    "medseg.datasets": 4,
    "medseg.evaluation": 4,
    "medseg.cache": 5,
    "medseg.plan.fingerprint": 5,
    "medseg.models": 5,
    "medseg.volumetry": 5,
    "medseg.plan.rules": 6,
    "medseg.loader": 6,
    "medseg.checkpoint": 6,
    "medseg.inference": 7,
    "medseg.plan": 7,  # the package's lazy re-exports
    "medseg.training": 8,
    "medseg.export": 8,
    "medseg.demo": 9,
    "medseg.cli": 10,
    "medseg.__main__": 11,
}

PUBLIC_API = [
    "Case",
    "ConfigError",
    "Dataset",
    "GeometryMismatchError",
    "InputError",
    "LabelMap",
    "MedsegError",
    "OutputExistsError",
    "Plan",
    "Predictor",
    "TrainConfig",
    "Volume",
    "__version__",
    "check_dataset",
    "evaluate_folders",
    "evaluate_pair",
    "explain_plan",
    "load_dataset",
    "load_plan",
    "load_train_config",
    "make_splits",
    "plan_dataset",
    "predict",
    "predict_folder",
    "read_case",
    "read_label_map",
    "read_volume",
    "save_plan",
    "train",
    "write_volume",
]


def _modules() -> dict[str, Path]:
    out = {}
    for f in sorted(PACKAGE.rglob("*.py")):
        parts = list(f.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def _layer_key(module: str) -> str:
    best = ""
    for key in LAYERS:
        if (module == key or module.startswith(key + ".")) and len(key) > len(best):
            best = key
    assert best, f"{module} is not in the layer table (tests/test_architecture.py, README)"
    return best


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            found += [(node.lineno, n) for n in names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
    return [(line, n) for line, n in found if n == "medseg" or n.startswith("medseg.")]


def test_imports_point_downward() -> None:
    modules = _modules()
    bad: set[str] = set()
    for mod, path in modules.items():
        if mod == "medseg":
            continue  # the facade: lazy re-exports of the public API
        src_key = _layer_key(mod)
        for line, name in _imports(path):
            target = name
            while target not in modules and "." in target:  # medseg.io.read_volume -> medseg.io
                target = target.rsplit(".", 1)[0]
            if target == "medseg":
                continue  # `from medseg import __version__`
            dst_key = _layer_key(target)
            if dst_key == src_key or LAYERS[dst_key] < LAYERS[src_key]:
                continue
            bad.add(
                f"{path.relative_to(REPO)}:{line}: {mod} (layer {LAYERS[src_key]}) imports "
                f"{target} (layer {LAYERS[dst_key]})"
            )
    assert not bad, "\n".join(sorted(bad))


def test_transforms_and_plan_records_do_not_depend_on_the_planner() -> None:
    for path in [*(PACKAGE / "transforms").glob("*.py"), PACKAGE / "plan" / "schema.py"]:
        for _, name in _imports(path):
            assert not name.startswith(("medseg.plan.rules", "medseg.plan.fingerprint")), path
            if path.name == "schema.py":
                assert not name.startswith("medseg.transforms"), path


def test_modules_stay_small() -> None:
    """Every module reads in one sitting: none over 550 lines (the aim is under 500)."""
    big = {
        str(p.relative_to(REPO)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > 550
    }
    assert not big, big


def test_public_api_is_the_documented_list() -> None:
    import medseg

    assert sorted(medseg.__all__) == sorted(PUBLIC_API)
    for name in PUBLIC_API:
        assert getattr(medseg, name) is not None, name
    with pytest.raises(AttributeError):
        _ = medseg.not_a_name  # type: ignore[attr-defined]


def test_import_medseg_does_not_import_torch() -> None:
    code = "import sys, medseg; medseg.read_volume; medseg.Plan; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr


def test_user_facing_errors_are_defined_in_errors_py() -> None:
    """Every exception class medseg defines derives from MedsegError and lives in errors.py."""
    bad = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                bases = {
                    b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases
                }
                if any(b.endswith(("Error", "Exception")) for b in bases):
                    bad.append(f"{path.relative_to(REPO)}: class {node.name}")
    assert not bad, bad
