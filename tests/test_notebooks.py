"""Notebooks under papermill and the batch runner end to end (real kernels; a few minutes on 2 CPU cores).

The ``tiny.yaml`` grid runs once per session (``tiny_batch``) and the tests inspect what it left behind: both of our
notebooks ran through it with tiny parameters (01_train: pretrain + prompt-tune, 02_robustness: three checkpoints).
"""
from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import nbformat
import pandas as pd
import papermill as pm
import pytest
import yaml

import notebook_checks as C
from mplmm.workbench.batch import ensure_kernel, run_grid
from mplmm.workbench.notebook import find_checkpoints

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "papermill_runs" / "grids" / "tiny.yaml"
OURS = ("notebooks/01_train.ipynb", "notebooks/02_robustness.ipynb")


def _script_srcs(text: str) -> list[str]:
    return re.findall(r"<script[^>]*\bsrc\s*=\s*[\"']?([^\"' >]+)", text)


@pytest.fixture(scope="session")
def kernel() -> str:
    return ensure_kernel()


@pytest.fixture(scope="session")
def tiny_batch(tmp_path_factory, kernel):
    """Run tiny.yaml (into a temporary output_root) once; stages whose notebook does not exist yet are dropped."""
    base = tmp_path_factory.mktemp("tiny")
    spec = yaml.safe_load(TINY.read_text())
    spec["output_root"] = str(base / "out")
    dropped = [s["name"] for s in spec["stages"] if not (ROOT / s["notebook"]).is_file()]
    spec["stages"] = [s for s in spec["stages"] if s["name"] not in dropped]
    grid = base / "tiny.yaml"
    grid.write_text(yaml.safe_dump(spec, sort_keys=False))
    t0 = time.time()
    index = run_grid(grid, jobs=2, root=ROOT, progress=False)
    return {"index": index, "out": base / "out", "grid": grid, "spec": spec, "dropped": dropped,
            "seconds": time.time() - t0}


def _status(folder: Path) -> dict:
    return json.loads((folder / "status.json").read_text())


@pytest.mark.notebook
def test_tiny_grid_all_ok(tiny_batch):
    out = tiny_batch["out"]
    index = pd.read_csv(out / "index.csv")
    expected = len(tiny_batch["spec"]["stages"]) + 1  # every stage runs once, tune twice (seed 0, 1)
    assert len(index) == expected
    failed = index[index["status"] != "ok"]
    assert failed.empty, failed[["run", "error"]].to_string()
    assert tiny_batch["index"] == out / "index.html" and tiny_batch["index"].is_file()
    for run in index["run"]:
        folder = out / run
        assert (folder / "report.html").is_file() and (folder / "notebook.ipynb").is_file()
        nb = nbformat.read(folder / "notebook.ipynb", as_version=4)
        assert nb.metadata.papermill.parameters["output_dir"] == str(folder)
        assert nb.metadata.kernelspec.name == "mplmm"


@pytest.mark.notebook
def test_every_run_passes_its_notebook_checks(tiny_batch):
    """What each notebook recorded passes the checks that used to close it (tests/notebook_checks.py)."""
    out = tiny_batch["out"]
    stages = {s["name"]: s["notebook"] for s in tiny_batch["spec"]["stages"]}
    index = pd.read_csv(out / "index.csv")
    for run, stage in zip(index["run"], index["stage"]):
        nb = Path(stages[stage]).name
        if nb.startswith("01_"):
            C.check_train(out / run)
        elif nb.startswith("02_"):
            C.check_robustness(out / run)
        elif nb.startswith("03_"):
            C.check_attention(out / run, n_samples=32, split_size=160)
        elif nb.startswith("04_"):
            C.check_attributions(out / run)


@pytest.mark.notebook
def test_train_runs_wrote_metrics(tiny_batch):
    out = tiny_batch["out"]
    pre = json.loads((out / "pretrain" / "metrics.json").read_text())
    assert pre["model"] == "mult" and pre["epochs_run"] == 1 and pre["config"]["train_rate"] == 0.0
    assert 0 <= pre["test"]["Non0_acc_2"] <= 1 and pre["parameters"]["frozen"] == 0
    for seed in (0, 1):
        folder = out / f"tune__seed={seed}"
        tune = json.loads((folder / "metrics.json").read_text())
        assert tune["model"] == "mplmm" and tune["config"]["seed"] == seed and tune["config"]["train_rate"] == 0.7
        assert tune["config"]["pretrained"].endswith("pretrain/best.pt") and tune["parameters"]["frozen"] > 0
        assert 0 <= tune["test"][tune["primary_metric"]] <= 1
        assert (folder / "best.pt").is_file() and (folder / "history.csv").is_file()


@pytest.mark.notebook
def test_train_notebook_live_plot_and_panel(tiny_batch):
    """01's live plot leaves one figure (the final one) in its cell, the batch run's notebook carries no plotly.js
    (JupyterLab draws the mime bundle, the report loads the shared copy), and the notebook ends with the
    missing-modality explorer panel."""
    folder = tiny_batch["out"] / "pretrain"
    nb = nbformat.read(str(folder / "notebook.ipynb"), as_version=4)
    epochs = json.loads((folder / "metrics.json").read_text())["epochs_run"]
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    assert "plotly.js v" not in (folder / "notebook.ipynb").read_text()
    live = next(c for c in code_cells if "live = show(" in c.source)
    assert len(live.outputs) == 1, [o.get("output_type") for o in live.outputs]
    fig = live.outputs[0]["data"]["application/vnd.plotly.v1+json"]
    train_trace = next(t for t in fig["data"] if t.get("name") == "train_loss")
    x = train_trace["x"]
    n_points = len(x) if isinstance(x, list) else int(str(x.get("shape", "0")).split(",")[0])
    assert n_points == epochs, (n_points, epochs)
    last = code_cells[-1]
    assert "build_missing_explorer_panel" in last.source
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in last.outputs)


@pytest.mark.notebook
def test_interpretation_runs_report_key_metrics(tiny_batch):
    """03/04 put headline numbers in metrics.json["key_metrics"], and the batch index shows them."""
    out = tiny_batch["out"]
    index = pd.read_csv(out / "index.csv").set_index("run")
    expected = {"attention": "prompt share (last layer)", "attributions": "share text (complete)"}
    for run, key in expected.items():
        if not (out / run).is_dir():
            pytest.skip(f"tiny grid has no {run} stage")
        km = json.loads((out / run / "metrics.json").read_text())["key_metrics"]
        assert key in km and 0 <= km[key] <= 1, km
        assert index.loc[run, key] == pytest.approx(km[key])


@pytest.mark.notebook
def test_reports_load_one_shared_plotlyjs(tiny_batch):
    """Every report and the index load the grid's one _static/plotly.min.js by a relative path (nothing from a CDN,
    no copy of their own), the reports one shared stylesheet: a run folder's report.html + notebook.ipynb stays
    under 1 MB."""
    out = tiny_batch["out"]
    static = sorted(p.name for p in (out / "_static").iterdir())
    assert len(static) == 2 and static[0] == "plotly.min.js" and re.fullmatch(r"report-\w{12}\.css", static[1])
    for html_file in [out / "index.html", *sorted(out.glob("*/report.html"))]:
        text = html_file.read_text(encoding="utf-8")
        srcs = _script_srcs(text)
        assert "plotly.js v" not in text and len(srcs) == 1, (html_file, srcs)
        assert (html_file.parent / srcs[0]).resolve() == (out / "_static" / "plotly.min.js").resolve()
        assert "Plotly.newPlot" in text
        assert html_file.name == "index.html" or f'href="../_static/{static[1]}"' in text
    sizes = {p.parent.name: p.stat().st_size + (p.parent / "notebook.ipynb").stat().st_size
             for p in out.glob("*/report.html")}
    assert sizes and max(sizes.values()) < 1_000_000, sizes


@pytest.mark.notebook
def test_robustness_run_and_combined_figure(tiny_batch):
    out = tiny_batch["out"]
    rob = json.loads((out / "robustness" / "metrics.json").read_text())
    methods = {r["method"] for r in rob["curves"]}
    assert methods == {"mult_zero", "mplmm"} and rob["metric"] == "Non0_acc_2"
    assert {r["seed"] for r in rob["curves"] if r["method"] == "mplmm"} == {0, 1}
    assert len(rob["curves"]) == 3 * 3 * 1 and {r["mode"] for r in rob["per_mode"]} == set(range(7))
    assert {r["method"] for r in rob["auc_summary"]} == methods
    assert len(pd.read_csv(out / "robustness" / "robustness.csv")) == len(rob["curves"])
    report = (out / "robustness" / "report.html").read_text(encoding="utf-8")
    index = (out / "index.html").read_text(encoding="utf-8")
    for text in (report, index):
        assert re.search(r'"name":\s*"mplmm \+std"', text) and re.search(r'"name":\s*"mult_zero"', text)
    assert "robustness-figure" in index and "AUC mplmm" in index
    assert rob["schema"] == "mplmm-metrics/1"  # written through mplmm.metrics_file
    assert "mplmm (reference)" in index and '<table class="comparison">' in index and "per-mode-heatmap" in index
    assert 'href="robustness/report.html"' in index and 'href="tune__seed=0/notebook.ipynb"' in index


@pytest.mark.notebook
def test_rerun_skips_finished_runs(tiny_batch):
    out = tiny_batch["out"]
    before = {p: p.stat().st_mtime_ns for p in out.glob("*/notebook.ipynb")}
    index = run_grid(tiny_batch["grid"], root=ROOT, progress=False)
    assert index.is_file()
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/notebook.ipynb")} == before
    assert all(_status(p.parent)["status"] == "ok" for p in before)


QUICK_NB = {
    "cells": [
        {"cell_type": "code", "metadata": {"tags": ["parameters"]}, "execution_count": None, "outputs": [],
         "source": 'value: int = 1  # a number\noutput_dir: str = "."  # run folder', "id": "p"},
        {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [], "id": "w",
         "source": "import json, pathlib\n"
                   "pathlib.Path(output_dir, 'metrics.json').write_text(json.dumps({'value': value}))"},
    ],
    "metadata": {"kernelspec": {"name": "mplmm", "display_name": "Python (mplmm)", "language": "python"}},
    "nbformat": 4, "nbformat_minor": 5,
}


@pytest.mark.notebook
def test_failing_run_is_recorded_and_batch_continues(tmp_path, kernel):
    quick = tmp_path / "quick.ipynb"
    quick.write_text(json.dumps(QUICK_NB))
    spec = {
        "name": "failing",
        "output_root": str(tmp_path / "out"),
        "stages": [
            {"name": "bad", "notebook": "notebooks/01_train.ipynb",
             "params": {"dataset": str(tmp_path / "no_such_data.npz"), "epochs": 1}},
            {"name": "after_bad", "notebook": "notebooks/02_robustness.ipynb",
             "params": {"checkpoints": ["{bad}/best.pt"]}},
            {"name": "good", "notebook": str(quick), "grid": {"value": [1, 2]}},
        ],
    }
    grid = tmp_path / "failing.yaml"
    grid.write_text(yaml.safe_dump(spec))
    index = run_grid(grid, root=ROOT, progress=False)
    out = tmp_path / "out"
    bad = _status(out / "bad")
    assert bad["status"] == "failed" and bad["error"]["name"] == "DataError"
    assert "no_such_data.npz" in bad["error"]["message"] and bad["duration_s"] > 0
    bad_report = (out / "bad" / "report.html").read_text()  # the failed notebook is still rendered, and says so
    assert "This run FAILED" in bad_report and "DataError" in bad_report
    assert "This run FAILED" not in (out / "good__value=1" / "report.html").read_text()
    dep = _status(out / "after_bad")
    assert dep["status"] == "failed" and dep["error"]["name"] == "DependencyError"
    for v in (1, 2):
        assert _status(out / f"good__value={v}")["status"] == "ok"
        assert json.loads((out / f"good__value={v}" / "metrics.json").read_text()) == {"value": v}
    csv = pd.read_csv(out / "index.csv").set_index("run")
    assert csv.loc["bad", "status"] == "failed" and "DataError" in csv.loc["bad", "error"]
    assert csv.loc["good__value=2", "status"] == "ok" and csv.loc["good__value=2", "grid.value"] == 2
    assert "DataError" in index.read_text()
    # --only with --force re-runs one stage and leaves the others alone
    mtime = (out / "bad" / "status.json").stat().st_mtime_ns
    run_grid(grid, root=ROOT, progress=False, only="good", force=True)
    assert (out / "bad" / "status.json").stat().st_mtime_ns == mtime
    assert _status(out / "good__value=1")["status"] == "ok"


@pytest.mark.notebook
def test_robustness_notebook_standalone(tmp_path, kernel):
    """02 with no checkpoints trains its own tiny mult -> mplmm; metrics.json and robustness.csv land in output_dir."""
    out = tmp_path / "rob"
    pm.execute_notebook(str(ROOT / OURS[1]), str(tmp_path / "rob.ipynb"), kernel_name=kernel, cwd=str(ROOT),
                        progress_bar=False, parameters={"output_dir": str(out), "rates": [0.0, 1.0],
                                                        "mask_seeds": [0], "device": "cpu"})
    metrics = C.check_robustness(out)
    assert {r["method"] for r in metrics["curves"]} == {"mplmm"} and len(metrics["curves"]) == 2
    assert all(0 <= r["Non0_acc_2"] <= 1 for r in metrics["curves"])
    assert (out / "robustness.csv").is_file() and (out / "standalone" / "demo_mplmm.pt").is_file()


@pytest.mark.notebook
def test_tuning_notebook_standalone_then_on_that_journal(tmp_path, kernel):
    """05 with no journal tunes a tiny model itself (validation objective, test never evaluated) and shows the study;
    pointed at that journal and a study by part of its name, it shows the same study without training."""
    out = tmp_path / "tuning"
    pm.execute_notebook(str(ROOT / "notebooks/05_tuning.ipynb"), str(tmp_path / "a.ipynb"), kernel_name=kernel,
                        cwd=str(ROOT), progress_bar=False,
                        parameters={"output_dir": str(out), "trials": 3, "epochs": 1})
    first = C.check_tuning(out)
    assert first["key_metrics"]["trials"] == 3 and first["study"] == "notebook/mult_dropout"
    assert set(first["best_params"]) == {"lr", "batch_size", "model_config.out_dropout"}
    again = tmp_path / "again"
    pm.execute_notebook(str(ROOT / "notebooks/05_tuning.ipynb"), str(tmp_path / "b.ipynb"), kernel_name=kernel,
                        cwd=str(ROOT), progress_bar=False,
                        parameters={"output_dir": str(again), "journal": str(out), "study": "mult_dropout"})
    second = C.check_tuning(again)
    assert second["best_params"] == first["best_params"] and not (again / "optuna_journal.log").exists()


def test_find_checkpoints_groups_methods(tmp_path):
    from mplmm.checkpoint import save_checkpoint
    from mplmm.models import create_model

    model = create_model("mult", dims=(4, 3, 2), seq_lens=(5, 5, 5), output_dim=1, d=4, num_heads=2, layers=1)
    for folder, seed in (("pre", 0), ("base__seed=0", 0), ("base__seed=1", 1), ("x__model=m__seed=2", 2)):
        save_checkpoint(tmp_path / folder / "best.pt", model, train_config={"seed": seed})
    table = find_checkpoints([str(tmp_path / "pre" / "best.pt"), str(tmp_path / "base__seed=*" / "best.pt")])
    assert table["method"].tolist() == ["mult (pre)", "mult (base)", "mult (base)"]
    assert table["seed"].tolist() == [0, 0, 1] and table["run"].tolist()[1] == "base__seed=0"
    single = find_checkpoints(str(tmp_path / "x__model=m__seed=2" / "best.pt"))
    assert single["method"].tolist() == ["mult"] and single["seed"].tolist() == [2]
    from mplmm.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match="no checkpoint matches"):
        find_checkpoints(str(tmp_path / "nothing*" / "best.pt"))


def test_find_checkpoints_names_ablations_by_their_config(tmp_path):
    """Runs of one model that differ in model keys (an ablation grid) are named by the keys they change."""
    from mplmm.checkpoint import save_checkpoint
    from mplmm.models import create_model

    shape = dict(dims=(4, 3, 2), seq_lens=(2, 2, 2), output_dim=1, d=4, num_heads=2, layers=1)
    variants = {"abl__model_config-full": {}, "abl__model_config-nogen": {"generative_prompts": False},
                "abl__model_config-p4": {"prompt_length": 4}}
    for folder, switches in variants.items():
        for seed in (0, 1):
            save_checkpoint(tmp_path / f"{folder}__seed={seed}" / "best.pt", create_model("mplmm", **shape, **switches),
                            train_config={"seed": seed})
    table = find_checkpoints(str(tmp_path / "abl__*" / "best.pt"))
    assert sorted(set(table["method"])) == ["mplmm", "mplmm (generative_prompts=False)", "mplmm (prompt_length=4)"]
    assert table.groupby("method")["seed"].apply(sorted).tolist() == [[0, 1]] * 3
    # same configuration in two differently named folders: told apart by folder, never pooled
    save_checkpoint(tmp_path / "other" / "best.pt", create_model("mplmm", **shape), train_config={"seed": 0})
    both = find_checkpoints([str(tmp_path / "abl__model_config-full__seed=0" / "best.pt"),
                             str(tmp_path / "other" / "best.pt")])
    assert both["method"].tolist() == ["mplmm (abl__model_config-full)", "mplmm (other)"]


@pytest.mark.notebook
def test_run_whose_kernel_dies_once_is_run_again(tmp_path, kernel):
    """A real kernel death (os._exit on the first attempt) is retried once; the second attempt succeeds."""
    nb = json.loads(json.dumps(QUICK_NB))
    nb["cells"].insert(1, {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [], "id": "k",
                           "source": "import os, pathlib\n"
                                     "marker = pathlib.Path(output_dir, 'died_once')\n"
                                     "if not marker.exists():\n"
                                     "    marker.write_text('x')\n"
                                     "    os._exit(1)"})
    path = tmp_path / "dies.ipynb"
    path.write_text(json.dumps(nb))
    grid = tmp_path / "dies.yaml"
    grid.write_text(yaml.safe_dump({"name": "dies", "output_root": str(tmp_path / "out"),
                                    "stages": [{"name": "dies", "notebook": str(path)}]}))
    run_grid(grid, root=ROOT, progress=False)
    status = _status(tmp_path / "out" / "dies")
    assert status["status"] == "ok" and status["attempts"] == 2, status
    assert status["retried_after"][0]["name"] == "DeadKernelError"
    assert json.loads((tmp_path / "out" / "dies" / "metrics.json").read_text()) == {"value": 1}
