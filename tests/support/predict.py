"""``run_predict``: load a model and run :func:`medseg.inference.batch.predict_folder` with the
keyword arguments of both (a shorthand for tests)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medseg.inference.batch import PredictOptions, predict_folder
from medseg.inference.load import load_model
from medseg.io.report import BatchReport

LOAD_KEYS = {"folds", "checkpoint", "device", "overlap", "tta", "batch_size"}
LOAD_KEYS |= {"model_postprocessing"}


def run_predict(model: Any, inputs: Path | str, output: Path | str, **kw: Any) -> BatchReport:
    """``predict_folder(load_model(model, ...), inputs, output, options=PredictOptions(...))``."""
    load = {k: kw.pop(k) for k in list(kw) if k in LOAD_KEYS}
    if "output_format" in kw and not isinstance(kw["output_format"], str):
        kw["output_format"] = tuple(kw["output_format"])
    return predict_folder(load_model(model, **load), inputs, output, options=PredictOptions(**kw))
