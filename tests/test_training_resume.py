"""Resume after a hard kill: a training subprocess is SIGKILLed mid-run (after its second epoch
checkpoint), resumed with ``resume=True``, and must end with the weights, validation metrics and
history of an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

from medseg.checkpoint import load_checkpoint

SCRIPT = r"""
import sys
from medseg.checkpoint import CheckpointMeta
from medseg.models import NetworkSpec
from medseg.training.config import TrainConfig
from medseg.training.loop import fit
from medseg.training.sampling import PatchSampler
from medseg.training.synthetic import ball_cases


def run(out, resume):
    spec = NetworkSpec(in_channels=1, out_channels=2, kernel_sizes=[[3, 3, 3]] * 3,
                       strides=[[1, 1, 1], [2, 2, 2], [2, 2, 2]], filters=[4, 8, 8])
    cases = ball_cases(3, (20, 20, 16), seed=3)
    cfg = TrainConfig(epochs=6, iterations_per_epoch=3, val_every=3, device="cpu",
                      progress_bar=False, num_threads=1, optimizer={"lr": 0.05})
    meta = CheckpointMeta(network=spec.model_dump(), label_names={0: "background", 1: "ball"},
                          channel_names=["MR"], spacing=[1.0, 1.0, 1.0],
                          patch_size=[16, 16, 16])
    src = PatchSampler(cases[:2], (16, 16, 16), 2, 3, seed=0)
    return fit(cfg, spec, src, cases[2:], meta, out, resume=resume)


if __name__ == "__main__":
    run(sys.argv[1], False)
"""


def _load_script() -> dict[str, object]:
    ns: dict[str, object] = {"__name__": "resume_script"}
    exec(SCRIPT, ns)
    return ns


def test_sigkill_mid_run_then_resume_matches_uninterrupted(tmp_path: Path) -> None:
    ref_dir, run_dir = tmp_path / "reference", tmp_path / "interrupted"
    victim = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(run_dir)],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    killed: dict[str, object] = {}

    def killer() -> None:  # kill as soon as two epochs are checkpointed (mid-epoch 3)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and victim.poll() is None:
            log = run_dir / "log.txt"
            if log.exists() and log.read_text().count("epoch ") >= 2:
                time.sleep(0.05)
                victim.send_signal(signal.SIGKILL)
                killed["ok"] = True
                return
            time.sleep(0.01)

    watcher = threading.Thread(target=killer)
    watcher.start()
    run = _load_script()["run"]
    threads = torch.get_num_threads()
    try:
        full = run(ref_dir, False)  # type: ignore[operator]
        watcher.join(timeout=300)
        assert killed.get("ok"), victim.stderr.read().decode() if victim.stderr else ""
        assert victim.wait() == -signal.SIGKILL
        assert not (run_dir / "validation_final.json").exists(), "run finished before the kill"
        killed_at = load_checkpoint(run_dir / "checkpoint_last.pt").meta.epoch
        assert 2 <= killed_at < 6
        resumed = run(run_dir, True)  # type: ignore[operator]
    finally:
        torch.set_num_threads(threads)
    a = load_checkpoint(ref_dir / "checkpoint_last.pt")
    b = load_checkpoint(run_dir / "checkpoint_last.pt")
    assert a.meta.epoch == b.meta.epoch == 6
    for k, v in a.state_dict.items():
        assert torch.allclose(v, b.state_dict[k], rtol=0, atol=1e-6), k
    assert resumed.final_metrics == full.final_metrics
    fa = json.loads((ref_dir / "validation_final.json").read_text())["mean"]
    fb = json.loads((run_dir / "validation_final.json").read_text())["mean"]
    assert fa == fb
    assert [r["train_loss"] for r in resumed.history] == [r["train_loss"] for r in full.history]
    # the CSV is rewritten from the checkpointed history: one row per epoch, no duplicates
    rows = (run_dir / "metrics.csv").read_text().strip().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == list(range(1, 7))
