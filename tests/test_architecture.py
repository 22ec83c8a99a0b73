"""The shape of the house: imports point downward (the layer table below is the docs'
architecture table), modules stay small, the public API is the documented list, user-facing
errors live in medseg/errors.py, and ``import medseg`` does not import torch."""

from __future__ import annotations

import ast
import re
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
    "medseg._version": 0,
    "medseg.errors": 0,
    "medseg.io.files": 1,
    "medseg.io.atomic": 1,
    "medseg.runtime": 1,
    "medseg.config": 2,
    "medseg.volume": 2,
    "medseg.components": 2,
    "medseg.io": 3,
    "medseg.metrics": 3,
    "medseg.postprocess": 3,
    "medseg.plan": 3,  # the plan records and their files
    "medseg.transforms": 4,
    "medseg.classical": 4,
    "medseg.datasets": 4,
    "medseg.evaluation": 4,
    "medseg.cache": 5,
    "medseg.model_folder": 5,
    "medseg.models": 5,
    "medseg.volumetry": 5,
    "medseg.planning": 6,  # the planner: fingerprint and rules
    "medseg.loader": 6,
    "medseg.checkpoint": 6,
    "medseg.nnunet": 6,
    "medseg.inference": 7,
    "medseg.training": 8,
    "medseg.export": 8,
    "medseg.demo": 9,
    "medseg.cli": 10,
    "medseg.__main__": 11,
}


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
    assert best, f"{module} is not in the layer table (tests/test_architecture.py, docs)"
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
                bad.add(f"{path.relative_to(REPO)}:{line}: {mod} imports the package facade")
                continue
            dst_key = _layer_key(target)
            if dst_key == src_key or LAYERS[dst_key] < LAYERS[src_key]:
                continue
            bad.add(
                f"{path.relative_to(REPO)}:{line}: {mod} (layer {LAYERS[src_key]}) imports "
                f"{target} (layer {LAYERS[dst_key]})"
            )
    assert not bad, "\n".join(sorted(bad))


def test_transforms_and_plan_records_do_not_depend_on_the_planner() -> None:
    plan_files = sorted((PACKAGE / "plan").glob("*.py"))
    assert {p.name for p in plan_files} == {"__init__.py", "schema.py", "files.py"}
    for path in [*(PACKAGE / "transforms").glob("*.py"), *plan_files]:
        for _, name in _imports(path):
            assert not name.startswith("medseg.planning"), path
            if path.parent.name == "plan":
                assert not name.startswith("medseg.transforms"), path


def test_modules_stay_small() -> None:
    """Every module reads in one sitting: none over 550 lines (the aim is under 500)."""
    big = {
        str(p.relative_to(REPO)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > 550
    }
    assert not big, big


def test_public_api_is_the_one_list() -> None:
    """The facade's ``TYPE_CHECKING`` imports are the one list of public names: every name
    resolves to the object of the module it names, and nothing else is public."""
    import importlib

    import medseg

    exports = medseg._EXPORTS
    assert sorted(medseg.__all__) == sorted([*exports, "__version__"])
    assert len(exports) >= 30  # never an empty list read from a moved block
    for name, module in exports.items():
        assert getattr(medseg, name) is getattr(importlib.import_module(module), name), name
    for user_facing in ("label_statistics", "measure_folder", "segment", "ModelFolder"):
        assert user_facing in medseg.__all__, user_facing
    from medseg._version import __version__

    assert medseg.__version__ == __version__
    with pytest.raises(AttributeError):
        _ = medseg.not_a_name  # type: ignore[attr-defined]


def test_the_version_is_single_sourced() -> None:
    text = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    assert 'dynamic = ["version"]' in text
    assert 'version = { attr = "medseg._version.__version__" }' in text
    assert not re.search(r'(?m)^version\s*=\s*"', text)  # no second copy of the number


def test_an_upward_import_is_caught(tmp_path: Path) -> None:
    """The layer check sees a module importing the package facade or a higher layer."""
    bad = tmp_path / "bad.py"
    bad.write_text("from medseg import read_volume\nfrom medseg.training import train\n")
    found = [name for _, name in _imports(bad)]
    assert "medseg" in found and "medseg.training" in found
    assert LAYERS[_layer_key("medseg.training")] > LAYERS[_layer_key("medseg.io")]


#: ``--flag`` as a command line spells an option
_FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def _strings(node: ast.AST) -> list[tuple[int, str]]:
    return [
        (n.lineno, n.value)
        for n in ast.walk(node)
        if isinstance(n, ast.Constant) and isinstance(n.value, str)
    ]


def flag_mentions(path: Path) -> list[tuple[int, str]]:
    """The strings of ``path`` that an error would show and that name a ``--flag``: the
    arguments of every ``raise``, of every ``...Error(...)`` call, and the default messages
    of the error classes (``errors.py``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and node.exc is not None:
            found += _strings(node.exc)
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            if name.endswith("Error"):
                found += _strings(node)
    if path.name == "errors.py":
        found += [(n, s) for n, s in _strings(tree) if "\n" not in s]  # messages, not docstrings
    return sorted({(n, s) for n, s in found if _FLAG.search(s)})


def test_library_errors_name_parameters_not_flags() -> None:
    """Outside ``medseg/cli`` an error message names the parameter (``device``), never a
    command-line option (``--device``): the CLI renders parameters as its options in one
    place (``medseg.cli.render_error``)."""
    bad = [
        f"{path.relative_to(REPO)}:{line}: {text!r}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.relative_to(PACKAGE).parts[0] != "cli"
        for line, text in flag_mentions(path)
    ]
    assert not bad, "\n".join(bad)


def test_the_flag_check_catches_a_flag(tmp_path: Path) -> None:
    p = tmp_path / "m.py"
    p.write_text(
        "def f(x):\n"
        "    if x:\n"
        "        raise ValueError(f'--device: bad {x}')\n"
        "    return OutputExistsError(x, hint='pass --resume')\n"
        "def g(x):\n"
        "    raise ValueError(f'device: bad {x}; data.n_folds 2--3')\n"
    )
    assert [line for line, _ in flag_mentions(p)] == [3, 4]


def test_the_cli_renders_parameters_as_its_options() -> None:
    from medseg.cli import build_parser, render_error
    from medseg.errors import ConfigError, OutputExistsError

    parser = build_parser()
    train = parser.parse_args(["train", "c.yaml", "--out", "m"])
    flags = train.param_flags
    assert flags["out_dir"] == "--out" and flags["epochs"] == "--epochs"
    err = ConfigError("fold: expected 0..4 or 'all', found [7]", param="fold")
    assert render_error(err, flags) == "--fold: expected 0..4 or 'all', found [7]"
    hint = OutputExistsError("m/fold_0/checkpoint_last.pt", hint="pass resume=True to go on")
    assert render_error(hint, flags).endswith("pass --resume to go on")
    assert "data.splits=x" in render_error(ConfigError("data.splits=x"), flags)


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
