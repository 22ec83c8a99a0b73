"""Resume after a hard kill, through the default training route (disk-cached, augmenting
loader): a training subprocess is SIGKILLed in the middle of its third epoch (it waits there,
so the kill cannot come too late), resumed, and must end with the weights, validation metrics
and history of an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from support.plans import write_training_run

from medseg.checkpoint import load_checkpoint

SCRIPT = r"""
import sys, time
from pathlib import Path
from medseg.training.config import load_train_config
from medseg.runtime import DistInfo
from medseg.training.loop import fit
from medseg.training.setup import fold_cases, fold_inputs, prepare_run


class PauseInThirdEpoch:
    '''The fold's loader, pausing after the first batch of the third epoch.'''

    def __init__(self, inner, marker):
        self.inner, self.marker, self.epoch = inner, Path(marker), 0

    def set_epoch(self, epoch):
        self.epoch = epoch
        self.inner.set_epoch(epoch)

    def __len__(self):
        return len(self.inner)

    def __iter__(self):
        for i, batch in enumerate(self.inner):
            yield batch
            if self.epoch == 2 and i == 0:
                self.marker.touch()
                time.sleep(600)

    def close(self):
        self.inner.close()


def run(cfg_path, out, resume, marker=None):
    cfg = load_train_config(cfg_path)
    info = DistInfo()
    r = prepare_run(cfg, Path(out), need_splits=True)
    loader, validation = fold_inputs(r, fold_cases(r, 0), info)
    if marker is not None:
        loader = PauseInThirdEpoch(loader, marker)
    return fit(cfg, r.plan, loader, Path(out) / "fold_0", validation=validation,
               resume=resume, fold=0, info=info)


if __name__ == "__main__":
    run(sys.argv[1], sys.argv[2], False, sys.argv[3])
"""


def _load_script() -> dict[str, object]:
    ns: dict[str, object] = {"__name__": "resume_script"}
    exec(SCRIPT, ns)
    return ns


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(tmp_path: Path) -> None:
    cfg = write_training_run(
        tmp_path,
        n_cases=3,
        shape=(20, 20, 16),
        seed=3,
        n_folds=3,
        epochs=6,
        iterations_per_epoch=3,
        val_every=3,
        plan_overrides={"network": {"base_filters": 4, "max_filters": 8}},
        data={"augment": True},
    )
    ref_dir, run_dir = tmp_path / "reference", tmp_path / "interrupted"
    marker = tmp_path / "paused"
    victim = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(cfg), str(run_dir), str(marker)],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    run = _load_script()["run"]
    threads = torch.get_num_threads()
    try:
        full = run(cfg, ref_dir, False)  # type: ignore[operator]
        deadline = time.monotonic() + 300
        while not marker.exists() and victim.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert marker.exists(), victim.stderr.read().decode() if victim.stderr else ""
        victim.send_signal(signal.SIGKILL)
        assert victim.wait() == -signal.SIGKILL
        fold_dir = run_dir / "fold_0"
        assert not (fold_dir / "validation_final.json").exists()
        assert load_checkpoint(fold_dir / "checkpoint_last.pt").meta.epoch == 2
        resumed = run(cfg, run_dir, True)  # type: ignore[operator]
    finally:
        torch.set_num_threads(threads)
        if victim.poll() is None:
            victim.kill()
        victim.wait()
        if victim.stderr is not None:
            victim.stderr.close()
    a = load_checkpoint(ref_dir / "fold_0" / "checkpoint_last.pt")
    b = load_checkpoint(run_dir / "fold_0" / "checkpoint_last.pt")
    assert a.meta.epoch == b.meta.epoch == 6
    for k, v in a.state_dict.items():
        assert torch.allclose(v, b.state_dict[k], rtol=0, atol=1e-6), k
    assert resumed.final_metrics == full.final_metrics  # type: ignore[attr-defined]
    fa = json.loads((ref_dir / "fold_0" / "validation_final.json").read_text())["mean"]
    fb = json.loads((run_dir / "fold_0" / "validation_final.json").read_text())["mean"]
    assert fa == fb
    assert [r["train_loss"] for r in resumed.history] == [  # type: ignore[attr-defined]
        r["train_loss"]
        for r in full.history  # type: ignore[attr-defined]
    ]
    # the CSV is rewritten from the checkpointed history: one row per epoch, no duplicates
    rows = (run_dir / "fold_0" / "metrics.csv").read_text().strip().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == list(range(1, 7))
    assert not list(run_dir.rglob("*.part*"))  # nothing half-written left behind
