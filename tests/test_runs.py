"""The run-folder contract (mplmm.workbench.runs, mplmm.metrics_file): metrics.json schema, writers and readers,
status, scanning."""
from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mplmm import metrics_file
from mplmm.workbench import runs

ROOT = Path(__file__).resolve().parents[1]


def test_write_metrics_stamps_the_schema_and_reads_back(tmp_path):
    path = metrics_file.write_metrics(tmp_path / "run", {"model": "mult", "test": {"MAE": np.float32(0.5)},
                                                 "rates": np.array([0.0, 1.0]), "schema": "old"})
    assert path == tmp_path / "run" / "metrics.json"
    saved = json.loads(path.read_text())
    assert list(saved)[0] == "schema" and saved["schema"] == metrics_file.METRICS_SCHEMA == "mplmm-metrics/1"
    assert saved["test"] == {"MAE": 0.5} and saved["rates"] == [0.0, 1.0]
    assert metrics_file.read_metrics(tmp_path / "run") == saved == metrics_file.read_metrics(path)
    assert metrics_file.metrics_version(saved) == metrics_file.SCHEMA_VERSION == 1
    # a .json path is the file
    assert metrics_file.write_metrics(tmp_path / "other.json", {}) == tmp_path / "other.json"
    assert not list((tmp_path / "run").glob(".*.tmp"))  # atomic: no temporary file left


def test_read_metrics_tolerates_old_missing_and_broken_files(tmp_path, caplog):
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "metrics.json").write_text(json.dumps({"model": "mult", "test": {"MAE": 1.0}}))
    old = metrics_file.read_metrics(tmp_path / "old")
    assert old["model"] == "mult" and metrics_file.metrics_version(old) == 0
    assert metrics_file.read_metrics(tmp_path / "nope") == {}
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "metrics.json").write_text("[1, 2")
    assert metrics_file.read_metrics(tmp_path / "bad") == {}
    (tmp_path / "bad" / "metrics.json").write_text("[1, 2]")
    assert metrics_file.read_metrics(tmp_path / "bad") == {}
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "metrics.json").write_text(json.dumps({"schema": "mplmm-metrics/9", "model": "x"}))
    with caplog.at_level(logging.WARNING, logger="mplmm.metrics_file"):
        assert metrics_file.read_metrics(tmp_path / "new")["model"] == "x"
    assert "mplmm-metrics/9" in caplog.text


@pytest.mark.parametrize("metrics, pattern", [
    ({"test": [0.5]}, r"^metrics: key 'test': expected a mapping or None, got \[0\.5\]$"),
    ({"key_metrics": 0.3}, r"^metrics: key 'key_metrics': expected a mapping or None, got 0\.3$"),
    ({"dataset": 3}, r"^metrics: key 'dataset': expected a mapping or a string or None, got 3$"),
    ({"metric": "Acc", "curves": [{"method": "m", "seed": 0, "rate": 0.0}]},
     r"^metrics: key 'curves\[0\]': expected a record with columns method, seed, rate, Acc, got \{'method'"),
    ({"per_mode": [{"method": "m", "mode": 6}]},
     r"^metrics: key 'per_mode\[0\]': expected a record with columns method, seed, mode, got "),
    ({"auc_summary": ["x"]},
     r"^metrics: key 'auc_summary\[0\]': expected a record with columns method, auc_mean, got 'x'"),
])
def test_write_metrics_refuses_schema_breaks(tmp_path, metrics, pattern):
    with pytest.raises(metrics_file.MetricsError, match=pattern):
        metrics_file.write_metrics(tmp_path, metrics)
    assert not (tmp_path / "metrics.json").exists()


def test_notebook_write_metrics_goes_through_runs(tmp_path):
    from mplmm.workbench.notebook import write_metrics

    path = write_metrics(tmp_path / "out" / "metrics.json", {"key_metrics": {"a": 1.0}})
    assert json.loads(path.read_text())["schema"] == metrics_file.METRICS_SCHEMA
    with pytest.raises(metrics_file.MetricsError):
        write_metrics(tmp_path / "out", {"key_metrics": [1.0]})


def test_every_schema_key_and_file_name_is_documented():
    doc = (ROOT / "docs" / "runs.md").read_text()
    assert metrics_file.METRICS_SCHEMA in doc
    undocumented = [k for k in metrics_file.METRICS_KEYS if not re.search(rf"\|\s*`{k}`\s*\|", doc)]
    assert not undocumented, f"docs/runs.md has no table row for {undocumented}"
    names = [runs.NOTEBOOK, runs.REPORT, runs.STATUS, metrics_file.METRICS, runs.LOG, runs.HISTORY, runs.INDEX_HTML,
             runs.INDEX_CSV, runs.GRID_JSON, runs.PLOTLYJS]
    missing = [n for n in names if not re.search(rf"`(?:[\w./-]*/)?{re.escape(n)}`", doc)]
    assert not missing, f"docs/runs.md does not name {missing}"


def test_status_and_grid_record(tmp_path):
    assert runs.read_status(tmp_path / "run") == {}
    runs.write_status(tmp_path / "run", {"status": "ok", "params": {"a": 1}})
    assert runs.read_status(tmp_path / "run") == {"status": "ok", "params": {"a": 1}}
    assert runs.read_grid_record(tmp_path) == {}
    runs.write_grid_record(tmp_path, {"reference": "mplmm"})
    assert runs.read_grid_record(tmp_path)["reference"] == "mplmm"


def _run_tree(tmp_path: Path) -> Path:
    run = tmp_path / "grid" / "mplmm_p0.5"
    metrics_file.write_metrics(run, {"model": "mplmm", "primary_metric": "MAE",
                                     "test": {"MAE": 0.8, "Corr": float("nan")},
                                     "notes": "x", "nested": {"a": {"b": {"c": {"d": 1.0}}}}})
    pd.DataFrame({"epoch": [1, 2], "valid_loss": [1.0, 0.9]}).to_csv(run / "history.csv", index=False)
    (tmp_path / "empty").mkdir()
    only_history = tmp_path / "hist_only"
    only_history.mkdir()
    pd.DataFrame({"epoch": [1]}).to_csv(only_history / "history.csv", index=False)
    return run


def test_find_runs_and_load_run(tmp_path):
    run = _run_tree(tmp_path)
    table = runs.find_runs(tmp_path)
    assert list(table["run"]) == ["grid/mplmm_p0.5", "hist_only"]
    row = table.set_index("run").loc["grid/mplmm_p0.5"]
    assert row["test.MAE"] == 0.8 and row["primary_metric"] == "MAE" and row["model"] == "mplmm"
    assert "test.Corr" not in table and not any(c.startswith("nested.") for c in table)  # NaN; depth > 3
    assert not table.set_index("run").loc["hist_only", "has_metrics"]
    hist, metrics = runs.load_run(run)
    assert list(hist["valid_loss"]) == [1.0, 0.9] and metrics["model"] == "mplmm"
    assert runs.find_runs(tmp_path / "nope").empty and list(runs.find_runs(tmp_path / "nope").columns)[:2] == [
        "run", "path"]
    assert runs.load_run(tmp_path / "empty")[0].empty
    assert runs.flatten_metrics({"a": {"b": 1, "c": True, "d": "x"}, "e": np.float64(2.5)}) == {"a.b": 1.0, "e": 2.5}
