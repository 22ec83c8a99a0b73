"""The whole pipeline on the sample data shipped in the package: :func:`run_demo`, behind
``medseg demo``.

On CPU in a few minutes: check and plan the two shipped CT scans with spleen masks
(``sample_data/spleen_dataset.json``), train a small network briefly on both, predict the
NIfTI scan and the DICOM series (NIfTI and DICOM SEG outputs), evaluate the predictions
against the reference masks, and write the volumetry report. The network is minutes old and
is evaluated on the scans it was trained on: the demo shows what each step produces, not an
accuracy (a spleen model needs hundreds of scans and hours of GPU training).

The shipped DICOM series was anonymised with its Study, Series and SOP Instance UIDs (and the
SOP Class UID in the data set) emptied; a DICOM SEG must reference real UIDs, so the demo writes
a copy of the series with UIDs generated from the file names (``OUT/data/ct_dicom/``; pixels
and geometry unchanged) and predicts that copy.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medseg.errors import OutputExistsError
from medseg.postprocess import Postprocessing, PostprocessingStep

log = logging.getLogger("medseg.demo")

SAMPLE = Path(__file__).resolve().parent / "sample_data"
#: The demo recipe: a coarse 4 mm grid, a small network (no deep supervision), 140 steps of 2
#: patches of 48 x 48 x 16 voxels (19 x 19 x 6 cm) at a high learning rate, no augmentation: a few
#: minutes on 2 CPU cores, fitted to the two sample scans (Dice >= 0.85 on both, post-processed).
DEMO_RECIPE: dict[str, Any] = {
    "epochs": 14,
    "iterations_per_epoch": 10,
    "val_every": 1000,
    "seed": 0,
    "device": "cpu",
    "amp": "none",
    "progress_bar": False,
    "optimizer": {"name": "adamw", "lr": 2e-2, "weight_decay": 1e-5},
    "plan_overrides": {
        "target_spacing": [4.0, 4.0, 4.0],
        "patch_size": [48, 48, 16],
        "batch_size": 2,
        "foreground_ratio": 0.5,
        "network": {"base_filters": 8, "max_filters": 32, "deep_supervision": False},
    },
    "data": {"augment": False},
}

#: The demo model's post-processing (its ``postprocessing.json``, applied by prediction): the
#: spleen is one organ, so its largest connected component is kept and its holes filled, as
#: cross-validation chooses for such a structure (``medseg.training.crossval``).
DEMO_POSTPROCESSING = Postprocessing(
    steps=[
        PostprocessingStep(kind="keep_largest", label=1),
        PostprocessingStep(kind="fill_holes", label=1),
    ],
    decided_by="demo: the spleen is one connected organ",
)


@dataclass
class DemoResult:
    """Where the demo put everything, and what it measured."""

    out_dir: Path
    outputs: dict[str, Path] = field(default_factory=dict)
    dice: dict[str, float] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        o = self.outputs
        lines = [
            "",
            f"medseg demo: done in {sum(self.seconds.values()):.0f} s; everything is in "
            f"{self.out_dir}",
            "",
            f"  plan            {o['plan']}  (the choices and their reasons)",
            f"  model           {o['model']}  (minutes old, trained on the two sample scans: "
            "a demonstration, not a spleen model)",
            f"  NIfTI scan      {o['nifti_prediction']}",
            f"  DICOM series    {o['dicom_prediction']}  (NIfTI)",
            (
                f"                  {o['dicom_seg']}  (DICOM SEG, references {o['dicom_copy']})"
                if "dicom_seg" in o
                else "                  no DICOM SEG: nothing segmented"
            ),
            f"  evaluation      {o['evaluation']}/metrics.csv  (Dice, HD95 in mm; "
            + ", ".join(f"{k} Dice {v:.2f}" for k, v in self.dice.items())
            + " on the training scans)",
            f"  volumetry       {o['report']}",
            "",
            "Open them:",
            f"  3D Slicer: File > Add Data > {o['nifti_image']} and {o['nifti_prediction']} "
            "(as a segmentation);",
            f"             or the DICOM database: import {o['dicom_copy']} and "
            f"{o['dicom_prediction'].parent}",
            f"  ITK-SNAP:  itksnap -g {o['nifti_image']} -s {o['nifti_prediction']}",
            f"  a browser: {o['report']}",
        ]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def _copy_with_uids(src: Path, dst: Path) -> Path:
    """A copy of a DICOM series with Study/Series/SOP Instance UIDs generated from the file
    names (deterministic) and the SOP Class UID of its file meta, everything else unchanged."""
    import pydicom
    from pydicom.uid import generate_uid

    dst.mkdir(parents=True, exist_ok=True)
    study = generate_uid(entropy_srcs=["medseg demo study"])
    series = generate_uid(entropy_srcs=["medseg demo series"])
    for f in sorted(src.glob("*.dcm")):
        ds = pydicom.dcmread(f)
        sop = generate_uid(entropy_srcs=["medseg demo", f.name])
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = study, series, sop
        ds.file_meta.MediaStorageSOPInstanceUID = sop
        if not ds.get("SOPClassUID"):
            ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
        if not ds.get("SeriesNumber"):
            ds.SeriesNumber = 1
        ds.save_as(dst / f.name, enforce_file_format=True)
    return dst


def run_demo(out_dir: str | Path | None = None, *, overwrite: bool = False) -> DemoResult:
    """Run the whole pipeline on the shipped sample data into ``out_dir`` (default: a new
    ``medseg_demo_<date>_<time>`` folder in the current directory); see the module docstring.

    Raises :class:`OutputExistsError` when ``out_dir`` exists and is not empty, unless
    ``overwrite``."""
    import yaml

    from medseg.datasets import check_dataset, load_dataset
    from medseg.evaluation import evaluate_folders
    from medseg.inference.batch import PredictOptions, predict_folder
    from medseg.inference.load import load_model
    from medseg.io.atomic import atomic_write_text, check_output_dir
    from medseg.io.manifest import RunManifest
    from medseg.model_folder import ModelFolder
    from medseg.plan.files import save_plan
    from medseg.planning.rules import explain_plan, plan_dataset
    from medseg.training import load_train_config, train
    from medseg.volumetry import measure_folder, write_outputs

    stamp = time.strftime("%Y%m%d_%H%M%S")
    out = Path(out_dir) if out_dir is not None else Path(f"medseg_demo_{stamp}")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise OutputExistsError(out, hint="pass overwrite=True to replace the demo folder")
        _remove_earlier_demo(out)
    check_output_dir(out)
    res = DemoResult(out.resolve())
    clock = time.perf_counter()

    def lap(step: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        res.seconds[step] = now - clock
        clock = now
        log.info("%s: %.1f s", step, res.seconds[step])

    # 1. check and plan
    ds = load_dataset(SAMPLE / "spleen_dataset.json")
    problems = [p for p in check_dataset(ds) if p.severity == "error"]
    if problems:  # pragma: no cover - the shipped data are checked by the tests
        raise RuntimeError(
            "the shipped sample data fail medseg check: " + "; ".join(map(str, problems))
        )
    plan = plan_dataset(ds, gpu_memory_gb=8.0)
    res.outputs["plan"] = save_plan(plan, out / "plan" / "plan.yaml")
    atomic_write_text(out / "plan" / "explained.txt", explain_plan(plan) + "\n")
    cfg_path = out / "plan" / "demo_recipe.yaml"
    atomic_write_text(cfg_path, yaml.safe_dump({**DEMO_RECIPE, "plan": "plan.yaml"}))
    lap("check and plan")
    # 2. train one small model on both scans
    res.outputs["model"] = out / "model"
    train(load_train_config(cfg_path), out / "model", fold="all")
    atomic_write_text(
        ModelFolder(out / "model").postprocessing,
        DEMO_POSTPROCESSING.model_dump_json(indent=2) + "\n",
    )
    lap("train")
    # 3. predict the NIfTI scan and the DICOM series (NIfTI + DICOM SEG)
    dicom = _copy_with_uids(SAMPLE / "ct_dicom", out / "data" / "ct_dicom")
    res.outputs["dicom_copy"] = dicom
    res.outputs["nifti_image"] = SAMPLE / "spleen_ct.nii.gz"
    preds = out / "predictions"
    model = load_model(out / "model", device="cpu")
    nifti = predict_folder(model, SAMPLE / "spleen_ct.nii.gz", preds / "nifti")
    both = PredictOptions(output_format=("nii.gz", "dicom-seg"))
    series = predict_folder(model, dicom, preds / "dicom", options=both)
    for report in (nifti, series):
        if not report.ok:  # pragma: no cover - a failure here is a bug
            raise RuntimeError(report.summary())
    res.outputs["nifti_prediction"] = nifti.done[0].outputs[0]
    res.outputs["dicom_prediction"] = series.done[0].outputs[0]
    if len(series.done[0].outputs) > 1:  # an empty prediction has no DICOM SEG
        res.outputs["dicom_seg"] = series.done[0].outputs[1]
    res.notes += [c.note for c in series.done if c.note]
    lap("predict")
    # 4. evaluate against the reference masks (named like the predictions)
    refs = out / "references"
    refs.mkdir(exist_ok=True)
    pairs = {
        res.outputs["nifti_prediction"]: SAMPLE / "spleen_ct_label.nii.gz",
        res.outputs["dicom_prediction"]: SAMPLE / "ct_dicom_spleen.nii.gz",
    }
    names = {0: "background", 1: "spleen"}
    for pred, ref in pairs.items():
        shutil.copyfile(ref, refs / pred.name)
    flat = out / "predictions" / "all"
    flat.mkdir(exist_ok=True)
    for pred in pairs:
        shutil.copyfile(pred, flat / pred.name)
    ev = evaluate_folders(flat, refs, out / "evaluation", label_names=names)
    res.outputs["evaluation"] = out / "evaluation"
    for rec in ev.records:
        res.dice[rec.case] = rec.dice
    lap("evaluate")
    # 5. volumetry report of the predictions, with the scans' intensities (HU)
    images = out / "images"
    images.mkdir(exist_ok=True)
    shutil.copyfile(SAMPLE / "spleen_ct.nii.gz", images / res.outputs["nifti_prediction"].name)
    from medseg.io import read_volume, write_volume

    ct = read_volume(dicom)
    write_volume(ct, images / res.outputs["dicom_prediction"].name)
    vol = measure_folder(
        flat, images=images, compare=refs, label_names={1: "spleen"}, image_units="HU"
    )
    written = write_outputs(vol, out / "volumetry")
    res.outputs["report"] = written["report.html"]
    lap("volumetry")
    manifest = RunManifest.open(out, "demo", options=DEMO_RECIPE, device="cpu", compare=False)
    manifest.extra = {
        "outputs": {k: str(v) for k, v in res.outputs.items()},
        "dice": res.dice,
        "seconds": res.seconds,
    }
    # every file the demo wrote, so that overwrite removes exactly these
    made = [out / n for n in DEMO_ENTRIES if (out / n).is_dir() and not (out / n).is_symlink()]
    manifest.record_files([f for d in made for f in sorted(d.rglob("*")) if f.is_file()])
    return res


#: What the demo creates in its folder (``--overwrite`` removes these, nothing else).
DEMO_ENTRIES = (
    "plan",
    "model",
    "data",
    "predictions",
    "references",
    "images",
    "evaluation",
    "volumetry",
)


def _remove_earlier_demo(out: Path) -> None:
    """Remove what an earlier demo recorded in ``out/demo.json`` (its own folders and the
    manifest); any other file of ``out`` is left alone. A folder without ``demo.json`` is
    not a demo folder: refused."""
    from medseg.io.manifest import RunManifest

    manifest = RunManifest.open(out, "demo", compare=False)
    if not manifest.path.is_file():
        raise OutputExistsError(
            out,
            hint="it is not a demo folder (no demo.json), so overwrite=True does not replace "
            "it; choose another output folder",
        )
    recorded = [out / f for f in manifest.files if f.split("/")[0] in DEMO_ENTRIES]
    manifest.forget_files([p for p in recorded if not p.is_dir()])
    for name in DEMO_ENTRIES:  # folders left empty; a file medseg did not write stays
        top = out / name
        if top.is_dir() and not top.is_symlink():
            for d in sorted((q for q in top.rglob("*") if q.is_dir()), reverse=True):
                with contextlib.suppress(OSError):
                    d.rmdir()
            with contextlib.suppress(OSError):
                top.rmdir()
    manifest.path.unlink()


__all__ = ["DEMO_POSTPROCESSING", "DEMO_RECIPE", "DemoResult", "run_demo"]
