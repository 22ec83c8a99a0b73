"""End-to-end prediction speed and memory: ``medseg.predict_folder`` vs a plain MONAI pipeline
with the same weights and window settings, in the same run.

The MONAI reference is the textbook inference pipeline: ``LoadImaged`` → ``EnsureChannelFirstd``
→ ``Orientationd("RAS")`` → ``Spacingd`` (bilinear) → CT window clip + z-score (the plan's
statistics) → ``sliding_window_inference`` (same patch, overlap 0.5, Gaussian mode) → softmax
→ ``Invertd`` (back through spacing and orientation) → argmax → ``SaveImaged``. Both run one
case at a time in a fresh subprocess (so peak RSS is that of one prediction) with the same
DynUNet weights (random, seeded: speed does not depend on them) and torch threads.

Cases: the CT and MR volumes of ``../shared/data`` (TotalSegmentator CT and MR, MSD spleen CT
crop, LA MRI, BraTS FLAIR) and one synthetic 512×512×400 CT (int16, 0.8×0.8×1.0 mm), all
predicted at the plan's target spacing.

Prints per case: seconds (medseg, MONAI, ratio), the same without the network's forward passes
(reading, resampling, normalisation, window bookkeeping, restoring, writing: the part a pipeline
owns, since both run the same network on the same windows), peak RSS growth over the input
volume in float32 (medseg, MONAI). Targets: medseg ≥ 2× faster than MONAI on CPU; medseg's
peak RAM ≤ 4× the input volume in float32.

Usage::

    python bench/bench_predict.py                 # real scans + 512x512x400 synthetic CT
    python bench/bench_predict.py --smoke         # seconds: one tiny synthetic case
    python bench/bench_predict.py --gpu           # GPU check: 512x512x400 CT, full-size
                                                  # DynUNet at 1.5 mm, read-predict-write
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

DATA = Path(
    os.environ.get("MEDSEG_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)

REAL = [
    ("totalseg_ct", "totalsegmentator_example/example_ct.nii.gz"),
    ("totalseg_mr", "totalsegmentator_example/example_mr_sm.nii.gz"),
    ("spleen_ct", "ivadomed_testing/ct_scan/sub-spleen2/ct/sub-spleen2_ct.nii.gz"),
    ("cord_t2w", "ivadomed_testing/sub-unf01/anat/sub-unf01_T2w.nii.gz"),
    ("la_mri", "la2018_msd/imagesTr/06SR5RBREL16DQ6M8LWS.nii.gz"),
    ("brats_flair", "brats2015_deepmedic/train/brats_2013_pat0005_1/Flair_subtrMeanDivStd.nii.gz"),
]


# --- the model ---------------------------------------------------------------------------------
def make_model(folder: Path, *, spacing: float, patch: int, base: int, max_filters: int) -> Path:
    """A checkpoint of a DynUNet (seeded random weights) with a CT plan (window -1000..1000 HU,
    z-score mean 0 std 500) at ``spacing`` mm isotropic, patch ``patch``³."""
    import torch

    from medseg.checkpoint import CheckpointMeta, save_checkpoint
    from medseg.models import build_model
    from medseg.plan.schema import ChannelNormalization, Plan, Preprocessing
    from medseg.planning.rules import network_topology

    net = network_topology([patch] * 3, [spacing] * 3)
    filters = [min(base * 2**i, max_filters) for i in range(len(net.filters))]
    plan = Plan(
        dataset="<bench>",
        dataset_name="bench_predict",
        label_names={0: "background", 1: "a", 2: "b"},
        preprocessing=Preprocessing(
            target_spacing=(spacing, spacing, spacing),
            crop_to_nonzero=False,
            normalization=[
                ChannelNormalization(
                    channel="CT", scheme="ct", clip_low=-1000, clip_high=1000, mean=0, std=500
                )
            ],
        ),
        patch_size=(patch, patch, patch),
        batch_size=2,
        network=net.model_copy(update={"filters": filters}),
        gpu_memory_gb=8,
    )
    torch.manual_seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    return save_checkpoint(
        folder / "model.pt", build_model(plan).state_dict(), CheckpointMeta(plan)
    )


# --- one prediction in a subprocess ------------------------------------------------------------
def _run_medseg(model: Path, image: Path, out: Path, device: str) -> None:
    from medseg.inference.batch import PredictOptions, predict_folder
    from medseg.inference.load import load_model

    report = predict_folder(
        load_model(model, device=device), image, out, options=PredictOptions(overwrite=True)
    )
    assert report.ok, report.summary()


def _run_monai(model: Path, image: Path, out: Path, device: str) -> None:
    import monai.transforms as mt
    import torch
    from monai.inferers import sliding_window_inference

    from medseg.checkpoint import load_checkpoint

    ck = load_checkpoint(model, with_training=False)
    plan = ck.meta.plan
    net = ck.build_model(device)
    norm = plan.preprocessing.normalization[0]
    assert norm.clip_low is not None and norm.clip_high is not None
    assert norm.mean is not None and norm.std is not None
    pre = mt.Compose(
        [
            mt.LoadImaged("image", image_only=False),
            mt.EnsureChannelFirstd("image"),
            mt.Orientationd("image", axcodes="RAS"),
            mt.Spacingd("image", pixdim=plan.preprocessing.target_spacing, mode="bilinear"),
            mt.ThresholdIntensityd(
                "image", threshold=norm.clip_high, above=False, cval=norm.clip_high
            ),
            mt.ThresholdIntensityd(
                "image", threshold=norm.clip_low, above=True, cval=norm.clip_low
            ),
            mt.NormalizeIntensityd("image", subtrahend=norm.mean, divisor=norm.std),
        ]
    )
    post = mt.Compose(
        [
            mt.Activationsd("pred", softmax=True),
            mt.Invertd("pred", transform=pre, orig_keys="image", nearest_interp=False),
            mt.AsDiscreted("pred", argmax=True),
            mt.SaveImaged(
                "pred",
                output_dir=str(out),
                output_postfix="monai",
                separate_folder=False,
                output_dtype=np.uint8,
                resample=False,
                print_log=False,
            ),
        ]
    )
    data = pre({"image": str(image)})
    with torch.inference_mode():
        x = data["image"].unsqueeze(0).to(device)
        data["pred"] = sliding_window_inference(
            x, plan.patch_size, sw_batch_size=1, predictor=net, overlap=0.5, mode="gaussian"
        )[0].cpu()
    post(data)


def time_network(device: str) -> list[float]:
    """Accumulate the seconds spent in the network's forward pass (both pipelines run the same
    DynUNet), so that each total splits into network and everything else."""
    from monai.networks.nets import DynUNet

    spent = [0.0]
    forward = DynUNet.forward

    def timed(self: DynUNet, x: Any) -> Any:
        import torch

        t0 = time.perf_counter()
        y = forward(self, x)
        if device == "cuda":
            torch.cuda.synchronize()
        spent[0] += time.perf_counter() - t0
        return y

    DynUNet.forward = timed  # type: ignore[method-assign]
    return spent


def child(args: argparse.Namespace) -> None:
    """Run one pipeline on one image, report seconds and peak RSS growth (JSON on stdout)."""
    import psutil
    import torch

    torch.set_num_threads(args.threads)
    proc = psutil.Process()
    base = proc.memory_info().rss
    peak = [base]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.002)

    # imports first, outside the measurement (both pipelines pay them once per process)
    import monai.transforms  # noqa: F401

    import medseg.inference.batch  # noqa: F401

    spent = time_network(args.device)
    base = proc.memory_info().rss
    peak[0] = base
    t = threading.Thread(target=sample, daemon=True)
    t.start()
    t0 = time.perf_counter()
    run = _run_medseg if args.pipeline == "medseg" else _run_monai
    run(Path(args.model), Path(args.image), Path(args.out), args.device)
    if args.device == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    stop.set()
    t.join()
    gpu = torch.cuda.max_memory_allocated() if args.device == "cuda" else 0
    print(
        json.dumps(
            {"seconds": dt, "network_s": spent[0], "peak_rss": peak[0] - base, "gpu_bytes": gpu}
        )
    )


def measure_in_process(pipeline: str, model: Path, image: Path, out: Path, device: str) -> dict:
    """Smoke mode: both pipelines in this process (no fresh interpreter, no RSS figure)."""
    run = _run_medseg if pipeline == "medseg" else _run_monai
    spent = time_network(device)
    t0 = time.perf_counter()
    run(model, image, out, device)
    return {
        "seconds": time.perf_counter() - t0,
        "network_s": spent[0],
        "peak_rss": float("nan"),
        "gpu_bytes": 0,
    }


def measure(pipeline: str, model: Path, image: Path, out: Path, device: str, threads: int) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        pipeline,
        "--model",
        str(model),
        "--image",
        str(image),
        "--out",
        str(out),
        "--device",
        device,
        "--threads",
        str(threads),
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"{pipeline} on {image} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


# --- data ---------------------------------------------------------------------------------------
def synthetic_ct(
    path: Path, shape: tuple[int, int, int], spacing: tuple[float, float, float]
) -> Path:
    """A body-like int16 CT phantom (air, soft tissue ellipsoid, bones) with noise."""
    import nibabel as nib

    rng = np.random.default_rng(0)
    x, y = np.ogrid[: shape[0], : shape[1]]
    cx, cy = shape[0] / 2, shape[1] / 2
    body = ((x - cx) / (0.42 * shape[0])) ** 2 + ((y - cy) / (0.32 * shape[1])) ** 2 <= 1
    spine = ((x - cx) / (0.05 * shape[0])) ** 2 + (
        (y - cy - 0.18 * shape[1]) / (0.05 * shape[1])
    ) ** 2 <= 1
    vol = np.full(shape, -1000, dtype=np.int16)
    for k in range(shape[2]):
        sl = np.where(body, 40, -1000).astype(np.int16)
        sl[spine] = 700
        vol[:, :, k] = sl
    vol += rng.normal(0, 20, shape).astype(np.int16)
    aff = np.diag([*spacing, 1.0])
    nib.save(nib.Nifti1Image(vol, aff), str(path))
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="one tiny synthetic case, seconds")
    ap.add_argument("--gpu", action="store_true", help="the GPU check (needs CUDA)")
    ap.add_argument("--no-synthetic", action="store_true", help="skip the 512x512x400 CT")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--spacing", type=float, default=1.5)
    ap.add_argument("--patch", type=int, default=96)
    ap.add_argument("--base-filters", type=int, default=8)
    ap.add_argument("--max-filters", type=int, default=64)
    ap.add_argument("--child", choices=("medseg", "monai"), help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--image", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--device", default="cpu", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        args.pipeline = args.child
        child(args)
        return
    work = Path(tempfile.mkdtemp(prefix="medseg_bench_predict_"))
    device = "cuda" if args.gpu else "cpu"
    if args.gpu:  # full-size DynUNet (32 .. 320 filters), 128^3 patch at 1.5 mm
        args.base_filters, args.max_filters, args.patch = 32, 320, 128
    if args.smoke:
        args.patch, args.base_filters, args.max_filters, args.spacing = 16, 4, 8, 3.0
    model = make_model(
        work / "model",
        spacing=args.spacing,
        patch=args.patch,
        base=args.base_filters,
        max_filters=args.max_filters,
    )
    cases: list[tuple[str, Path]] = []
    if args.smoke:
        for name, shape in (("tiny_ct", (40, 36, 24)), ("tiny_ct_2", (32, 30, 20))):
            cases.append((name, synthetic_ct(work / f"{name}.nii.gz", shape, (1.5, 1.5, 2.0))))
    else:
        if not args.gpu:
            for name, rel in REAL:
                p = DATA / rel
                if not p.exists():
                    raise SystemExit(f"{p} not present: the benchmark needs ../shared/data")
                cases.append((name, p))
        if not args.no_synthetic or args.gpu:
            cases.append(
                (
                    "synthetic_ct_512x512x400",
                    synthetic_ct(work / "ct512.nii.gz", (512, 512, 400), (0.8, 0.8, 1.0)),
                )
            )
    pipelines = ["medseg"] if args.gpu else ["medseg", "monai"]
    rows = []
    for name, image in cases:
        import nibabel as nib

        vol_f32 = int(np.prod(nib.load(str(image)).shape[:3])) * 4
        res: dict[str, list[dict]] = {p: [] for p in pipelines}
        for _ in range(args.repeats):
            for p in pipelines:  # alternating, same run
                out = work / f"out_{p}_{name}"
                if args.smoke:
                    res[p].append(measure_in_process(p, model, image, out, device))
                else:
                    res[p].append(measure(p, model, image, out, device, args.threads))
        row = {
            "case": name,
            "shape": list(nib.load(str(image)).shape[:3]),
            "input_f32_mb": vol_f32 / 2**20,
        }
        for p in pipelines:
            row[f"{p}_s"] = statistics.median(r["seconds"] for r in res[p])
            row[f"{p}_rest_s"] = statistics.median(r["seconds"] - r["network_s"] for r in res[p])
            row[f"{p}_peak_x"] = max(r["peak_rss"] for r in res[p]) / vol_f32
            row[f"{p}_gpu_gb"] = max(r["gpu_bytes"] for r in res[p]) / 1e9
        if "monai" in pipelines:
            row["ratio"] = row["monai_s"] / row["medseg_s"]
            row["rest_ratio"] = row["monai_rest_s"] / row["medseg_rest_s"]
        rows.append(row)
    print(
        f"\nprediction end to end, device {device}, torch threads {args.threads}, "
        f"patch {args.patch}^3, filters {args.base_filters}..{args.max_filters}, "
        f"spacing {args.spacing} mm, repeats {args.repeats}"
    )
    head = f"{'case':26s} {'shape':>13s} {'medseg s':>9s}"
    if "monai" in pipelines:
        head += f" {'MONAI s':>8s} {'MONAI/medseg':>12s}"
    head += f" {'medseg non-net s':>16s}"
    if "monai" in pipelines:
        head += f" {'MONAI non-net s':>15s} {'MONAI/medseg':>12s}"
    head += f" {'medseg RAM/vol':>14s}"
    if "monai" in pipelines:
        head += f" {'MONAI RAM/vol':>13s}"
    if args.gpu:
        head += f" {'GPU GB':>7s}"
    print(head)
    for r in rows:
        line = f"{r['case']:26s} {'x'.join(map(str, r['shape'])):>13s} {r['medseg_s']:9.2f}"
        if "monai" in pipelines:
            line += f" {r['monai_s']:8.2f} {r['ratio']:12.2f}"
        line += f" {r['medseg_rest_s']:16.2f}"
        if "monai" in pipelines:
            line += f" {r['monai_rest_s']:15.2f} {r['rest_ratio']:12.2f}"
        line += f" {r['medseg_peak_x']:14.2f}"
        if "monai" in pipelines:
            line += f" {r['monai_peak_x']:13.2f}"
        if args.gpu:
            line += f" {r['medseg_gpu_gb']:7.2f}"
        print(line)
    (work / "bench_predict.json").write_text(json.dumps(rows, indent=2))
    print(f"results: {work / 'bench_predict.json'}")


if __name__ == "__main__":
    main()
