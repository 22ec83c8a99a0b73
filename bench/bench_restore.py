"""Benchmark: restoring class probabilities to the original grid (the export step).

Input: ``K`` class logits on the preprocessed grid (e.g. 1.5 mm) of a CT whose original grid is
``--shape`` at ``--spacing`` (e.g. 512×512×400 at 0.8 mm), as the network returns them
(float32, CPU). Output: the argmax label map on the original grid (crop box = whole volume).

Variants, each in its own subprocess (so peak memory is its own):

* ``medseg``: :func:`medseg.transforms.resample_torch.restore_labels` (torch, float32,
  streaming slabs of ``--chunk-mib``, default the device's; labels only);
* ``medseg+probs``: the same also returning float16 probabilities (``--save-probabilities``);
* ``nnU-Net``: nnU-Net v2's default export path, reproduced faithfully:
  ``convert_predicted_logits_to_segmentation_with_correct_shape`` →
  ``resample_data_or_seg_to_shape(is_seg=False, order=1, order_z=0, force_separate_z=None)``
  → (no separate z for an isotropic grid) ``data.astype(float)`` and, per class,
  ``skimage.transform.resize(order=1, mode="edge", anti_aliasing=False)`` in float64 — whose
  code path is ``scipy.ndimage.zoom(grid_mode=True, mode="nearest")`` plus a clip to the
  input range, reproduced here without the skimage dependency — then ``np.vstack``,
  ``astype(float32)``, softmax and argmax in torch.

Reported: seconds of the step, peak RSS of the process (kernel high-water mark and psutil
samples) and the part above the RSS once the input existed, the fraction of voxels whose
argmax equals the nnU-Net path's, and the speed ratio (nnU-Net seconds / variant seconds).

Usage::

    python bench/bench_restore.py [--shape 512 512 400] [--classes 15] [--spacing 0.8]
        [--preprocessed-spacing 1.5] [--device cpu|cuda] [--variants medseg,medseg+probs,nnunet]
        [--smoke]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

VARIANTS = ("medseg", "medseg+probs", "nnunet")


def make_logits(k: int, shape: tuple[int, int, int], seed: int = 0) -> Any:
    """Smooth random class logits ``(K, *shape)`` float32 (blob-like regions, background
    favoured), identical in every process."""
    import torch
    import torch.nn.functional as tnf

    g = torch.Generator().manual_seed(seed)
    coarse = torch.randn((1, k, 12, 12, 10), generator=g) * 4.0
    coarse[:, 0] += 3.0
    return tnf.interpolate(coarse, size=shape, mode="trilinear", align_corners=False)[
        0
    ].contiguous()


def nnunet_export(logits: Any, new_shape: tuple[int, int, int]) -> np.ndarray:
    """nnU-Net v2's default CPU export of logits to a segmentation (see the module docstring)."""
    import torch
    from scipy import ndimage

    data = logits.numpy() if isinstance(logits, torch.Tensor) else logits
    dtype_data = data.dtype
    data = data.astype(float)
    reshaped = []
    for c in range(data.shape[0]):
        img = data[c]
        factors = np.asarray(img.shape, float) / np.asarray(new_shape, float)
        out = ndimage.zoom(img, 1 / factors, order=1, mode="nearest", grid_mode=True)
        out = np.clip(out, img.min(), img.max())  # skimage _clip_warp_output
        reshaped.append(out[None])
    resampled = np.vstack(reshaped).astype(dtype_data)
    del reshaped, data
    probabilities = torch.softmax(torch.from_numpy(resampled), 0)
    return probabilities.argmax(0).numpy().astype(np.uint8)


class PeakSampler:
    """psutil RSS sampled every few milliseconds in a thread (peak kept)."""

    def __init__(self) -> None:
        import psutil

        self.proc = psutil.Process()
        self.peak = self.proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return max(self.peak, self.proc.memory_info().rss)


def worker(args: argparse.Namespace) -> None:
    import psutil
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    pre = tuple(int(v) for v in args.pre_shape)
    out_shape = tuple(int(v) for v in args.shape)
    logits = make_logits(args.classes, pre)  # type: ignore[arg-type]
    base = psutil.Process().memory_info().rss
    sampler = PeakSampler()
    t0 = time.perf_counter()
    if args.worker == "nnunet":
        labels = nnunet_export(logits, out_shape)  # type: ignore[arg-type]
    else:
        from medseg.transforms.resample_torch import restore_labels

        if args.device == "cuda":
            logits = logits.cuda()
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
        res = restore_labels(
            logits,
            out_shape,
            device=args.device,
            max_chunk_bytes=args.chunk_mib * 1024**2 or None,
            return_probabilities=args.worker == "medseg+probs",
        )
        labels = res.labels
    seconds = time.perf_counter() - t0
    peak = max(sampler.stop(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    np.save(args.out, labels)
    rec = {"seconds": seconds, "peak_rss": peak, "base_rss": base}
    if args.device == "cuda" and args.worker != "nnunet":
        rec["gpu_peak"] = torch.cuda.max_memory_allocated()
    print("RESULT " + json.dumps(rec))


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", type=int, nargs=3, default=[512, 512, 400])
    ap.add_argument("--classes", type=int, default=15)
    ap.add_argument("--spacing", type=float, default=0.8, help="original spacing (mm)")
    ap.add_argument("--preprocessed-spacing", type=float, default=1.5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    ap.add_argument("--chunk-mib", type=int, default=0, help="0: the device default")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument(
        "--rounds", type=int, default=1, help="run every variant this many times, alternating"
    )
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, seconds")
    ap.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    ap.add_argument("--pre-shape", type=int, nargs=3, help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return
    if args.smoke:
        args.shape, args.classes = [48, 40, 32], 4
    from medseg.transforms.spatial import target_shape

    pre = target_shape(args.shape, [args.spacing] * 3, [args.preprocessed_spacing] * 3)
    variants = [v for v in args.variants.split(",") if v]
    if "nnunet" in variants:  # the reference first
        variants = ["nnunet"] + [v for v in variants if v != "nnunet"]
    import torch

    print(
        f"restore benchmark  {time.strftime('%Y-%m-%d')}  {platform.node()}  {_cpu_name()}  "
        f"{os.cpu_count()} CPUs  torch {torch.__version__} "
        f"({args.threads or torch.get_num_threads()} threads per variant)  "
        f"device {args.device}"
    )
    print(
        f"{args.classes} classes, preprocessed {pre} at {args.preprocessed_spacing} mm -> "
        f"original {tuple(args.shape)} at {args.spacing} mm; input "
        f"{args.classes * int(np.prod(pre)) * 4 / 2**30:.2f} GiB float32"
    )
    rounds: list[dict[str, dict[str, Any]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(max(1, args.rounds)):
            results: dict[str, dict[str, Any]] = {}
            for v in variants:
                rec = _run_variant(v, pre, args, Path(tmp))
                if rec is not None:
                    results[v] = rec
            _compare(results)
            rounds.append(results)
    _print(rounds)


def _run_variant(
    v: str, pre: tuple[int, int, int], args: argparse.Namespace, tmp: Path
) -> dict[str, Any] | None:
    out = tmp / f"{v}.npy"
    cmd = [sys.executable, __file__, "--worker", v, "--out", str(out), "--pre-shape"]
    cmd += [str(s) for s in pre] + ["--shape"] + [str(s) for s in args.shape]
    cmd += ["--classes", str(args.classes), "--device", args.device]
    cmd += ["--threads", str(args.threads), "--chunk-mib", str(args.chunk_mib)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not line:
        print(f"{v}: failed (exit {proc.returncode})\n{proc.stderr[-2000:]}")
        return None
    rec: dict[str, Any] = json.loads(line[0][7:])
    rec["labels"] = np.load(out)
    return rec


def _compare(results: dict[str, dict[str, Any]]) -> None:
    """Identical-argmax fraction and speed ratio of each variant against nnU-Net's."""
    ref = results.get("nnunet")
    for r in results.values():
        r["same"] = float(np.mean(r["labels"] == ref["labels"])) if ref else float("nan")
        r["ratio"] = ref["seconds"] / r["seconds"] if ref else float("nan")
    for r in results.values():
        del r["labels"]


def _print(rounds: list[dict[str, dict[str, Any]]]) -> None:
    names = {
        "nnunet": "nnU-Net (scipy float64)",
        "medseg": "medseg",
        "medseg+probs": "medseg+probs",
    }
    print(
        f"{'variant':<26}{'seconds':>9}{'peak RSS GiB':>14}{'above input':>13}"
        f"{'identical argmax':>18}{'speed-up':>10}"
    )
    for i, results in enumerate(rounds):
        if len(rounds) > 1:
            print(f"round {i + 1}")
        for v, r in results.items():
            extra = f"  GPU peak {r['gpu_peak'] / 2**30:.2f} GiB" if "gpu_peak" in r else ""
            print(
                f"{names[v]:<26}{r['seconds']:>9.2f}{r['peak_rss'] / 2**30:>14.2f}"
                f"{(r['peak_rss'] - r['base_rss']) / 2**30:>13.2f}{r['same'] * 100:>17.4f}%"
                f"{r['ratio']:>9.1f}x{extra}"
            )
    if len(rounds) > 1:
        for v in rounds[0]:
            ratios = [r[v]["ratio"] for r in rounds if v in r]
            med = float(np.median(ratios))
            print(f"median speed-up {names[v]}: {med:.1f}x over {len(ratios)} rounds")


if __name__ == "__main__":
    main()
