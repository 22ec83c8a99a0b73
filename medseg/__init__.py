"""medseg: 3-D medical image segmentation.

The public API (everything else is an implementation detail that may change)::

    import medseg
    ct = medseg.read_volume("study/")                       # DICOM folder, NIfTI, NRRD, MHA
    ds = medseg.load_dataset("/data/Task02_Heart")
    problems = medseg.check_dataset(ds)
    plan = medseg.plan_dataset(ds, gpu_memory_gb=24)
    medseg.save_plan(plan, "runs/heart/plan.yaml")
    result = medseg.train("runs/heart/plan.yaml", "runs/heart/model", fold="cv")
    seg = medseg.predict("runs/heart/model", [ct])           # LabelMap on the scan's grid
    from medseg.inference.load import load_model
    report = medseg.predict_folder(load_model("runs/heart/model"), "scans/", "segs/")  # a batch
    records = medseg.evaluate_pair(seg, medseg.read_label_map("ref.nii.gz"))

Names are imported lazily, so ``import medseg`` stays fast and does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: public name -> module that defines it
_EXPORTS: dict[str, str] = {
    # volumes and files
    "Volume": "medseg.volume",
    "LabelMap": "medseg.volume",
    "read_volume": "medseg.io",
    "read_label_map": "medseg.io",
    "write_volume": "medseg.io",
    # datasets
    "Dataset": "medseg.datasets",
    "Case": "medseg.datasets",
    "load_dataset": "medseg.datasets",
    "check_dataset": "medseg.datasets",
    "read_case": "medseg.datasets",
    "make_splits": "medseg.datasets",
    # planning
    "Plan": "medseg.plan.schema",
    "plan_dataset": "medseg.plan.rules",
    "explain_plan": "medseg.plan.rules",
    "load_plan": "medseg.plan.files",
    "save_plan": "medseg.plan.files",
    # training
    "TrainConfig": "medseg.training.config",
    "load_train_config": "medseg.training.config",
    "train": "medseg.training",
    # prediction
    "Predictor": "medseg.inference",
    "predict": "medseg.inference",
    "predict_folder": "medseg.inference.batch",
    # evaluation
    "evaluate_pair": "medseg.metrics",
    "evaluate_folders": "medseg.evaluation",
    # errors
    "MedsegError": "medseg.errors",
    "InputError": "medseg.errors",
    "ConfigError": "medseg.errors",
    "GeometryMismatchError": "medseg.errors",
    "OutputExistsError": "medseg.errors",
}

if TYPE_CHECKING:  # the real names, for type checkers
    from medseg.datasets import Case, Dataset, check_dataset, load_dataset, make_splits, read_case
    from medseg.errors import (
        ConfigError,
        GeometryMismatchError,
        InputError,
        MedsegError,
        OutputExistsError,
    )
    from medseg.evaluation import evaluate_folders
    from medseg.inference import Predictor, predict
    from medseg.inference.batch import predict_folder
    from medseg.io import read_label_map, read_volume, write_volume
    from medseg.metrics import evaluate_pair
    from medseg.plan.files import load_plan, save_plan
    from medseg.plan.rules import explain_plan, plan_dataset
    from medseg.plan.schema import Plan
    from medseg.training import train
    from medseg.training.config import TrainConfig, load_train_config
    from medseg.volume import LabelMap, Volume


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'medseg' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*_EXPORTS, "__version__"])


__all__ = [
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
