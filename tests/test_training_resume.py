"""Resume after a hard kill: a training subprocess is SIGKILLed mid-run, resumed with
``resume=True``, and must end with the weights of an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
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

out, resume = sys.argv[1], sys.argv[2] == "1"
spec = NetworkSpec(in_channels=1, out_channels=2, kernel_sizes=[[3, 3, 3]] * 3,
                   strides=[[1, 1, 1], [2, 2, 2], [2, 2, 2]], filters=[4, 8, 8])
cases = ball_cases(3, (20, 20, 16), seed=3)
cfg = TrainConfig(epochs=6, iterations_per_epoch=3, val_every=3, device="cpu",
                  progress_bar=False, num_threads=1, optimizer={"lr": 0.05})
meta = CheckpointMeta(network=spec.model_dump(), label_names={0: "background", 1: "ball"},
                      channel_names=["MR"], spacing=[1.0, 1.0, 1.0], patch_size=[16, 16, 16])
src = PatchSampler(cases[:2], (16, 16, 16), 2, 3, seed=0)
fit(cfg, spec, src, cases[2:], meta, out, resume=resume)
"""


def _run(out: Path, resume: bool) -> subprocess.Popen[bytes]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(out), "1" if resume else "0"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def test_sigkill_mid_run_then_resume_matches_uninterrupted(tmp_path: Path) -> None:
    ref_dir, run_dir = tmp_path / "reference", tmp_path / "interrupted"
    ref = _run(ref_dir, False)
    victim = _run(run_dir, False)
    deadline = time.monotonic() + 120
    # wait until at least two epochs are checkpointed, then kill at once (mid-epoch 3+)
    while time.monotonic() < deadline:
        log = run_dir / "log.txt"
        if log.exists() and log.read_text().count("epoch ") >= 2:
            break
        assert victim.poll() is None, victim.stderr.read() if victim.stderr else ""
        time.sleep(0.02)
    time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    assert victim.wait() == -signal.SIGKILL
    assert not (run_dir / "validation_final.json").exists(), "run finished before the kill"
    killed_at = load_checkpoint(run_dir / "checkpoint_last.pt").meta.epoch
    assert 2 <= killed_at < 6
    resumed = _run(run_dir, True)
    _, err = resumed.communicate(timeout=180)
    assert resumed.returncode == 0, err.decode()
    _, err = ref.communicate(timeout=180)
    assert ref.returncode == 0, err.decode()
    a = load_checkpoint(ref_dir / "checkpoint_last.pt")
    b = load_checkpoint(run_dir / "checkpoint_last.pt")
    assert a.meta.epoch == b.meta.epoch == 6
    for k, v in a.state_dict.items():
        assert torch.allclose(v, b.state_dict[k], rtol=0, atol=1e-6), k
    fa = json.loads((ref_dir / "validation_final.json").read_text())["mean"]
    fb = json.loads((run_dir / "validation_final.json").read_text())["mean"]
    assert fa == fb
    # the CSV is rewritten from the checkpointed history: one row per epoch, no duplicates
    rows = (run_dir / "metrics.csv").read_text().strip().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == list(range(1, 7))
