"""Training throughput (patches/s): medseg's loop (:func:`medseg.training.loop.fit`) vs a plain
MONAI training loop (DynUNet, DiceCELoss, SGD) on identical pre-made batches, in the same run.

Variants measured (same network topology, patch and batch size; batches pre-generated so data
loading is excluded from every variant):

* ``monai_plain``   — the reference: a textbook MONAI loop, no deep supervision;
* ``medseg``        — medseg's default (deep supervision, grad clipping, AMP context);
* ``medseg_noDS``   — medseg without deep supervision (same network as the reference);
* ``medseg_channels_last`` — channels_last_3d memory format;
* ``medseg_compile`` — ``torch.compile`` (``--compile``; compile time reported separately).

Usage::

    python bench/bench_train_throughput.py                     # CPU, 48x48x32 patch
    python bench/bench_train_throughput.py --device cuda --patch 128 128 128 --batch 2 \\
        --base-filters 32 --amp bf16 --compile
    python bench/bench_train_throughput.py --smoke     # 16^3 patch, 1 round, seconds (tests)
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medseg.models import build_network
from medseg.plan.schema import ChannelNormalization, NetworkSpec, Plan, Preprocessing
from medseg.training.config import TrainConfig
from medseg.training.loop import fit


class FixedBatches:
    """The same pre-made batches every epoch, in place of the training loader (so that data
    loading is excluded from the measurement)."""

    def __init__(self, batches: list[dict[str, torch.Tensor]]) -> None:
        self.batches = batches

    def set_epoch(self, epoch: int) -> None:
        pass

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        return iter(self.batches)

    def close(self) -> None:
        pass


def make_batches(
    n: int, batch: int, patch: list[int], n_classes: int, seed: int = 0
) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        lab = torch.randint(0, n_classes, (batch, 1, *patch), generator=g)
        img = lab.float() + 0.5 * torch.randn(batch, 1, *patch, generator=g)
        out.append({"image": img, "label": lab})
    return out


def spec_for(patch: list[int], base: int, ds: bool) -> NetworkSpec:
    from medseg.planning.rules import network_topology

    net = network_topology(patch, (1.0, 1.0, 1.0))
    n = len(net.strides)
    update = {"filters": [min(base * 2**i, 320) for i in range(n)]}
    if not ds:
        update["deep_supervision"] = False  # type: ignore[assignment]
    return net.model_copy(update=update)


def plan_for(spec: NetworkSpec, patch: list[int]) -> Plan:
    return Plan(
        dataset="<pre-made batches>",
        dataset_name="throughput",
        label_names={0: "background", 1: "fg"},
        preprocessing=Preprocessing(
            target_spacing=(1.0, 1.0, 1.0),
            crop_to_nonzero=False,
            normalization=[ChannelNormalization(channel="img", scheme="zscore")],
        ),
        patch_size=(patch[0], patch[1], patch[2]),
        batch_size=2,
        network=spec,
        gpu_memory_gb=8,
    )


def run_medseg(
    spec: NetworkSpec,
    batches: list[dict[str, torch.Tensor]],
    epochs: int,
    device: str,
    amp: str,
    **cfg_kw: Any,
) -> tuple[float, float]:
    """Patches/s over epochs 2.. (epoch 1 = warm-up / compile) and the first epoch's time."""
    cfg = TrainConfig(
        epochs=epochs,
        iterations_per_epoch=len(batches),
        val_every=10**6,
        device=device,  # type: ignore[arg-type]
        amp=amp,
        progress_bar=False,
        final_hd95=False,
        **cfg_kw,  # type: ignore[arg-type]
    )
    plan = plan_for(spec, list(batches[0]["image"].shape[2:]))
    with tempfile.TemporaryDirectory() as tmp:
        res = fit(cfg, plan, FixedBatches(batches), Path(tmp) / "run")  # type: ignore[arg-type]
    rows = res.history[1:]
    n = sum(len(batches) * batches[0]["image"].shape[0] for _ in rows)
    t = sum(r["epoch_time_s"] for r in rows)
    return n / t, float(res.history[0]["epoch_time_s"])


def run_monai_plain(
    spec: NetworkSpec, batches: list[dict[str, torch.Tensor]], epochs: int, device: str
) -> tuple[float, float]:
    """A textbook MONAI loop: DynUNet, DiceCELoss(to_onehot_y, softmax), SGD(momentum 0.99)."""
    from monai.losses import DiceCELoss

    torch.manual_seed(0)
    dev = torch.device(device)
    model = build_network(spec.model_copy(update={"deep_supervision": False}), 1, 2).to(dev)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.99, nesterov=True)
    times = []
    for _ in range(epochs):
        model.train()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for b in batches:
            x, y = b["image"].to(dev), b["label"].to(dev)
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
        float(loss.detach())
        times.append(time.perf_counter() - t0)
    n = (epochs - 1) * len(batches) * batches[0]["image"].shape[0]
    return n / sum(times[1:]), times[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--patch", type=int, nargs=3, default=[48, 48, 32])
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--iterations", type=int, default=5, help="iterations per epoch")
    ap.add_argument("--epochs", type=int, default=2, help="epoch 1 is warm-up")
    ap.add_argument("--base-filters", type=int, default=8)
    ap.add_argument("--amp", default="none", choices=("none", "bf16", "fp16", "auto"))
    ap.add_argument("--compile", action="store_true", help="also measure torch.compile")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, one round (tests)")
    args = ap.parse_args()
    if args.smoke:
        args.patch, args.batch, args.iterations, args.epochs = [16, 16, 16], 1, 2, 2
        args.base_filters, args.rounds, args.compile = 4, 1, False
    if args.threads:
        torch.set_num_threads(args.threads)
    batches = make_batches(args.iterations, args.batch, args.patch, 2)
    spec = spec_for(args.patch, args.base_filters, ds=True)
    spec_nods = spec.model_copy(update={"deep_supervision": False})
    variants: list[tuple[str, Any]] = [
        (
            "monai_plain (reference)",
            lambda: run_monai_plain(spec, batches, args.epochs, args.device),
        ),
        (
            "medseg (deep supervision)",
            lambda: run_medseg(spec, batches, args.epochs, args.device, args.amp),
        ),
        ("medseg_noDS", lambda: run_medseg(spec_nods, batches, args.epochs, args.device, args.amp)),
        (
            "medseg_channels_last",
            lambda: run_medseg(
                spec, batches, args.epochs, args.device, args.amp, channels_last=True
            ),
        ),
    ]
    if args.compile:
        variants.append(
            (
                "medseg_compile",
                lambda: run_medseg(spec, batches, args.epochs, args.device, args.amp, compile=True),
            )
        )
    if args.smoke:  # the reference and medseg's default: enough to show the table works
        variants = variants[:2]
    # alternate the variants in rounds so that background load hits all of them alike
    pps: dict[str, list[float]] = {n: [] for n, _ in variants}
    first: dict[str, list[float]] = {n: [] for n, _ in variants}
    for _ in range(args.rounds):
        for name, fn in variants:
            try:
                p, f = fn()
            except Exception as exc:  # report, keep measuring the others
                print(f"{name}: failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
                continue
            pps[name].append(p)
            first[name].append(f)
    ref = float(np.median(pps["monai_plain (reference)"]))
    print(
        f"\ntraining throughput, device {args.device}, patch {args.patch}, batch {args.batch}, "
        f"filters {spec.filters}, amp {args.amp}, {args.iterations} it/epoch x "
        f"{args.epochs - 1} timed epochs, {args.rounds} alternating rounds (medians), "
        f"torch threads {torch.get_num_threads()}"
    )
    print(f"{'variant':<28} {'patches/s':>10} {'ratio vs ref':>13} {'1st epoch s':>12}")
    for name, _ in variants:
        if not pps[name]:
            continue
        m = float(np.median(pps[name]))
        print(f"{name:<28} {m:>10.2f} {m / ref:>13.2f} {float(np.median(first[name])):>12.1f}")


if __name__ == "__main__":
    main()
