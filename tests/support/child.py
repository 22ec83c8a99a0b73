"""ONNX Runtime and OpenVINO run in child processes only, never in the pytest process.

Full test runs that loaded the native libraries of ``onnxruntime`` and ``openvino`` (their own
OpenMP/TBB thread pools) into the pytest process beside torch's died later with SIGSEGV at
varying tests. So every test step that runs a network with one of them starts a child Python:

* :func:`run_medseg` — ``python -m medseg ARGS`` (the CLI, e.g. ``predict --runtime openvino``);
* :func:`run_graph` — an ONNX graph in :class:`~medseg.inference.runtimes.RuntimeNetwork` on
  given inputs (this module's ``graph`` command);
* :func:`predict_in_child` — cases predicted by a model loaded with a runtime (this module's
  ``predict`` command), the labels and probabilities read back for the test to compare.

:func:`run_child` asserts the child's exit status, naming what ran (the runtime) and showing
the end of its stderr, so a crash in a child is one clear test failure. The children run with
warnings as errors, as the pytest process does. :func:`assert_runtimes_not_imported` checks
that neither runtime is imported (or its libraries mapped) in the calling process.

The child side is :func:`main`, run as ``python -m support.child {graph,predict} JOB.json``;
it imports medseg lazily so the parent side stays cheap to import.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

REPO = Path(__file__).resolve().parents[2]
TESTS = REPO / "tests"
#: the optional runtimes' top-level packages, which the pytest process must never import
RUNTIME_PACKAGES: tuple[str, ...] = ("onnxruntime", "openvino")
#: seconds a child may run before the test fails
TIMEOUT = 300.0


def _measured_auto_order() -> dict[str, tuple[str, ...]]:
    from medseg.inference.runtimes import AUTO_ORDER

    return dict(AUTO_ORDER)


#: ``runtime="auto"`` (the default of ``medseg predict`` and ``load_model``) as the product
#: resolves it, read when the tests start; in the pytest process the conftest fixture
#: ``_auto_is_torch_here`` narrows it to torch, children get this one.
MEASURED_AUTO_ORDER = _measured_auto_order()


def child_env() -> dict[str, str]:
    """This process's environment with this checkout (and ``tests/``, for ``support``) first on
    ``PYTHONPATH``, so the child imports the same medseg as the tests."""
    env = dict(os.environ)
    parts = [str(REPO), str(TESTS), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(parts))
    return env


def _status(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


def run_child(
    args: Sequence[str], *, what: str, expect: int = 0, timeout: float = TIMEOUT
) -> subprocess.CompletedProcess[str]:
    """Run ``python -W error ARGS`` (output captured as text) and assert its exit status is
    ``expect``; the failure names ``what`` (e.g. ``"medseg predict --runtime openvino"``), the
    status (a signal by name) and the end of the child's stderr."""
    cmd = [sys.executable, "-W", "error", *map(str, args)]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env=child_env(), timeout=timeout, check=False
    )
    assert proc.returncode == expect, (
        f"{what} (child process) ended with {_status(proc.returncode)}, expected "
        f"{_status(expect)}\ncommand: {' '.join(cmd)}\nstderr (end):\n{proc.stderr[-3000:]}"
    )
    return proc


def run_medseg(
    args: Sequence[str], *, what: str, expect: int = 0, timeout: float = TIMEOUT
) -> subprocess.CompletedProcess[str]:
    """``python -m medseg ARGS`` in a child process (see :func:`run_child`)."""
    return run_child(["-m", "medseg", *args], what=what, expect=expect, timeout=timeout)


def _run_job(command: str, job: Mapping[str, Any], workdir: Path, what: str) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    spec = workdir / f"{command}_job.json"
    spec.write_text(json.dumps(job), encoding="utf-8")
    proc = run_child(["-m", "support.child", command, str(spec)], what=what)
    assert proc.stderr == "", f"{what} (child process) wrote to stderr:\n{proc.stderr[-3000:]}"


def run_graph(
    graph: bytes, runtime: str, inputs: Sequence[NDArray[Any]], workdir: Path
) -> list[NDArray[Any]]:
    """The outputs of the ONNX ``graph`` run by ``runtime`` (``RuntimeNetwork(graph,
    runtime)``) on each float32 array of ``inputs``, computed in a child process."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "graph.onnx").write_bytes(graph)
    np.savez(workdir / "inputs.npz", *[np.asarray(x, np.float32) for x in inputs])
    job = {"runtime": runtime, "graph": "graph.onnx", "inputs": "inputs.npz", "out": "out.npz"}
    _run_job("graph", job, workdir, f"RuntimeNetwork on {runtime}")
    with np.load(workdir / "out.npz") as out:
        return [out[f"arr_{i}"] for i in range(len(inputs))]


@dataclass(frozen=True)
class ChildPrediction:
    """What a predictor loaded in a child process gave for each case (by name): ``labels``
    (the label map's array), ``affines`` (its affine) and ``probabilities`` (``(K, I, J, K)``
    float16 on the original grid); ``runtime`` (the predictor's), ``identity`` and
    ``label_names`` as the predictor reported them."""

    runtime: str
    identity: dict[str, Any]
    label_names: dict[int, str]
    labels: dict[str, NDArray[Any]]
    affines: dict[str, NDArray[Any]]
    probabilities: dict[str, NDArray[Any]]


def predict_in_child(
    runtime: str,
    models: Sequence[tuple[str, Path]],
    images: Mapping[str, Path],
    workdir: Path,
    *,
    tta: bool = False,
) -> list[ChildPrediction]:
    """Predict each image (``{case name: image file}``) with each of ``models`` loaded with
    ``runtime`` in one child process, with probabilities. A model is ``("paths", folder)``
    (``Predictor.from_paths([folder], runtime=...)``) or ``("onnx", exported folder)``
    (``load_onnx_model(folder, runtime=...)``). One :class:`ChildPrediction` per model."""
    for loader, _ in models:
        assert loader in ("paths", "onnx"), f"loader: expected paths or onnx, found {loader!r}"
    job = {
        "runtime": runtime,
        "tta": tta,
        "models": [[loader, str(path)] for loader, path in models],
        "images": {name: str(path) for name, path in images.items()},
        "out": str(workdir / "out"),
    }
    _run_job("predict", job, workdir, f"prediction with runtime {runtime}")
    results = []
    for i in range(len(models)):
        folder = workdir / "out" / str(i)
        info = json.loads((folder / "info.json").read_text(encoding="utf-8"))
        labels: dict[str, NDArray[Any]] = {}
        affines: dict[str, NDArray[Any]] = {}
        probs: dict[str, NDArray[Any]] = {}
        for name in images:
            with np.load(folder / f"{name}.npz") as arrays:
                labels[name] = arrays["labels"]
                affines[name] = arrays["affine"]
                probs[name] = arrays["probabilities"]
        names = {int(k): str(v) for k, v in info["label_names"].items()}
        results.append(
            ChildPrediction(info["runtime"], info["identity"], names, labels, affines, probs)
        )
    return results


def assert_runtimes_not_imported() -> None:
    """Neither runtime package is in ``sys.modules`` of this process and (on Linux) none of
    their native libraries is mapped into it."""
    leaked = sorted(m for m in sys.modules if m.split(".")[0] in RUNTIME_PACKAGES)
    assert not leaked, f"imported into the test process: {', '.join(leaked[:10])}"
    maps = Path("/proc/self/maps")
    if maps.is_file():
        libs = {
            line.split()[-1]
            for line in maps.read_text().splitlines()
            if any(f"/{p}" in line for p in RUNTIME_PACKAGES)
        }
        assert not libs, f"runtime libraries mapped into the test process: {sorted(libs)[:5]}"


# ---- child side ------------------------------------------------------------------------------


def _graph(job: Mapping[str, Any], base: Path) -> None:
    import torch

    from medseg.inference.runtimes import RuntimeNetwork

    net = RuntimeNetwork((base / job["graph"]).read_bytes(), job["runtime"])
    assert net.runtime == job["runtime"]
    outputs = []
    with np.load(base / job["inputs"]) as inputs:
        for i in range(len(inputs.files)):
            got = net(torch.from_numpy(inputs[f"arr_{i}"]))
            assert got.dtype == torch.float32, got.dtype
            outputs.append(got.numpy())
    np.savez(base / job["out"], *outputs)


def _predict(job: Mapping[str, Any]) -> None:
    from medseg.export import load_onnx_model
    from medseg.inference.predictor import Predictor
    from medseg.io import read_volume

    images = {name: read_volume(path) for name, path in job["images"].items()}
    for i, (loader, path) in enumerate(job["models"]):
        if loader == "onnx":
            pred: Any = load_onnx_model(path, runtime=job["runtime"], tta=job["tta"])
        else:
            pred = Predictor.from_paths([path], runtime=job["runtime"], tta=job["tta"])
        out = Path(job["out"]) / str(i)
        out.mkdir(parents=True)
        for name, image in images.items():
            seg, probs = pred.predict_case([image], with_probabilities=True)
            assert probs is not None
            np.savez(out / f"{name}.npz", labels=seg.array, affine=seg.affine, probabilities=probs)
        info = {
            "runtime": pred.runtime,
            "identity": pred.identity,
            "label_names": {str(k): v for k, v in pred.label_names.items()},
        }
        (out / "info.json").write_text(json.dumps(info, default=str), encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m support.child {graph,predict} JOB.json``: run the job written by
    :func:`run_graph` or :func:`predict_in_child` (paths in a graph job are relative to the
    job file's folder)."""
    command, spec = list(sys.argv[1:] if argv is None else argv)
    job = json.loads(Path(spec).read_text(encoding="utf-8"))
    if command == "graph":
        _graph(job, Path(spec).parent)
    elif command == "predict":
        _predict(job)
    else:
        raise SystemExit(f"support.child: expected graph or predict, found {command!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
