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

Runtimes (``--runtime torch,onnxruntime,openvino``): each is its own medseg pipeline
(``medseg(torch)``, ``medseg(onnxruntime)``, ...), the torch network converted once per run
inside the measured time. ``--la MODEL`` predicts the 12 LA MRI cases (``la2018_msd``) as one
batch per pipeline with TRAINED weights (a model folder of ``configs/la_cpu.yaml``), and scores
every pipeline's labels against the ground truth and against medseg(torch)'s (Dice).

Usage::

    python bench/bench_predict.py                 # real scans + 512x512x400 synthetic CT
    python bench/bench_predict.py --la runs/la_cpu --runtime torch,onnxruntime,openvino
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
def _run_medseg(model: Path, image: Path, out: Path, device: str, runtime: str) -> None:
    from medseg.inference.batch import PredictOptions, predict_folder
    from medseg.inference.load import load_model

    report = predict_folder(
        load_model(model, device=device, runtime=runtime),
        image,
        out,
        options=PredictOptions(overwrite=True),
    )
    assert report.ok, report.summary()


def _images(image: Path) -> list[Path]:
    return sorted(image.glob("*.nii.gz")) if image.is_dir() else [image]


def _run_monai(model: Path, image: Path, out: Path, device: str, runtime: str = "") -> None:
    """The MONAI pipeline on one image, or on every image of a folder (networks loaded once;
    a model folder's folds ensembled by averaging their softmax, as medseg does)."""
    import monai.transforms as mt
    import torch
    from monai.inferers import sliding_window_inference

    from medseg.checkpoint import load_checkpoint
    from medseg.inference.predictor import model_checkpoints

    cks = [load_checkpoint(f) for f in (model_checkpoints(model) if model.is_dir() else [model])]
    plan = cks[0].meta.plan
    nets = [ck.build_model(device) for ck in cks]

    def ensemble(x: torch.Tensor) -> torch.Tensor:
        return torch.stack([torch.softmax(net(x), 1) for net in nets]).mean(0)

    norm = plan.preprocessing.normalization[0]
    steps: list[Any] = [
        mt.LoadImaged("image", image_only=False),
        mt.EnsureChannelFirstd("image"),
        mt.Orientationd("image", axcodes="RAS"),
        mt.Spacingd("image", pixdim=plan.preprocessing.target_spacing, mode="bilinear"),
    ]
    if norm.scheme == "ct":
        assert norm.clip_low is not None and norm.clip_high is not None
        assert norm.mean is not None and norm.std is not None
        steps += [
            mt.ThresholdIntensityd(
                "image", threshold=norm.clip_high, above=False, cval=norm.clip_high
            ),
            mt.ThresholdIntensityd(
                "image", threshold=norm.clip_low, above=True, cval=norm.clip_low
            ),
            mt.NormalizeIntensityd("image", subtrahend=norm.mean, divisor=norm.std),
        ]
    else:  # z-score of the image (of its nonzero voxels with use_nonzero_mask)
        steps.append(mt.NormalizeIntensityd("image", nonzero=norm.use_nonzero_mask))
    pre = mt.Compose(steps)
    post = mt.Compose(
        [
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
    for path in _images(image):
        data = pre({"image": str(path)})
        with torch.inference_mode():
            x = data["image"].unsqueeze(0).to(device)
            data["pred"] = sliding_window_inference(
                x,
                plan.patch_size,
                sw_batch_size=1,
                predictor=ensemble,
                overlap=0.5,
                mode="gaussian",
            )[0].cpu()
        post(data)


def time_network(device: str) -> list[float]:
    """Accumulate the seconds spent in the network's forward pass (both pipelines run the same
    DynUNet), so that each total splits into network and everything else."""
    from monai.networks.nets import DynUNet

    from medseg.inference.runtimes import RuntimeNetwork

    spent = [0.0]

    def patch(cls: Any) -> None:
        forward = cls.forward

        def timed(self: Any, x: Any) -> Any:
            import torch

            t0 = time.perf_counter()
            y = forward(self, x)
            if device == "cuda":
                torch.cuda.synchronize()
            spent[0] += time.perf_counter() - t0
            return y

        cls.forward = timed

    patch(DynUNet)  # the ONNX export traces DynUNet too: its seconds count as network time
    patch(RuntimeNetwork)
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
    run(Path(args.model), Path(args.image), Path(args.out), args.device, args.runtime)
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


def _split(pipeline: str) -> tuple[str, str]:
    """``"medseg(openvino)"`` -> ``("medseg", "openvino")``; ``"monai"`` -> ``("monai", "")``;
    ``"medseg(export/openvino)"`` (an exported folder) -> ``("medseg", "openvino")``."""
    name, _, rt = pipeline.partition("(")
    return name, rt.rstrip(")").removeprefix("export/")


def measure_in_process(pipeline: str, model: Path, image: Path, out: Path, device: str) -> dict:
    """Smoke mode: every pipeline in this process (no fresh interpreter, no RSS figure)."""
    name, runtime = _split(pipeline)
    run = _run_medseg if name == "medseg" else _run_monai
    spent = time_network(device)
    t0 = time.perf_counter()
    run(model, image, out, device, runtime)
    return {
        "seconds": time.perf_counter() - t0,
        "network_s": spent[0],
        "peak_rss": float("nan"),
        "gpu_bytes": 0,
    }


def measure(pipeline: str, model: Path, image: Path, out: Path, device: str, threads: int) -> dict:
    name, runtime = _split(pipeline)
    cmd = [
        sys.executable,
        __file__,
        "--child",
        name,
        "--child-runtime",
        runtime or "torch",
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


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


def _output(folder: Path, pipeline: str, case: str) -> Path:
    suffix = "_monai.nii.gz" if pipeline == "monai" else ".nii.gz"
    return folder / f"{case}{suffix}"


def la_scores(work: Path, pipelines: list[str], labels: Path) -> dict[str, dict[str, float]]:
    """Mean Dice of each pipeline's LA labels against the ground truth and against
    medseg(torch)'s labels (when it ran), over the cases of ``labels``."""
    import nibabel as nib

    scores: dict[str, dict[str, list[float]]] = {p: {"truth": [], "torch": []} for p in pipelines}
    for lab in sorted(labels.glob("*.nii.gz")):
        case = lab.name[: -len(".nii.gz")]
        truth = np.asarray(nib.load(str(lab)).dataobj)
        ref = None
        if "medseg(torch)" in pipelines:
            ref = np.asarray(
                nib.load(str(_output(work / "out_medseg(torch)_la", "", case))).dataobj
            )
        for p in pipelines:
            out = work / f"out_{p.replace('/', '-')}_la"
            pred = np.asarray(nib.load(str(_output(out, p, case))).dataobj)
            assert pred.shape == truth.shape, (p, case, pred.shape, truth.shape)
            scores[p]["truth"].append(_dice(pred, truth))
            if ref is not None:
                scores[p]["torch"].append(_dice(pred, ref))
    return {
        p: {k: float(np.mean(v)) if v else float("nan") for k, v in d.items()}
        for p, d in scores.items()
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="one tiny synthetic case, seconds")
    ap.add_argument("--gpu", action="store_true", help="the GPU check (needs CUDA)")
    ap.add_argument("--no-synthetic", action="store_true", help="skip the 512x512x400 CT")
    ap.add_argument(
        "--runtime",
        default=None,
        help="medseg runtimes to compare, e.g. torch,onnxruntime,openvino (default: torch; "
        "--smoke: every installed one)",
    )
    ap.add_argument(
        "--la",
        metavar="MODEL",
        type=Path,
        help="trained model folder: predict the 12 LA cases as one batch per pipeline, Dice",
    )
    ap.add_argument(
        "--la-export",
        metavar="DIR",
        type=Path,
        help="with --la: the model's `medseg export`, run too with each ONNX runtime of "
        "--runtime (pipelines medseg(export/RUNTIME): no conversion at load)",
    )
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--spacing", type=float, default=1.5)
    ap.add_argument("--patch", type=int, default=96)
    ap.add_argument("--base-filters", type=int, default=8)
    ap.add_argument("--max-filters", type=int, default=64)
    ap.add_argument("--child", choices=("medseg", "monai"), help=argparse.SUPPRESS)
    ap.add_argument("--child-runtime", default="torch", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--image", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--device", default="cpu", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        args.pipeline, args.runtime = args.child, args.child_runtime
        child(args)
        return
    work = Path(tempfile.mkdtemp(prefix="medseg_bench_predict_"))
    device = "cuda" if args.gpu else "cpu"
    if args.runtime is None:
        from medseg.inference.runtimes import RUNTIMES, runtime_installed

        installed = [r for r in RUNTIMES if runtime_installed(r)]
        args.runtime = ",".join(installed) if args.smoke else "torch"
    runtimes = [r.strip() for r in args.runtime.split(",") if r.strip()]
    if args.gpu:  # full-size DynUNet (32 .. 320 filters), 128^3 patch at 1.5 mm
        args.base_filters, args.max_filters, args.patch = 32, 320, 128
    if args.smoke:
        args.patch, args.base_filters, args.max_filters, args.spacing = 16, 4, 8, 3.0
    if args.la is not None:
        model = args.la.resolve()
    else:
        model = make_model(
            work / "model",
            spacing=args.spacing,
            patch=args.patch,
            base=args.base_filters,
            max_filters=args.max_filters,
        )
    cases: list[tuple[str, Path]] = []
    if args.la is not None:
        cases.append(("la", DATA / "la2018_msd" / "imagesTr"))
    elif args.smoke:
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
    pipelines = [f"medseg({r})" for r in runtimes] + ([] if args.gpu else ["monai"])
    if args.la_export is not None:
        pipelines[-1:-1] = [f"medseg(export/{r})" for r in runtimes if r != "torch"]
    rows = []
    for name, image in cases:
        import nibabel as nib

        shapes = [nib.load(str(p)).shape[:3] for p in _images(image)]
        vol_f32 = max(int(np.prod(sh)) for sh in shapes) * 4
        res: dict[str, list[dict]] = {p: [] for p in pipelines}
        for _ in range(args.repeats):
            for p in pipelines:  # alternating, same run
                out = work / f"out_{p.replace('/', '-')}_{name}"
                m = args.la_export.resolve() if "(export/" in p else model
                if args.smoke:
                    res[p].append(measure_in_process(p, m, image, out, device))
                else:
                    res[p].append(measure(p, m, image, out, device, args.threads))
        for p in pipelines:
            row = {
                "case": name,
                "cases": len(shapes),
                "shape": "x".join(map(str, max(shapes, key=lambda sh: int(np.prod(sh))))),
                "pipeline": p,
                "s": statistics.median(r["seconds"] for r in res[p]),
                "rest_s": statistics.median(r["seconds"] - r["network_s"] for r in res[p]),
                "peak_x": max(r["peak_rss"] for r in res[p]) / vol_f32,
                "gpu_gb": max(r["gpu_bytes"] for r in res[p]) / 1e9,
            }
            row["s_per_case"] = row["s"] / len(shapes)
            if "monai" in pipelines:
                mon = statistics.median(r["seconds"] for r in res["monai"])
                row["monai_over"] = mon / row["s"]
            rows.append(row)
        if args.la is not None:
            scores = la_scores(work, pipelines, DATA / "la2018_msd" / "labelsTr")
            for row in rows:
                row["dice_truth"] = scores[row["pipeline"]]["truth"]
                row["dice_vs_torch"] = scores[row["pipeline"]]["torch"]
    print(
        f"\nprediction end to end, device {device}, torch threads {args.threads}, "
        + (
            f"trained model {model}"
            if args.la is not None
            else f"patch {args.patch}^3, filters {args.base_filters}..{args.max_filters}, "
            f"spacing {args.spacing} mm"
        )
        + f", repeats {args.repeats}; ratio = MONAI s / pipeline s (same run)"
    )
    head = (
        f"{'case':26s} {'n':>3s} {'largest':>13s} {'pipeline':20s} {'s':>8s} {'s/case':>7s} "
        f"{'ratio':>6s} {'non-net s':>9s} {'RAM/vol':>7s}"
    )
    if args.la is not None:
        head += f" {'Dice truth':>10s} {'Dice vs torch':>13s}"
    if args.gpu:
        head += f" {'GPU GB':>7s}"
    print(head)
    for r in rows:
        line = (
            f"{r['case']:26s} {r['cases']:3d} {r['shape']:>13s} {r['pipeline']:20s} "
            f"{r['s']:8.2f} {r['s_per_case']:7.2f} {r.get('monai_over', float('nan')):6.2f} "
            f"{r['rest_s']:9.2f} {r['peak_x']:7.2f}"
        )
        if args.la is not None:
            line += f" {r['dice_truth']:10.4f} {r['dice_vs_torch']:13.4f}"
        if args.gpu:
            line += f" {r['gpu_gb']:7.2f}"
        print(line)
    (work / "bench_predict.json").write_text(json.dumps(rows, indent=2))
    print(f"results: {work / 'bench_predict.json'}")


if __name__ == "__main__":
    main()
