"""medseg: 3-D medical image segmentation.

The public API (everything else is an implementation detail that may change)::

    import medseg
    ct = medseg.read_volume("study/")                       # DICOM folder, NIfTI, NRRD, MHA
    medseg.describe("study/")                                # its series, geometry, skipped files
    medseg.convert("study/", "ct.nii.gz", series=0)          # one series to NIfTI
    ds = medseg.load_dataset("/data/Task02_Heart")
    problems = medseg.check_dataset(ds)
    plan = medseg.plan_dataset(ds, gpu_memory_gb=24)
    medseg.save_plan(plan, "runs/heart/plan.yaml")
    result = medseg.train("runs/heart/plan.yaml", "runs/heart/model", fold="cv")
    seg = medseg.predict("runs/heart/model", [ct])           # LabelMap on the scan's grid
    model = medseg.load_model("runs/heart/model")            # or an nnU-Net / ONNX folder
    report = medseg.predict_folder(model, "scans/", "segs/")  # a batch, with a run manifest
    records = medseg.evaluate_pair(seg, medseg.read_label_map("ref.nii.gz"))
    stats = medseg.label_statistics(seg, ct)                  # volumes (mL), diameters
    otsu = medseg.segment(ct, "otsu")                         # a classical baseline

Names are imported lazily, so ``import medseg`` stays fast and does not import torch. The
imports under ``TYPE_CHECKING`` below are the one list of public names: type checkers read
them, and the lazy loader reads the same statements.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medseg._version import __version__ as __version__

if TYPE_CHECKING:  # THE list of public names (see the module docstring)
    from medseg.classical import segment as segment
    from medseg.datasets import Case as Case
    from medseg.datasets import Dataset as Dataset
    from medseg.datasets import check_dataset as check_dataset
    from medseg.datasets import load_dataset as load_dataset
    from medseg.datasets import make_splits as make_splits
    from medseg.datasets import read_case as read_case
    from medseg.errors import ConfigError as ConfigError
    from medseg.errors import GeometryMismatchError as GeometryMismatchError
    from medseg.errors import InputError as InputError
    from medseg.errors import MedsegError as MedsegError
    from medseg.errors import OutputExistsError as OutputExistsError
    from medseg.evaluation import evaluate_folders as evaluate_folders
    from medseg.export import export_onnx as export_onnx
    from medseg.inference import Predictor as Predictor
    from medseg.inference import predict as predict
    from medseg.inference.batch import PredictOptions as PredictOptions
    from medseg.inference.batch import predict_folder as predict_folder
    from medseg.inference.load import load_model as load_model
    from medseg.io import read_label_map as read_label_map
    from medseg.io import read_volume as read_volume
    from medseg.io import write_volume as write_volume
    from medseg.io.convert import convert as convert
    from medseg.io.describe import describe as describe
    from medseg.metrics import evaluate_pair as evaluate_pair
    from medseg.model_folder import ModelFolder as ModelFolder
    from medseg.model_folder import open_model_folder as open_model_folder
    from medseg.plan.files import load_plan as load_plan
    from medseg.plan.files import save_plan as save_plan
    from medseg.plan.schema import Plan as Plan
    from medseg.planning.rules import explain_plan as explain_plan
    from medseg.planning.rules import plan_dataset as plan_dataset
    from medseg.training import train as train
    from medseg.training.config import TrainConfig as TrainConfig
    from medseg.training.config import load_train_config as load_train_config
    from medseg.volume import LabelMap as LabelMap
    from medseg.volume import Volume as Volume
    from medseg.volumetry import label_statistics as label_statistics
    from medseg.volumetry import longitudinal_change as longitudinal_change
    from medseg.volumetry import measure_folder as measure_folder


def _public_names() -> dict[str, str]:
    """Public name -> defining module, read from the ``TYPE_CHECKING`` imports above."""
    tree = ast.parse(Path(__file__).read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            return {
                a.asname or a.name: str(imp.module)
                for imp in node.body
                if isinstance(imp, ast.ImportFrom)
                for a in imp.names
            }
    raise ImportError("medseg/__init__.py: the TYPE_CHECKING list of public names is missing")


#: public name -> module that defines it
_EXPORTS: dict[str, str] = _public_names()


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'medseg' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*_EXPORTS, "__version__"])


__all__ = sorted([*_EXPORTS, "__version__"])
