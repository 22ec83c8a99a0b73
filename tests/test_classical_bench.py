"""The classical-baseline benchmark runs (``--smoke``: the shipped spleen CT and a synthetic
lesion volume), prints one table, and scores a network's predictions through its hook."""

from __future__ import annotations

import importlib.util
import shutil
import sys

from support.paths import REPO, SAMPLE


def load_bench():
    spec = importlib.util.spec_from_file_location(
        "bench_classical", REPO / "bench" / "bench_classical.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def test_smoke_table_and_network_hook(tmp_path, capsys) -> None:
    bench = load_bench()
    net = tmp_path / "net"
    net.mkdir()
    shutil.copy(SAMPLE / "spleen_ct_label.nii.gz", net / "spleen_2.nii.gz")  # a perfect "network"
    assert bench.main(["--smoke", "--network-predictions", str(net)]) == 0
    out = capsys.readouterr().out
    rows = [r.split("|")[1:-1] for r in out.splitlines() if r.startswith("| ")][1:]
    by = {(c[0].strip(), c[1].strip()): [x.strip() for x in c] for c in rows}
    growing = by[("spleen CT (MSD crop)", "region growing 60-160 (+ same post)")]
    assert float(growing[3]) > 0.9 and float(growing[4]) < 30  # Dice, HD95 mm
    assert by[("spleen CT (MSD crop)", "network")][3] == "1.000"
    assert growing[7].startswith("-")  # Dice relative to the (perfect) network
    lesions = by[("synthetic lesions (smoke)", "k-means K=3, brightest, > 0.01 mL")]
    assert float(lesions[3]) > 0.9 and float(lesions[5]) > 0.9  # Dice, lesion-wise Dice
