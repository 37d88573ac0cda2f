"""scripts/gpu_smoke.sh parses and its Python helpers work, on CPU (the real run needs a GPU; the CPU dry run of the
whole script is a slow test)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from mplmm.checkpoint import save_checkpoint
from mplmm.models import create_model

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_smoke.sh"


def _helper(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_smoke.py"), *args], capture_output=True,
                          text=True, timeout=300)


def test_script_parses():
    assert subprocess.run(["bash", "-n", str(SCRIPT)]).returncode == 0


def test_same_numbers_and_same_weights(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"loss": 1.0, "MAE": 0.5, "Acc_2": 0.7, "spec": {"rate": 0.5}}))
    (tmp_path / "b.json").write_text(json.dumps({"loss": 1.00001, "MAE": 0.5, "Acc_2": 0.6, "spec": {"rate": 0.5}}))
    a, b = str(tmp_path / "a.json"), str(tmp_path / "b.json")
    assert _helper("same-numbers", a, b, "1e-4").returncode == 1  # Acc_2 differs by 0.1
    ok = _helper("same-numbers", a, b, "1e-4", "loss,MAE")
    assert ok.returncode == 0 and "of 2 numbers" in ok.stdout.splitlines()[-1]
    model = create_model("mult", dims=(3, 3, 3), seq_lens=(2, 2, 2), d=6, num_heads=2, layers=1)
    save_checkpoint(tmp_path / "x.pt", model)
    save_checkpoint(tmp_path / "y.pt", model)
    assert _helper("same-weights", str(tmp_path / "x.pt"), str(tmp_path / "y.pt")).stdout.strip().endswith(
        "= 0 (tolerance 0)")
    with torch.no_grad():
        model.backbone.proj1.bias.add_(1e-3)
    save_checkpoint(tmp_path / "y.pt", model)
    assert _helper("same-weights", str(tmp_path / "x.pt"), str(tmp_path / "y.pt")).returncode == 1


def test_grid_files_and_bench_summary(tmp_path):
    assert _helper("grid", str(tmp_path), "cuda").returncode == 0
    spec = yaml.safe_load((tmp_path / "grid.yaml").read_text())
    assert spec["defaults"]["device"] == "cuda" and spec["output_root"] == str(tmp_path / "runs")
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "index.csv").write_text("run,status\npretrain,ok\ntune,error\n")
    failed = _helper("grid-check", str(tmp_path))
    assert failed.returncode == 1 and failed.stdout.strip() == "1/2 grid runs ok"
    log = tmp_path / "bench.log"
    log.write_text("...\ntrain_samples_per_s=700.5 infer_samples_per_s=6000.1 peak_rss_mb=900 peak_gpu_mb=2100 "
                   "epoch_s=1.834 targets=pass\n")
    res = _helper("bench", str(log))
    assert res.returncode == 0 and res.stdout.strip() == \
        "train 700/s, infer 6000/s, peak 2100 MiB, epoch 1.834 s, targets pass"
    log.write_text(log.read_text().replace("targets=pass", "targets=fail"))
    assert _helper("bench", str(log)).returncode == 1


@pytest.mark.slow
def test_cpu_dry_run_prints_a_table_of_ok_rows(tmp_path):
    res = subprocess.run(["bash", str(SCRIPT), "--cpu-dry-run"], capture_output=True, text=True, timeout=900,
                         env={**os.environ, "PY": sys.executable, "OUT": str(tmp_path)})
    assert res.returncode == 0, res.stdout + res.stderr
    rows = [line for line in res.stdout.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(rows) == 10 and all("| ok: " in row for row in rows), rows
    assert (tmp_path / "summary.md").read_text().strip().endswith(f"0 row(s) failed; logs and runs in {tmp_path}")
