"""`medseg export --format onnx` and `medseg predict --runtime`: a tiny DynUNet trained here on
noisy balls, exported to ONNX and run by ONNX Runtime and OpenVINO gives the labels of the
torch runtime (Dice >= 0.999 against them, and the balls found); the exported folder is
verified on load (sha256), a non-model folder is refused, and the options are in --help.

ONNX Runtime and OpenVINO run only in child processes (:mod:`support.child`), never in the
test process: training, the export (torch.onnx and onnx only) and the torch runtime run here.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from support.child import (
    MEASURED_AUTO_ORDER,
    assert_runtimes_not_imported,
    predict_in_child,
    run_medseg,
)
from support.plans import write_training_run
from support.volumes import ball_arrays, write_nifti

from medseg.cli import main
from medseg.errors import InputError, OutputExistsError
from medseg.export import export_onnx, is_onnx_folder, load_onnx_model
from medseg.inference.runtimes import runtime_installed
from medseg.io import read_label_map, read_volume

#: the torch runtime's label names and, per case, its labels and probabilities
TorchReference = tuple[dict[int, str], dict[str, tuple[np.ndarray, np.ndarray]]]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two folds of a tiny DynUNet (3 stages: deep supervision in training) trained on noisy
    balls for a few seconds."""
    from medseg.training import train

    root = tmp_path_factory.mktemp("model")
    cfg = write_training_run(
        root,
        n_cases=4,
        n_folds=2,
        epochs=3,
        iterations_per_epoch=6,
        val_every=3,
    )
    train(cfg, root / "m", fold="cv")
    return root / "m"


@pytest.fixture(scope="module")
def exported(model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_onnx(model, tmp_path_factory.mktemp("onnx") / "m_onnx")


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    folder = tmp_path_factory.mktemp("in")
    rng = np.random.default_rng(7)
    truth = {}
    for i in range(2):
        image, label = ball_arrays((24, 24, 20), rng, radius=5.0)
        write_nifti(folder / f"c{i}.nii.gz", image, np.diag([-1.0, -1.0, 1.0, 1.0]))
        truth[f"c{i}"] = label
    return folder, truth


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    return 2.0 * float((a & b).sum()) / max(1.0, float(a.sum() + b.sum()))


def test_export_writes_verified_graphs_with_dynamic_batch(model: Path, exported: Path) -> None:
    import onnx

    assert is_onnx_folder(exported) and not is_onnx_folder(model)
    manifest = json.loads((exported / "medseg_onnx.json").read_text())
    assert manifest["folds"] == ["0", "1"] and manifest["format"] == "medseg-onnx"
    for fold in ("0", "1"):
        proto = onnx.load(str(exported / f"fold_{fold}" / "model.onnx"))
        onnx.checker.check_model(proto)
        assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
        dims = proto.graph.input[0].type.tensor_type.shape.dim
        assert dims[0].dim_param == "batch"  # dynamic batch axis
        assert [d.dim_value for d in dims[2:]] == [16, 16, 16]  # the plan's patch size
        assert len(proto.graph.output) == 1  # the full-resolution head only
    listed = set(manifest["sha256"])
    assert {"fold_0/model.onnx", "fold_0/meta.json", "fold_1/model.onnx"} <= listed
    assert not list(exported.parent.glob(".*partial"))


@pytest.fixture(scope="module")
def torch_reference(model: Path, cases: tuple[Path, dict[str, np.ndarray]]) -> TorchReference:
    """The torch runtime's label names and, per case, its labels and probabilities (here, in
    the test process: torch only)."""
    from medseg.inference.predictor import Predictor

    folder, truth = cases
    torch_pred = Predictor.from_paths([model], runtime="torch", tta=True)
    assert torch_pred.runtime == "torch"
    out = {}
    for name, label in truth.items():
        image = read_volume(folder / f"{name}.nii.gz")
        ref, ref_p = torch_pred.predict_case([image], with_probabilities=True)
        assert _dice(ref.array, label) > 0.6  # trained: the ball is found
        assert ref_p is not None
        out[name] = (ref.array, ref_p.astype(np.float32))
    return torch_pred.label_names, out


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_runtimes_give_the_torch_labels(
    model: Path,
    exported: Path,
    cases: tuple[Path, dict[str, np.ndarray]],
    torch_reference: TorchReference,
    runtime: str,
    tmp_path: Path,
) -> None:
    folder, truth = cases
    label_names, refs = torch_reference
    images = {name: folder / f"{name}.nii.gz" for name in truth}
    on_torch_model, on_export = predict_in_child(
        runtime, [("paths", model), ("onnx", exported)], images, tmp_path, tta=True
    )
    assert on_torch_model.runtime == runtime and on_export.runtime == runtime
    assert on_export.identity["kind"] == "onnx" and on_export.identity["folds"] == ["0", "1"]
    assert on_export.label_names == label_names
    for name, label in truth.items():
        image = read_volume(images[name])
        ref, ref_p = refs[name]
        for pred in (on_torch_model, on_export):
            seg, p = pred.labels[name], pred.probabilities[name]
            assert seg.shape == image.shape and np.allclose(pred.affines[name], image.affine)
            assert _dice(seg, ref) >= 0.999
            assert _dice(seg, label) > 0.6
            assert np.abs(p.astype(np.float32) - ref_p).max() < 2e-3


def test_predict_cli_runs_an_exported_folder(
    exported: Path, cases: tuple[Path, dict[str, np.ndarray]], tmp_path: Path
) -> None:
    folder, truth = cases
    out = tmp_path / "out"
    args = ["predict", "--model", str(exported), str(folder), str(out), "--quiet"]
    what = "medseg predict --runtime onnxruntime"
    proc = run_medseg([*args, "--runtime", "onnxruntime", "--device", "cpu"], what=what)
    assert proc.stderr == ""
    for name, label in truth.items():
        seg = read_label_map(out / f"{name}.nii.gz")
        assert _dice(seg.array, label) > 0.6


def test_predict_cli_defaults_to_the_fastest_installed_runtime(
    model: Path,
    cases: tuple[Path, dict[str, np.ndarray]],
    torch_reference: TorchReference,
    tmp_path: Path,
) -> None:
    """``medseg predict`` without ``--runtime`` on a trained model folder (a child process, as
    a user runs it): the first installed runtime of the measured CPU order runs it (OpenVINO
    with the dev extra), the run manifest says which, and the labels are torch's."""
    expected = next(r for r in MEASURED_AUTO_ORDER["cpu"] if runtime_installed(r))
    assert expected == "openvino"  # the dev extra installs both ONNX runtimes
    folder, truth = cases
    out = tmp_path / "out"
    args = ["predict", "--model", str(model), str(folder), str(out), "--device", "cpu"]
    run_medseg([*args, "--quiet", "--tta"], what="medseg predict (default runtime)")
    manifest = json.loads((out / "predict.json").read_text(encoding="utf-8"))
    assert manifest["model"]["runtime"] == expected
    _, refs = torch_reference
    for name in truth:
        seg = read_label_map(out / f"{name}.nii.gz")
        assert _dice(seg.array, refs[name][0]) >= 0.999


def test_export_cli_and_refusals(
    model: Path, exported: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "fold1"
    assert main(["export", str(model), str(out), "--format", "onnx", "--folds", "1"]) == 0
    assert json.loads((out / "medseg_onnx.json").read_text())["folds"] == ["1"]
    capsys.readouterr()
    not_model = tmp_path / "notes"
    not_model.mkdir()
    (not_model / "readme.txt").write_text("hello")
    assert main(["export", str(not_model), str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "expected a medseg model folder" in err
    assert "readme.txt" in err and not (tmp_path / "x").exists()
    with pytest.raises(OutputExistsError):
        export_onnx(model, out)  # an earlier export is replaced only with overwrite
    with pytest.raises(InputError, match="already an ONNX export"):
        export_onnx(exported, tmp_path / "y")


def test_a_changed_graph_is_refused_on_load(exported: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(exported, copy)
    graph = copy / "fold_1" / "model.onnx"
    data = bytearray(graph.read_bytes())
    data[-5] ^= 0xFF
    graph.write_bytes(bytes(data))
    # the files are verified before the runtime is loaded: the refusal imports no runtime
    with pytest.raises(InputError, match="sha256") as info:
        load_onnx_model(copy, runtime="onnxruntime")
    assert str(graph) in str(info.value)
    # the post-processing choice is verified too: changed, or added to an export without one
    shutil.rmtree(copy)
    shutil.copytree(exported, copy)
    post = copy / "postprocessing.json"
    if post.is_file():
        post.write_text(post.read_text().replace("[", "[ ", 1))
    else:
        post.write_text('{"steps": []}')
    with pytest.raises(InputError) as info:
        load_onnx_model(copy, runtime="onnxruntime")
    assert str(info.value).startswith(f"{post}: ")
    assert_runtimes_not_imported()


def test_export_replaces_only_what_it_wrote_and_never_writes_into_the_model(
    model: Path, tmp_path: Path
) -> None:
    from medseg.errors import OutputError

    out = export_onnx(model, tmp_path / "exp", folds=[1])
    notes = out / "notes.txt"  # the user's file beside an earlier export
    notes.write_text("mine")
    with pytest.raises(OutputError, match=r"notes\.txt"):
        export_onnx(model, out, folds=[1], overwrite=True)
    assert notes.read_text() == "mine" and is_onnx_folder(out)
    notes.unlink()
    assert export_onnx(model, out, folds=[0], overwrite=True) == out
    assert json.loads((out / "medseg_onnx.json").read_text())["folds"] == ["0"]
    # a folder that only pretends to be an export (a forged manifest) is not deleted either
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "medseg_onnx.json").write_text('{"sha256": {}}')
    (fake / "scan.nii.gz").write_bytes(b"data")
    with pytest.raises(OutputError, match=r"scan\.nii\.gz"):
        export_onnx(model, fake, folds=[1], overwrite=True)
    assert (fake / "scan.nii.gz").read_bytes() == b"data"
    # a user's folder that happens to carry the old temporary name is left alone
    user = tmp_path / ".exp2.partial"
    user.mkdir()
    (user / "keep.txt").write_text("x")
    export_onnx(model, tmp_path / "exp2", folds=[1])
    assert (user / "keep.txt").read_text() == "x"
    # OUT inside MODEL (or MODEL inside OUT) is refused before anything is written
    with pytest.raises(OutputError, match="input folder"):
        export_onnx(model, model / "onnx", folds=[1])
    assert not (model / "onnx").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == [".exp2.partial"]


def test_no_runtime_was_imported_into_the_test_process() -> None:
    """Last in this module: ONNX Runtime and OpenVINO ran in child processes only."""
    assert_runtimes_not_imported()
