"""Batch prediction (`medseg predict`, predict_folder) with a tiny network trained here: outputs
on each input's own grid (oblique, permuted, LPS NIfTI; DICOM), DICOM SEG equal to the NIfTI
output, post-processing, skip-and-report, resume after SIGKILL, sharding across parts and
torchrun ranks, and bad input refused with one clear message."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from support.dicom import write_series
from support.plans import write_training_run
from support.predict import run_predict
from support.volumes import ball_arrays, write_nifti

from medseg.cli import main
from medseg.errors import InputError
from medseg.inference.inputs import find_cases
from medseg.io import read_label_map, read_volume
from medseg.io.outputs import series_name


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two folds of a tiny DynUNet trained on noisy balls (a few seconds)."""
    from medseg.training import train

    root = tmp_path_factory.mktemp("model")
    cfg = write_training_run(
        root, n_cases=4, n_folds=2, epochs=3, iterations_per_epoch=6, val_every=3
    )
    train(cfg, root / "m", fold="cv")
    return root / "m"


def _rotation(deg: float) -> np.ndarray:
    a = np.deg2rad(deg)
    r = np.eye(4)
    r[:3, :3] = [[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]]
    return r


def _ball_folder(folder: Path, affines: dict[str, np.ndarray], seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    truth = {}
    for name, aff in affines.items():
        image, label = ball_arrays((24, 24, 20), rng, radius=5.0)
        write_nifti(folder / f"{name}.nii.gz", image, aff)
        truth[name] = (label, aff)
    return truth


GEOMETRIES = {
    "ras": np.diag([1.0, 1.0, 1.0, 1.0]),
    "lps": np.diag([-1.0, -1.0, 1.0, 1.0])
    @ np.array([[1, 0, 0, 5], [0, 1, 0, -3], [0, 0, 1, 7], [0, 0, 0, 1.0]]),
    "permuted": np.array([[0, 1.0, 0, 0], [0, 0, 1.0, 0], [1.0, 0, 0, 0], [0, 0, 0, 1]]),
    "oblique": _rotation(20.0) @ np.diag([-1.0, -1.0, 1.0, 1.0]),
}


def _world_centroid(mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    idx = np.argwhere(mask).mean(axis=0)
    return affine[:3, :3] @ idx + affine[:3, 3]


def test_outputs_lie_on_each_inputs_grid(model: Path, tmp_path: Path) -> None:
    truth = _ball_folder(tmp_path / "in", GEOMETRIES)
    report = run_predict(model, tmp_path / "in", tmp_path / "out", device="cpu")
    assert report.ok and [c.name for c in report.done] == sorted(GEOMETRIES)
    labels = json.loads((tmp_path / "out" / "labels.json").read_text())
    assert "ball" in json.dumps(labels)
    for name, (label, aff) in truth.items():
        out = nib.load(str(tmp_path / "out" / f"{name}.nii.gz"))  # an independent reader
        img = nib.load(str(tmp_path / "in" / f"{name}.nii.gz"))
        assert out.shape == img.shape
        np.testing.assert_allclose(out.affine, img.affine, atol=1e-5)
        pred = np.asarray(out.dataobj) == 1
        assert pred.sum() > 0.5 * label.sum()
        # the predicted ball sits where the true ball is, in world coordinates
        dist = np.linalg.norm(_world_centroid(pred, aff) - _world_centroid(label > 0, aff))
        assert dist < 1.5, (name, dist)


def test_dicom_series_input_nifti_and_dicom_seg_agree(model: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    image, _ = ball_arrays((24, 24, 20), rng, radius=5.0)
    stored = np.round((image + 1.0) * 1000).astype(np.uint16)  # values x1000, 0..~3000
    write_series(
        tmp_path / "study" / "ct",
        volume=stored,
        slope=0.001,
        intercept=-1.0,
        pixel_spacing=(1.0, 1.0),
        step=1.0,
        description="Ball CT 1.0",
        series_number=7,
        frame_of_reference_uid="1.2.826.0.1.3680043.8.498.1",
    )
    src = read_volume(tmp_path / "study" / "ct")
    scan = find_cases(tmp_path / "study", 1)
    assert len(scan.cases) == 1 and scan.cases[0].dicom
    name = scan.cases[0].name
    assert name.startswith("s007_Ball_CT_1.0_") and "Doe" not in name and "PID" not in name
    r1 = run_predict(model, tmp_path / "study", tmp_path / "nii", device="cpu")
    r2 = run_predict(
        model, tmp_path / "study", tmp_path / "seg", device="cpu", output_format="dicom-seg"
    )
    assert r1.ok and r2.ok
    nii = read_label_map(tmp_path / "nii" / f"{name}.nii.gz")
    assert nii.same_grid(src)
    seg = read_label_map(tmp_path / "seg" / f"{name}.dcm")  # DICOM SEG read back
    assert seg.same_grid(src, atol=1e-3)
    np.testing.assert_array_equal(seg.array, nii.array)
    assert (seg.array == 1).sum() > 0
    text = (tmp_path / "seg" / f"{name}.dcm").read_bytes()
    assert b"Doe^Secret" in text  # patient module copied from the source, as required ...
    for log_text in (r2.summary(),):
        assert "Doe" not in log_text and "PID-SECRET" not in log_text  # ... never logged


def test_postprocessing_options(model: Path, tmp_path: Path) -> None:
    _ball_folder(tmp_path / "in", {"a": np.eye(4)})
    raw = run_predict(
        model, tmp_path / "in", tmp_path / "raw", device="cpu", save_probabilities=True
    )
    with np.load(tmp_path / "raw" / "a.probabilities.npz") as npz:
        assert sorted(npz.files) == ["background", "ball"]
        p = np.stack([npz["background"], npz["ball"]])
    assert p.dtype == np.float16 and p.shape == (2, 24, 24, 20)
    np.testing.assert_allclose(p.astype(np.float32).sum(0), 1.0, atol=2e-3)
    lab = read_label_map(tmp_path / "raw" / "a.nii.gz").array
    assert np.mean(p.argmax(0) == lab) > 0.999  # the labels are the argmax of the probabilities
    gone = run_predict(model, tmp_path / "in", tmp_path / "big", device="cpu", min_volume_ml=1e6)
    assert raw.ok and gone.ok
    assert read_label_map(tmp_path / "raw" / "a.nii.gz").array.any()
    assert not read_label_map(tmp_path / "big" / "a.nii.gz").array.any()  # all < 1e6 mL
    assert gone.done[0].empty_labels == (1,)  # reported empty
    lcc = run_predict(
        model,
        tmp_path / "in",
        tmp_path / "lcc",
        device="cpu",
        keep_largest="all",
        fill_holes=[1],
    )
    assert lcc.ok
    a = read_label_map(tmp_path / "lcc" / "a.nii.gz").array
    from medseg.components import connected_components

    assert connected_components(a == 1)[1] == 1
    with pytest.raises(Exception, match="labels \\[3\\] are not labels of the model"):
        run_predict(model, tmp_path / "in", tmp_path / "x", device="cpu", keep_largest=[3])


def test_bad_cases_are_reported_and_the_batch_goes_on(
    model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _ball_folder(tmp_path / "in", {"good1": np.eye(4), "good2": np.eye(4)})
    (tmp_path / "in" / "broken.nii.gz").write_bytes(b"\x1f\x8b not really gzip")
    write_nifti(tmp_path / "in" / "twochan_0000.nii.gz", np.zeros((8, 8, 8), np.float32))
    write_nifti(tmp_path / "in" / "twochan_0001.nii.gz", np.zeros((8, 8, 8), np.float32))
    rc = main(
        [
            "predict",
            "--model",
            str(model),
            str(tmp_path / "in"),
            str(tmp_path / "out"),
            "--device",
            "cpu",
            "--quiet",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 1
    assert "2 predicted, 0 already done, 2 failed" in err
    assert "broken.nii.gz" in err and "Traceback" not in err
    assert "twochan: expected channel files _0000" in err
    assert sorted(p.name for p in (tmp_path / "out").glob("*.nii.gz")) == [
        "good1.nii.gz",
        "good2.nii.gz",
    ]
    # a rerun skips the finished cases
    assert (
        main(
            [
                "predict",
                "--model",
                str(model),
                str(tmp_path / "in"),
                str(tmp_path / "out"),
                "--device",
                "cpu",
                "--quiet",
            ]
        )
        == 1
    )
    assert "0 predicted, 2 already done" in capsys.readouterr().err


def test_bad_requests_are_one_line_errors(
    model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _ball_folder(tmp_path / "in", {"a": np.eye(4)})
    cases = [
        (
            ["--model", str(model), str(tmp_path / "in"), str(tmp_path / "in" / "out")],
            "the output folder lies inside the input folder",
        ),
        (
            ["--model", str(tmp_path), str(tmp_path / "in"), str(tmp_path / "o1")],
            "expected fold_*/checkpoint_last.pt",
        ),
        (
            [
                "--model",
                str(model),
                str(tmp_path / "in"),
                str(tmp_path / "o2"),
                "--output-format",
                "dicom-seg",
            ],
            "a DICOM SEG output needs a DICOM series input",
        ),
        (
            ["--model", str(model), str(tmp_path / "nothing"), str(tmp_path / "o3")],
            "no such file or folder",
        ),
        (
            ["--model", str(model), str(tmp_path / "in"), str(tmp_path / "o4"), "--folds", "x"],
            "--folds: expected a list",
        ),
        (
            [
                "--model",
                str(model),
                str(tmp_path / "in"),
                str(tmp_path / "o5"),
                "--min-volume",
                "1:x",
            ],
            "--min-volume: expected ML",
        ),
        (
            [
                "--model",
                str(model),
                str(tmp_path / "in"),
                str(tmp_path / "o6"),
                "--part-id",
                "2",
                "--num-parts",
                "2",
            ],
            "--part-id: expected 0 <= part_id < num_parts, found 2 of 2",
        ),
    ]
    for argv, fragment in cases:
        assert main(["predict", *argv, "--device", "cpu", "--quiet"]) == 1, argv
        err = capsys.readouterr().err
        assert fragment in err and "Traceback" not in err, (argv, err)


def test_parts_and_ranks_split_the_cases_without_loss_or_overlap(
    model: Path, tmp_path: Path
) -> None:
    _ball_folder(tmp_path / "in", {f"c{i}": np.eye(4) for i in range(5)})
    names = [c.name for c in find_cases(tmp_path / "in", 1).cases]
    done = []
    for part in (0, 1):
        r = run_predict(
            model, tmp_path / "in", tmp_path / "parts", device="cpu", num_parts=2, part_id=part
        )
        done += [c.name for c in r.done]
    assert sorted(done) == names and len(set(done)) == len(done)
    # torchrun: each rank (RANK/WORLD_SIZE in its environment) takes its share
    code = (
        "import sys; from medseg.inference.batch import predict_folder; "
        "from medseg.inference.load import load_model; "
        "r = predict_folder(load_model(sys.argv[1], device='cpu'), sys.argv[2], sys.argv[3]); "
        "print(','.join(c.name for c in r.done))"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(model), str(tmp_path / "in"), str(tmp_path / "ranks")],
            env={
                **os.environ,
                "RANK": str(r),
                "WORLD_SIZE": "2",
                "LOCAL_RANK": str(r),
                "OMP_NUM_THREADS": "1",
            },
            stdout=subprocess.PIPE,
            text=True,
        )
        for r in (0, 1)
    ]
    outs = [p.communicate(timeout=300)[0].strip().split(",") for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sorted(outs[0] + outs[1]) == names and not set(outs[0]) & set(outs[1])


def test_sigkill_mid_batch_then_rerun_completes_every_output(model: Path, tmp_path: Path) -> None:
    _ball_folder(tmp_path / "in", {f"c{i}": np.eye(4) for i in range(6)})
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "medseg",
        "predict",
        "--model",
        str(model),
        str(tmp_path / "in"),
        str(out),
        "--device",
        "cpu",
        "--quiet",
    ]
    victim = subprocess.Popen(
        cmd,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and victim.poll() is None:
        if len(list(out.glob("c*.nii.gz"))) >= 2:
            break
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    present = {p.name: p.stat().st_mtime_ns for p in out.glob("c*.nii.gz")}
    assert 0 < len(present) < 6, "the batch finished before the kill"
    for p in out.glob("c*.nii.gz"):  # every output present is complete and readable
        read_label_map(p)
    # finished: committed and recorded in the manifest (a case killed between its rename and
    # its record is pending, and redone)
    cases = json.loads((out / "predict.json").read_text())["cases"]
    first = {
        f"{k}.nii.gz": present[f"{k}.nii.gz"] for k, e in cases.items() if e["status"] == "done"
    }
    assert len(present) - 1 <= len(first) <= len(present)
    done = subprocess.run(
        cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert f"{6 - len(first)} predicted, {len(first)} already done" in done.stdout
    assert sorted(p.name for p in out.glob("c*.nii.gz")) == [f"c{i}.nii.gz" for i in range(6)]
    for name, mtime in first.items():
        assert (out / name).stat().st_mtime_ns == mtime  # finished work is not redone
        read_label_map(out / name)


def test_series_names_are_safe_and_unique() -> None:
    a = series_name(3, "CT Body 3.0 / Thorax*", "1.2.3")
    b = series_name(3, "CT Body 3.0 / Thorax*", "1.2.3#echo2")
    assert a.startswith("s003_CT_Body_3.0_Thorax_") and a != b
    assert set(a) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def test_model_expecting_two_channels_given_one(tmp_path: Path) -> None:
    write_nifti(tmp_path / "in" / "a.nii.gz", np.zeros((8, 8, 8), np.float32))
    scan = find_cases(tmp_path / "in", 2)
    assert scan.cases == [] and "the model expects 2 channels" in scan.problems[0][1]
    with pytest.raises(InputError, match="no such file"):
        find_cases(tmp_path / "missing", 1)
