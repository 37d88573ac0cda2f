"""scripts/results_tables.py: rewrites docs/results/<grid>.md from a grid's output folder, and only then."""
from __future__ import annotations

import importlib.util
from pathlib import Path

from test_leaderboard import _metrics

from mplmm import metrics_file
from mplmm.workbench import runs

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("results_tables", ROOT / "scripts" / "results_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_published_tables_carry_their_provenance():
    for grid in _script().GRIDS:
        text = (ROOT / "docs" / "results" / f"{grid}.md").read_text(encoding="utf-8")
        assert f"papermill_runs/grids/{grid}.yaml" in text and "python -m mplmm table" in text
        assert "| method |" in text


def test_rewrites_only_grids_with_an_output_folder(tmp_path, capsys):
    script = _script()
    out = tmp_path / "results"
    out.mkdir()
    (out / "compare.md").write_text("published\n")
    root = tmp_path / "papermill_runs"
    metrics_file.write_metrics(root / "ablation_mosi" / "robustness", _metrics())
    runs.write_status(root / "ablation_mosi" / "robustness", {"status": "ok"})
    runs.write_grid_record(root / "ablation_mosi", {"name": "ablation_mosi", "reference": "mplmm"})
    assert script.main(["--root", str(root), "--out", str(out), "--date", "2030-01-02"]) == 0
    assert (out / "compare.md").read_text() == "published\n"          # no output folder: kept as published
    assert not (out / "tune_mosi.md").exists()
    text = (out / "ablation_mosi.md").read_text()
    assert ("--rates 0 0.7 1 --metrics MAE` from the runs of `papermill_runs/grids/ablation_mosi.yaml`, "
            "2030-01-02.") in text
    assert "| mplmm (reference) |" in text and "Δ" in text                # the leaderboard and the paired comparison
    assert "compare: no" in capsys.readouterr().out
    script.main(["--root", str(root), "--out", str(out), "--date", "2030-02-03", "ablation_mosi"])
    assert "2030-02-03" in (out / "ablation_mosi.md").read_text()         # a rerun replaces the file
