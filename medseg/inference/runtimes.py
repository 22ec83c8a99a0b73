"""Runtimes for the network of a prediction: PyTorch (eager), ONNX Runtime or OpenVINO.

* :func:`resolve_runtime` — ``"auto"`` → the fastest runtime installed for the device
  (:data:`AUTO_ORDER`, from the measurement in BENCHMARKS.md), logged; an explicitly requested
  runtime whose package is missing is one :class:`~medseg.errors.ConfigError` naming the
  package and the extra to install.
* :func:`onnx_graph` — a torch network → an ONNX graph (bytes; opset :data:`OPSET`, dynamic
  batch axis, the patch size fixed on the spatial axes), done once per run.
* :class:`RuntimeNetwork` — an ONNX graph in ONNX Runtime or OpenVINO behind the interface of
  a torch module (``(B, C, X, Y, Z)`` float32 tensor in, ``(B, K, X, Y, Z)`` logits out), so the
  sliding-window code, test-time mirroring and restoration are the same for every runtime.

The runtime packages are optional (``pip install 'medseg[onnx]'``) and imported only when a
runtime needs them. Runtimes run on the CPU: on a CUDA device ``auto`` chooses torch.
"""

from __future__ import annotations

import importlib
import importlib.util
import io
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from numpy.typing import NDArray

from medseg.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from medseg.checkpoint import Checkpoint, CheckpointMeta

log = logging.getLogger("medseg.inference")

RUNTIMES: tuple[str, ...] = ("torch", "onnxruntime", "openvino")
#: Runtimes that run an ONNX graph, and the Python package each needs.
ONNX_RUNTIMES: dict[str, str] = {"onnxruntime": "onnxruntime", "openvino": "openvino"}
#: ``auto``: the first installed runtime of the device's list, fastest first, as measured end
#: to end on the 12 LA cases (BENCHMARKS.md, "Fast runtimes"); on CUDA only torch runs on the GPU.
AUTO_ORDER: dict[str, tuple[str, ...]] = {
    "cpu": ("openvino", "onnxruntime", "torch"),
    "cuda": ("torch",),
}
#: How to install the optional runtimes.
INSTALL_HINT = "pip install 'medseg[onnx]'"
#: ONNX operator set of the graphs medseg writes.
OPSET = 17
INPUT_NAME = "image"
OUTPUT_NAME = "logits"


def runtime_installed(runtime: str) -> bool:
    """Whether ``runtime``'s package can be imported (torch always can)."""
    if runtime == "torch":
        return True
    return importlib.util.find_spec(ONNX_RUNTIMES[runtime]) is not None


def require_package(name: str, runtime: str) -> ModuleType:
    """Import ``name`` for ``runtime``; when it is not installed: one :class:`ConfigError`
    naming the package and how to install it."""
    try:
        return importlib.import_module(name)
    except ImportError:
        raise ConfigError(
            f"runtime: {runtime} needs the Python package '{name}', which is not installed; "
            f"install it with {INSTALL_HINT}"
        ) from None


def resolve_runtime(runtime: str, device: str = "cpu", *, onnx_only: bool = False) -> str:
    """The runtime to use for ``runtime`` (``auto``, ``torch``, ``onnxruntime`` or ``openvino``)
    on ``device`` (``cpu``, ``cuda``, ``cuda:N``).

    ``auto`` takes the first installed runtime of :data:`AUTO_ORDER` (without torch when
    ``onnx_only``: a model folder holding only ONNX graphs) and logs the choice. An explicit
    runtime must be installed and able to run there: otherwise :class:`ConfigError` (the
    message names the package to install, or why the runtime cannot be used)."""
    kind = "cuda" if device.startswith("cuda") else "cpu"
    if runtime == "auto":
        order = [r for r in AUTO_ORDER[kind] if not (onnx_only and r == "torch")]
        if onnx_only and not order:
            order = list(ONNX_RUNTIMES)
        for r in order:
            if runtime_installed(r):
                skipped = order[: order.index(r)]
                why = f" ({', '.join(skipped)} not installed)" if skipped else ""
                log.info("runtime auto: %s on %s%s", r, kind, why)
                return r
        raise ConfigError(
            f"runtime: auto found none of {', '.join(order)} installed for an ONNX model; "
            f"install them with {INSTALL_HINT}"
        )
    if runtime not in RUNTIMES:
        raise ConfigError(f"runtime: expected auto, {', '.join(RUNTIMES)}, found {runtime!r}")
    if runtime == "torch" and onnx_only:
        raise ConfigError(
            "runtime: torch cannot run an ONNX model folder; use onnxruntime or openvino (or auto)"
        )
    if runtime != "torch" and kind == "cuda":
        raise ConfigError(
            f"runtime: {runtime} runs on the CPU in medseg; use device cpu, or runtime torch "
            "on cuda"
        )
    if runtime != "torch":
        require_package(ONNX_RUNTIMES[runtime], runtime)
    return runtime


class _MainHead(torch.nn.Module):
    """The network's full-resolution logits only (no deep-supervision heads)."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from medseg.inference.sliding import main_logits

        return main_logits(self.net, x)


def onnx_graph(
    model: torch.nn.Module, in_channels: int, patch_size: Sequence[int], *, opset: int = OPSET
) -> bytes:
    """The ONNX graph (serialised ``ModelProto``) of a torch network in evaluation mode: input
    ``image`` ``(B, C, X, Y, Z)`` float32 with a dynamic batch axis ``B`` and the spatial axes
    fixed to ``patch_size`` (voxels); output ``logits`` ``(B, K, X, Y, Z)`` (the
    full-resolution head only).

    Uses torch's TorchScript-based exporter: on these networks it exports in seconds, where
    the ``torch.export``-based one took 7x longer (measured on a 3-stage DynUNet), and both
    graphs agree with the torch network to 1e-5. Its deprecation warnings are silenced here."""
    if opset < 17:
        raise ConfigError(f"opset: expected >= 17, found {opset}")
    head = _MainHead(model).to("cpu").eval()
    x = torch.zeros((1, int(in_channels), *(int(p) for p in patch_size)), dtype=torch.float32)
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore", DeprecationWarning)  # the exporter's own deprecations
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)  # type: ignore[attr-defined]
        # instance norm keeps its per-image statistics in the graph, as in evaluation mode
        warnings.filterwarnings("ignore", "ONNX export mode is set to TrainingMode.EVAL")
        torch.onnx.export(
            head,
            (x,),
            buf,  # type: ignore[arg-type]  # the TorchScript exporter writes to a file object
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=int(opset),
            dynamo=False,
        )
    return buf.getvalue()


class _OrtSession:
    def __init__(self, graph: bytes, threads: int) -> None:
        ort = require_package("onnxruntime", "onnxruntime")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(graph, opts, providers=["CPUExecutionProvider"])

    def __call__(self, x: NDArray[Any]) -> NDArray[Any]:
        return np.asarray(self.session.run([OUTPUT_NAME], {INPUT_NAME: x})[0])


class _OpenVino:
    def __init__(self, graph: bytes, threads: int) -> None:
        ov = require_package("openvino", "openvino")
        core = ov.Core()
        model = core.read_model(graph)
        config = {
            "INFERENCE_NUM_THREADS": threads,
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": "f32",
        }
        self.compiled = core.compile_model(model, "CPU", config)
        self.request = self.compiled.create_infer_request()

    def __call__(self, x: NDArray[Any]) -> NDArray[Any]:
        self.request.infer({0: x})
        return np.array(self.request.get_output_tensor(0).data, copy=True)


class RuntimeNetwork(torch.nn.Module):
    """An ONNX graph run by ``runtime`` (``onnxruntime`` or ``openvino``, on the CPU with
    ``threads`` threads, default torch's intra-op count) behind a torch module's interface: a
    float32 tensor ``(B, C, X, Y, Z)`` in (``X, Y, Z`` = the graph's patch size), the logits
    ``(B, K, X, Y, Z)`` out, on the input's device."""

    def __init__(self, graph: bytes, runtime: str, *, threads: int | None = None) -> None:
        super().__init__()
        if runtime not in ONNX_RUNTIMES:
            raise ConfigError(
                f"runtime: expected one of {', '.join(ONNX_RUNTIMES)}, found {runtime!r}"
            )
        self.runtime = runtime
        n = threads or max(1, int(torch.get_num_threads()))
        self.run_graph = _OrtSession(graph, n) if runtime == "onnxruntime" else _OpenVino(graph, n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        arr = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        return torch.from_numpy(self.run_graph(arr)).to(x.device)


@dataclass(frozen=True)
class OnnxGraph:
    """One network of an exported model folder: the ONNX graph (serialised bytes) read from
    ``path`` and the metadata of the checkpoint it was exported from (its plan: preprocessing,
    labels, channels, patch size). Stands where a :class:`~medseg.checkpoint.Checkpoint` does
    in a :class:`~medseg.inference.predictor.Predictor`."""

    path: Path
    meta: CheckpointMeta
    graph: bytes = field(repr=False)


def build_networks(
    checkpoints: Sequence[Checkpoint | OnnxGraph], device: str, runtime: str
) -> tuple[str, list[torch.nn.Module]]:
    """``(runtime chosen, networks)`` for a predictor: torch checkpoints are built on
    ``device`` and, for an ONNX runtime, converted once (:func:`onnx_graph`) and loaded into
    it; ONNX graphs are loaded into the runtime (``auto`` chooses among the ONNX runtimes when
    any network is an ONNX graph; they run on the CPU)."""
    has_graph = any(isinstance(c, OnnxGraph) for c in checkpoints)
    if has_graph and runtime == "auto" and device.startswith("cuda"):
        log.info("the ONNX graphs run on the CPU (the %s device is used for the rest)", device)
        device_kind = "cpu"
    else:
        device_kind = device
    chosen = resolve_runtime(runtime, device_kind, onnx_only=has_graph)
    nets: list[torch.nn.Module] = []
    for c in checkpoints:
        if isinstance(c, OnnxGraph):
            nets.append(RuntimeNetwork(c.graph, chosen))
            continue
        model = c.build_model(device)
        if chosen != "torch":
            plan = c.meta.plan
            model = RuntimeNetwork(
                onnx_graph(model, len(plan.channel_names), plan.patch_size), chosen
            )
        nets.append(model)
    return chosen, nets


__all__ = [
    "AUTO_ORDER",
    "INSTALL_HINT",
    "ONNX_RUNTIMES",
    "OPSET",
    "RUNTIMES",
    "OnnxGraph",
    "RuntimeNetwork",
    "build_networks",
    "onnx_graph",
    "require_package",
    "resolve_runtime",
    "runtime_installed",
]
