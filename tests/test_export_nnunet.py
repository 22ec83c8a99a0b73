"""`medseg export` of nnU-Net v2 model folders: a synthetic nnU-Net folder (two folds, random
weights, built as tests/test_nnunet.py builds them) exported to ONNX; the export's files and
manifest; ONNX Runtime and OpenVINO give the labels of the torch prediction of the original
folder (same weights: argmax agreement >= 99.9 % and Dice >= 0.999 per label); `medseg predict
--model EXPORT` writes a label map on an oblique, anisotropic input grid; a changed graph, a
cascade folder and a non-model folder are refused with one error.

ONNX Runtime and OpenVINO are never imported into the test process (loaded there, they made
later tests die with SIGSEGV): every step that runs a graph runs in a child process."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
import torch
from support.paths import REPO

from medseg.cli import main
from medseg.errors import ConfigError, InputError, OutputError, OutputExistsError
from medseg.export import export_onnx
from medseg.inference.load import load_model
from medseg.io import read_label_map, read_volume
from medseg.io.files import sha256_file
from medseg.nnunet import load_nnunet_model

_spec = importlib.util.spec_from_file_location("nnunet_bench", REPO / "bench" / "nnunet_predict.py")
assert _spec is not None and _spec.loader is not None
bench = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("nnunet_bench", bench)
_spec.loader.exec_module(bench)

CT_PROPS = {"mean": 40.0, "std": 80.0, "percentile_00_5": -100.0, "percentile_99_5": 300.0}
#: an oblique grid with anisotropic voxels (1.2 x 1.12 x 1.63 mm)
AFFINE = np.array(
    [[0.0, -1.1, 0.3, 20.0], [1.2, 0.0, 0.0, -7.0], [0.0, 0.2, 1.6, 3.0], [0.0, 0.0, 0.0, 1.0]]
)
#: nnU-Net's post-processing: keep the largest component of label 2
POSTPROCESSING = {
    "postprocessing_fns": ["remove_all_but_largest_component_from_segmentation"],
    "postprocessing_kwargs": [{"labels_or_regions": 2}],
}

# Run in a child process: the graphs' structure (onnx), then the export on ONNX Runtime and
# OpenVINO and the nnU-Net folder converted at load, each prediction saved as .npy.
_CHILD = """
import json, sys
from pathlib import Path
import numpy as np
import onnx
from medseg.inference.load import load_model
from medseg.io import read_volume

out, image_path, export, folder = map(Path, sys.argv[1:5])
image = read_volume(image_path)
report = {"graphs": {}, "models": {}}
for graph in sorted(export.glob("fold_*/model.onnx")):
    proto = onnx.load(str(graph))
    onnx.checker.check_model(proto)
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    report["graphs"][graph.parent.name] = {
        "opset": max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")),
        "batch": dims[0].dim_param,
        "spatial": [d.dim_value for d in dims[2:]],
        "outputs": len(proto.graph.output),
    }
for name, path, runtime in [("onnxruntime", export, "onnxruntime"),
                            ("openvino", export, "openvino"),
                            ("converted", folder, "onnxruntime")]:
    model = load_model(path, runtime=runtime, device="cpu", tta=True)
    labels, probs = model.predict_case([image], with_probabilities=True)
    np.save(out / f"{name}.npy", labels.array)
    np.save(out / f"{name}_probs.npy", probs)
    report["models"][name] = {"type": type(model).__name__, "identity": model.identity}
(out / "report.json").write_text(json.dumps(report))
"""


def _child(args: list[str], timeout: float = 240) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(
        [sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return res


def _agree(labels: np.ndarray, ref: np.ndarray) -> None:
    """Argmax agreement >= 99.9 % of voxels and Dice >= 0.999 for every label with > 1000
    voxels in ``ref`` (at least two such foreground labels: not a comparison of blank maps)."""
    assert labels.shape == ref.shape
    assert (labels == ref).mean() >= 0.999
    big = [int(v) for v in np.unique(ref) if v != 0 and (ref == v).sum() > 1000]
    assert len(big) >= 2, np.bincount(ref.ravel())
    for v in big:
        a, b = labels == v, ref == v
        assert 2.0 * (a & b).sum() / (a.sum() + b.sum()) >= 0.999, v


def _nnunet_folder(root: Path, **kw: Any) -> Path:
    plans = bench.synthetic_plans(
        schemes=["CTNormalization"], spacing=[1.5, 1.5, 1.5], patch=[16, 16, 16],
        intensity={"0": CT_PROPS},
    )  # fmt: skip
    ds = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "liver": 1, "spleen": 2},
          "numTraining": 1, "file_ending": ".nii.gz"}  # fmt: skip
    return Path(bench.synthetic_nnunet_folder(root, plans, ds, **kw))


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two folds (seeds 5 and 6: three labels on the input below), nnU-Net's
    postprocessing.json and a postprocessing.pkl (which is never read nor copied)."""
    f = _nnunet_folder(tmp_path_factory.mktemp("nnunet") / "m", seed=5, folds=(0, 1))
    (f / "postprocessing.json").write_text(json.dumps(POSTPROCESSING))
    (f / "postprocessing.pkl").write_bytes(b"not to be unpickled")
    return f


@pytest.fixture(scope="module")
def exported(folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_onnx(folder, tmp_path_factory.mktemp("export") / "m_onnx")


@pytest.fixture(scope="module")
def image_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    inp = tmp_path_factory.mktemp("in")
    g = np.mgrid[:40, :36, :24].astype(np.float32)
    arr = (g[0] * 10 - 100 + 50 * np.sin(g[1] / 3)).astype(np.float32)
    arr[:2] = 0  # a zero border: nnU-Net's crop to the non-zero region
    nib.save(nib.Nifti1Image(arr, AFFINE), inp / "ct_0000.nii.gz")
    return inp / "ct_0000.nii.gz"


@pytest.fixture(scope="module")
def reference(folder: Path, image_file: Path) -> tuple[np.ndarray, np.ndarray]:
    """The torch prediction (labels, probabilities) of the original folder, with mirroring."""
    labels, probs = load_nnunet_model(folder, tta=True).predict_case(
        [read_volume(image_file)], with_probabilities=True
    )
    assert probs is not None
    return labels.array, probs


def test_export_writes_the_graphs_the_nnunet_files_and_a_manifest(
    folder: Path, exported: Path
) -> None:
    files = sorted(p.relative_to(exported).as_posix() for p in exported.rglob("*") if p.is_file())
    assert files == [
        "dataset.json", "fold_0/model.onnx", "fold_1/model.onnx", "medseg_onnx.json",
        "plans.json", "postprocessing.json",
    ]  # fmt: skip
    for name in ("plans.json", "dataset.json", "postprocessing.json"):
        assert (exported / name).read_bytes() == (folder / name).read_bytes()
    manifest = json.loads((exported / "medseg_onnx.json").read_text())
    assert manifest["format"] == "medseg-onnx" and manifest["format_version"] == 1
    assert manifest["kind"] == "nnunet" and manifest["opset"] == 17
    assert manifest["folds"] == ["0", "1"] and manifest["checkpoint"] == "final"
    assert manifest["nnunet"] == {
        "configuration": "3d_fullres", "trainer": "nnUNetTrainer", "mirror_axes": [0, 1, 2]
    }  # fmt: skip
    assert manifest["sha256"] == {
        f: sha256_file(exported / f) for f in files if f != "medseg_onnx.json"
    }
    assert not list(exported.parent.glob(".*"))  # the temporary folder is gone


def test_runtimes_give_the_torch_prediction(
    folder: Path, exported: Path, image_file: Path, reference: tuple[np.ndarray, np.ndarray],
    tmp_path: Path,
) -> None:  # fmt: skip
    _child(["-c", _CHILD, str(tmp_path), str(image_file), str(exported), str(folder)])
    report = json.loads((tmp_path / "report.json").read_text())
    for graph in report["graphs"].values():
        assert graph["opset"] >= 17 and graph["batch"] == "batch"  # a dynamic batch axis
        assert graph["spatial"] == [16, 16, 16] and graph["outputs"] == 1  # the plan's patch
    assert sorted(report["graphs"]) == ["fold_0", "fold_1"]
    ref, ref_probs = reference
    for name in ("onnxruntime", "openvino", "converted"):
        _agree(np.load(tmp_path / f"{name}.npy"), ref)
        probs = np.load(tmp_path / f"{name}_probs.npy").astype(np.float32)
        assert np.abs(probs - ref_probs.astype(np.float32)).max() < 2e-3
        assert report["models"][name]["type"] == "NnunetRuntimeModel"
    ident = report["models"]["openvino"]["identity"]
    assert ident["kind"] == "nnunet" and ident["format"] == "onnx"
    assert ident["runtime"] == "openvino" and ident["folds"] == ["0", "1"]
    manifest = json.loads((exported / "medseg_onnx.json").read_text())
    assert ident["weights_sha256"] == {
        g: manifest["sha256"][g] for g in ("fold_0/model.onnx", "fold_1/model.onnx")
    }
    converted = report["models"]["converted"]["identity"]
    assert converted["runtime"] == "onnxruntime" and converted["onnx"] == "converted at load"
    assert list(converted["weights_sha256"]) == [
        "fold_0/checkpoint_final.pth", "fold_1/checkpoint_final.pth"
    ]  # fmt: skip


def test_predict_cli_runs_the_export_on_the_input_grid(
    exported: Path, image_file: Path, reference: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    res = _child(["-m", "medseg", "predict", "--model", str(exported), str(image_file.parent),
                  str(out), "--quiet", "--device", "cpu", "--tta"])  # fmt: skip
    assert "Traceback" not in res.stderr
    seg = read_label_map(out / "ct.nii.gz")
    assert seg.shape == (40, 36, 24) and np.allclose(seg.affine, AFFINE)
    _agree(seg.array, reference[0])
    assert "spleen" in (out / "labels.json").read_text()
    model = json.loads((out / "predict.json").read_text())["model"]
    assert model["kind"] == "nnunet" and model["format"] == "onnx"
    assert model["runtime"] in ("openvino", "onnxruntime")  # auto: the fastest installed


def test_a_changed_graph_byte_is_refused_on_load(exported: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(exported, copy)
    graph = copy / "fold_1" / "model.onnx"
    data = bytearray(graph.read_bytes())
    data[len(data) // 2] ^= 0x01
    graph.write_bytes(bytes(data))
    loaded_before = "onnxruntime" in sys.modules
    with pytest.raises(InputError, match="sha256") as info:
        load_model(copy, runtime="onnxruntime", device="cpu")
    assert str(graph) in str(info.value)
    assert loaded_before or "onnxruntime" not in sys.modules  # refused before any runtime
    (copy / "plans.json").write_text("{}")
    with pytest.raises(InputError, match=r"plans\.json.*sha256"):
        load_model(copy, device="cpu", folds=[0])


def test_refusals(
    folder: Path, exported: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # an nnU-Net cascade stage: refused before anything is written
    plans = json.loads((folder / "plans.json").read_text())
    plans["configurations"]["3d_cascade_fullres"] = {
        "inherits_from": "3d_fullres", "previous_stage": "3d_lowres"
    }  # fmt: skip
    casc = bench.synthetic_nnunet_folder(
        tmp_path / "casc", plans, json.loads((folder / "dataset.json").read_text())
    )
    ck = torch.load(casc / "fold_0" / "checkpoint_final.pth", weights_only=False)
    ck["init_args"]["configuration"] = "3d_cascade_fullres"
    torch.save(ck, casc / "fold_0" / "checkpoint_final.pth")
    assert main(["export", str(casc), str(tmp_path / "c_onnx")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cascade" in err, err
    assert not (tmp_path / "c_onnx").exists()
    # a folder that is no model
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "readme.txt").write_text("hello")
    assert main(["export", str(notes), str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nnU-Net v2 model folder" in err and "readme.txt" in err
    assert not (tmp_path / "x").exists()
    with pytest.raises(InputError, match=r"checkpoint_best\.pth"):
        export_onnx(folder, tmp_path / "best", checkpoint="best")
    with pytest.raises(InputError, match="already an ONNX export"):
        export_onnx(exported, tmp_path / "again")
    with pytest.raises(ConfigError, match="torch cannot run"):
        load_model(exported, runtime="torch", device="cpu")
    from medseg.inference.predictor import Predictor

    with pytest.raises(InputError, match="nnU-Net"):
        Predictor.from_paths([exported])


def test_overwrite_replaces_only_an_earlier_export(folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "exp"
    assert main(["export", str(folder), str(out), "--folds", "1", "--checkpoint", "final"]) == 0
    assert json.loads((out / "medseg_onnx.json").read_text())["folds"] == ["1"]
    with pytest.raises(OutputExistsError):
        export_onnx(folder, out, folds=[0])
    (out / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match=r"notes\.txt"):
        export_onnx(folder, out, folds=[0], overwrite=True)
    (out / "notes.txt").unlink()
    export_onnx(folder, out, folds=[0], overwrite=True, opset=18)
    manifest = json.loads((out / "medseg_onnx.json").read_text())
    assert manifest["folds"] == ["0"] and manifest["opset"] == 18
    assert not (out / "fold_1").exists()
