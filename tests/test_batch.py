"""Batch runner without kernels: grid validation, run folders, references, offline HTML export, the index."""
from __future__ import annotations

import inspect
import json
import logging
import os
import re
from pathlib import Path

import nbformat
import plotly.graph_objects as go
import plotly.io as pio
import pytest
import yaml

from mplmm import metrics_file
from mplmm.plots import plotlyjs_source
from mplmm.workbench import batch, runs
from mplmm.workbench.batch import DependencyError, GridError, export_html, grid, load_grid, run_grid, write_index
from mplmm.workbench.batch.execute import failure_text

ROOT = Path(__file__).resolve().parents[1]
TRAIN_NB = "notebooks/01_train.ipynb"
ROB_NB = "notebooks/02_robustness.ipynb"


def _grid(**over) -> dict:
    spec = {
        "name": "t",
        "output_root": "papermill_runs/_unit",
        "defaults": {"dataset": "synthetic", "epochs": 1},
        "stages": [
            {"name": "pre", "notebook": TRAIN_NB, "params": {"model": "mult"}},
            {"name": "tune", "notebook": TRAIN_NB,
             "params": {"model": "mplmm", "stage": "prompt-tune", "pretrained": "{pre}/best.pt", "lr": "1e-3"},
             "grid": {"seed": [0, 1], "train_rate": [0.5]}},
            {"name": "rob", "notebook": ROB_NB,
             "params": {"checkpoints": ["{pre}/best.pt", "{tune}/best.pt"], "rates": [0.0, 1.0]}},
            {"name": "one", "notebook": ROB_NB, "params": {"checkpoints": "{tune[seed=1]}/best.pt"}},
        ],
    }
    spec.update(over)
    return spec


def _write(tmp_path: Path, spec: dict, name: str = "g.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_run_grid_signature():
    sig = inspect.signature(run_grid)
    for kw in ("jobs", "force", "no_input", "only", "gpus", "jobs_per_gpu", "executor", "slurm"):
        assert kw in sig.parameters
    assert sig.parameters["jobs"].default is None and sig.parameters["only"].default is None  # None: GPUs × k, else 1


def test_load_grid_runs_and_folders():
    g = load_grid(_grid(), root=ROOT)
    assert g.output_root == ROOT / "papermill_runs/_unit"
    assert [r.name for r in g.runs["tune"]] == ["tune__seed=0__train_rate=0.5", "tune__seed=1__train_rate=0.5"]
    assert [r.name for r in g.runs["pre"]] == ["pre"]
    tune0 = g.runs["tune"][0]
    params = batch.resolve_params(g, tune0, status=None)
    assert params["pretrained"] == "papermill_runs/_unit/pre/best.pt"
    assert params["lr"] == 0.001 and isinstance(params["lr"], float)  # PyYAML's "1e-3" string coerced
    assert params["dataset"] == "synthetic" and params["epochs"] == 1 and params["seed"] == 0
    assert params["output_dir"] == "papermill_runs/_unit/tune__seed=0__train_rate=0.5"
    rob = batch.resolve_params(g, g.runs["rob"][0], status=None)
    assert "epochs" not in rob  # defaults only reach notebooks that have the parameter
    assert rob["checkpoints"] == ["papermill_runs/_unit/pre/best.pt",
                                  "papermill_runs/_unit/tune__seed=0__train_rate=0.5/best.pt",
                                  "papermill_runs/_unit/tune__seed=1__train_rate=0.5/best.pt"]
    one = batch.resolve_params(g, g.runs["one"][0], status=None)
    assert one["checkpoints"] == ["papermill_runs/_unit/tune__seed=1__train_rate=0.5/best.pt"]  # str → list


def test_reference_to_the_run_with_my_seed():
    """``{stage[seed]}``: each run takes the earlier stage's run whose seed is its own (whole-pipeline seeds)."""
    spec = _grid()
    spec["stages"][0]["grid"] = {"seed": [0, 1]}
    spec["stages"][1]["params"]["pretrained"] = "{pre[seed]}/best.pt"
    spec["stages"][2]["params"]["checkpoints"] = ["{tune}/best.pt"]
    g = load_grid(spec, root=ROOT)
    got = [batch.resolve_params(g, r, status=None)["pretrained"] for r in g.runs["tune"]]
    assert got == ["papermill_runs/_unit/pre__seed=0/best.pt", "papermill_runs/_unit/pre__seed=1/best.pt"]
    spec["stages"][1]["grid"]["seed"] = [0, 2]  # no backbone with seed 2
    with pytest.raises(GridError, match=r"\{pre\[seed\]\} matches 0 runs"):
        load_grid(spec, root=ROOT)
    spec["stages"][1]["params"]["pretrained"] = "{pre[lr]}/best.pt"  # lr is a reference-free param of tune...
    spec["stages"][1]["grid"]["seed"] = [0, 1]
    with pytest.raises(GridError, match=r"matches 0 runs"):  # ...that no pre run has
        load_grid(spec, root=ROOT)
    spec["stages"][1]["params"]["pretrained"] = "{pre[nothing]}/best.pt"
    with pytest.raises(GridError, match=r"'nothing' \(this run's own value\) is not a plain parameter"):
        load_grid(spec, root=ROOT)


def test_list_reference_drops_failed_runs_and_scalar_reference_fails():
    g = load_grid(_grid(), root=ROOT)
    names = [r.name for r in g.runs["tune"]]
    status = {"pre": "ok", names[0]: "failed", names[1]: "ok"}
    rob = batch.resolve_params(g, g.runs["rob"][0], status=status)
    assert rob["checkpoints"] == ["papermill_runs/_unit/pre/best.pt", f"papermill_runs/_unit/{names[1]}/best.pt"]
    with pytest.raises(DependencyError, match="pre"):
        batch.resolve_params(g, g.runs["tune"][0], status={"pre": "failed"})
    with pytest.raises(DependencyError, match="not run"):
        batch.resolve_params(g, g.runs["tune"][0], status={})


#: grid mistakes and their one-line errors (<where>: unknown key 'x' ...; <where>: key 'x': expected ..., got ...)
INVALID_GRIDS = [
    (lambda s: s["stages"][0]["params"].update(epochz=3),
     r"g\.yaml: stage 'pre': params \(notebook notebooks/01_train\.ipynb\): unknown key 'epochz' "
     r"\(did you mean 'epochs'\?\); accepted: amp, "),
    (lambda s: s["stages"][1]["grid"].update(sead=[1]),
     r"g\.yaml: stage 'tune': grid \(notebook .*\): unknown key 'sead' \(did you mean 'seed'\?\)"),
    (lambda s: s["defaults"].update(bogus=1), r"g\.yaml: defaults: unknown key 'bogus'; accepted: "),
    (lambda s: s["stages"][0]["params"].update(output_dir="x"),
     r"stage 'pre': params: key 'output_dir': expected no value \(the runner sets it"),
    (lambda s: s["stages"][0].update(notebok="x"),
     r"stage 'pre': unknown key 'notebok' \(did you mean 'notebook'\?\); accepted: best_config, "),
    (lambda s: s.update(stagez=[]), r"g\.yaml: unknown key 'stagez' \(did you mean 'stages'\?\); accepted: defaults, "),
    (lambda s: s["stages"][0]["params"].update(pretrained="{tune[0]}/best.pt"), r"must name an EARLIER stage"),
    (lambda s: s["stages"][0]["params"].update(pretrained="{nope}/best.pt"), r"names no stage"),
    (lambda s: s["stages"][3]["params"].update(dataset="{tune}/x"), r"refers to 2 runs"),
    (lambda s: s["stages"][3]["params"].update(checkpoints="{tune[seed=7]}/b"), r"matches 0 runs"),
    (lambda s: s["stages"][3]["params"].update(checkpoints="{tune[5]}/b"), r"has 2 run"),
    (lambda s: s["stages"][0]["params"].update(epochs="many"),
     r"stage 'pre': params: key 'epochs': expected an integer, got 'many'"),
    (lambda s: s["stages"][0]["params"].update(model=3),
     r"stage 'pre': params: key 'model': expected a string \(quote it in the YAML\), got 3"),
    (lambda s: s["stages"][1]["grid"].update(seed=[]),
     r"stage 'tune': grid: key 'seed': expected a non-empty list of values, got \[\]"),
    (lambda s: s["stages"][1]["params"].update(seed=3),
     r"stage 'tune': key 'seed': expected a value in params or in grid, not both"),
    (lambda s: s["stages"][0].update(notebook="notebooks/nope.ipynb"), r"notebook 'notebooks/nope.ipynb' not found"),
    (lambda s: s["stages"].append(dict(s["stages"][0])), r"duplicate stage name"),
    (lambda s: s.update(reference=3),
     r"g\.yaml: key 'reference': expected a string or None \(a method name, e\.g\. mplmm\), got 3"),
    (lambda s: s.update(report={"standalon": True}),
     r"g\.yaml: report: unknown key 'standalon' \(did you mean 'standalone'\?\); accepted: no_input, standalone"),
    (lambda s: s.update(report={"no_input": "yes"}),
     r"g\.yaml: report: key 'no_input': expected true or false, got 'yes'"),
    (lambda s: s.update(stages=[]), r"g\.yaml: key 'stages': expected a non-empty list of stages, got \[\]"),
]


@pytest.mark.parametrize("mutate, pattern", INVALID_GRIDS)
def test_invalid_grids_fail_before_running(tmp_path, mutate, pattern):
    spec = _grid()
    mutate(spec)
    path = _write(tmp_path, spec)
    with pytest.raises(GridError, match=pattern):
        run_grid(path, root=ROOT)  # validation happens before any kernel starts
    assert not (ROOT / "papermill_runs/_unit").exists()


def test_unknown_only_stage(tmp_path):
    with pytest.raises(GridError, match="--only 'nope'"):
        run_grid(_write(tmp_path, _grid()), only="nope", root=ROOT)


def test_shipped_grids_parse():
    for name in ("demo", "tiny"):
        spec = yaml.safe_load((ROOT / f"papermill_runs/grids/{name}.yaml").read_text())
        stages = [s["name"] for s in spec["stages"]]
        assert spec["name"] == name and stages == ["pretrain", "tune", "baseline", "robustness", "attention",
                                                   "attributions"]
        if all((ROOT / s["notebook"]).is_file() for s in spec["stages"]):
            g = load_grid(ROOT / f"papermill_runs/grids/{name}.yaml", root=ROOT)
            assert len(g.runs["tune"]) == 2 and len(g.runs["baseline"]) == (4 if name == "demo" else 1)
            rob = batch.resolve_params(g, g.runs["robustness"][0], status=None)
            assert len(rob["checkpoints"]) == len(g.runs["tune"]) + len(g.runs["baseline"])


def test_safe_folder_names():
    assert grid._safe(0.7) == "0.7" and grid._safe("mplmm") == "mplmm"
    odd = grid._safe("data/my set/feat.npz")
    assert "/" not in odd and " " not in odd and re.fullmatch(r"[A-Za-z0-9._+-]+", odd)
    assert "__" not in grid._safe("a__b")
    assert grid._safe("data/a.npz") != grid._safe("data-a.npz")  # changed values carry a hash
    assert len(grid._safe("x" * 200)) <= 40


def _fake_notebook(tmp_path: Path) -> Path:
    fig = go.Figure(go.Scatter(x=[0, 1], y=[1, 2], name="trace-one"))
    html_out = pio.to_html(fig, include_plotlyjs=True, full_html=False)
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("secret_code_marker = 1\nfig")
    cell.outputs = [nbformat.v4.new_output("display_data", data={"text/html": html_out, "text/plain": "Figure"})]
    nb.cells = [nbformat.v4.new_markdown_cell("# Title"), cell]
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    return path


def _script_srcs(text: str) -> list[str]:
    return re.findall(r"<script[^>]*\bsrc\s*=\s*[\"']?([^\"' >]+)", text)


def test_export_html_is_offline(tmp_path):
    nb = _fake_notebook(tmp_path)
    out = export_html(nb, tmp_path / "r.html")
    text = out.read_text()
    assert _script_srcs(text) == []  # no require.js / MathJax / widget manager from a CDN
    assert "secret_code_marker" in text and "trace-one" in text and text.count("plotly.js v") == 1
    hidden = export_html(nb, tmp_path / "r2.html", no_input=True).read_text()
    assert "secret_code_marker" not in hidden and "trace-one" in hidden and "Title" in hidden


def test_export_html_loads_the_shared_plotlyjs(tmp_path):
    """A batch report loads plotly.js and its stylesheet by relative paths from the grid's _static/ and carries no
    copy of plotly.js of its own, even when the notebook's outputs embed one (a notebook run interactively)."""
    static = batch.shared_static(tmp_path / "out")
    js = static / "plotly.min.js"
    assert static == tmp_path / "out/_static" and js.read_bytes() == plotlyjs_source().read_bytes()
    mtime = js.stat().st_mtime_ns
    assert batch.shared_static(tmp_path / "out") and js.stat().st_mtime_ns == mtime  # copied once
    js.write_text("stale")
    batch.shared_static(tmp_path / "out")
    assert js.stat().st_size > 1_000_000  # a different file is replaced
    nb = _fake_notebook(tmp_path)
    assert nb.stat().st_size > 3_000_000  # the figure's output embeds plotly.js
    out = batch.export_html(nb, tmp_path / "out" / "run" / "report.html", static=static)
    text = out.read_text()
    (css,) = static.glob("report-*.css")
    assert _script_srcs(text) == ["../_static/plotly.min.js"] and "plotly.js v" not in text
    assert f'href="../_static/{css.name}"' in text and "<style" not in text[:text.index("</head>")]
    assert "trace-one" in text and "Plotly.newPlot" in text and out.stat().st_size < 100_000
    again = batch.export_html(nb, tmp_path / "out" / "run2" / "report.html", static=static).read_text()
    assert list(static.glob("report-*.css")) == [css] and f"../_static/{css.name}" in again  # one stylesheet
    assert batch.strip_plotlyjs("<p>no library here</p>") == "<p>no library here</p>"


def test_figures_stored_as_mime_bundles_are_drawn(tmp_path):
    """Batch runs store a figure only as the plotly mime bundle; the report draws it (a deterministic div id)."""
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("fig")
    figure = json.loads(pio.to_json(go.Figure(go.Bar(x=["a"], y=[2], name="bar-one"))))
    cell.outputs = [nbformat.v4.new_output("display_data", data={"application/vnd.plotly.v1+json": figure,
                                                                 "text/plain": "Figure"})]
    nb.cells = [cell]
    nbformat.write(nb, tmp_path / "mime.ipynb")
    text = batch.export_html(tmp_path / "mime.ipynb", tmp_path / "r.html").read_text()
    assert 'id="figure-0-0"' in text and "bar-one" in text and text.count("Plotly.newPlot") == 1
    assert text.count("plotly.js v") == 1 and _script_srcs(text) == []  # standalone: plotly.js embedded once


def test_setup_notebook_leaves_plotlyjs_out_for_the_batch(monkeypatch):
    """With MPLMM_PLOTLYJS=external (set by the runner in every kernel) figures are stored only as the plotly mime
    bundle (JupyterLab draws it; the report draws it with the shared plotly.js): no plotly.js, no second copy."""
    from mplmm.workbench.notebook import setup_notebook

    try:
        monkeypatch.setenv("MPLMM_PLOTLYJS", "external")
        monkeypatch.setenv("PLOTLY_RENDERER", "plotly_mimetype+notebook")  # as the kernelspec sets it
        setup_notebook()
        assert pio.renderers.default == "plotly_mimetype" and batch.RUN_ENV == {"MPLMM_PLOTLYJS": "external"}
        bundle = pio.renderers["plotly_mimetype"].to_mimebundle(go.Figure(go.Scatter(y=[1, 2])).to_dict())
        assert list(bundle) == ["application/vnd.plotly.v1+json"]
        with pytest.raises(ValueError, match="MPLMM_PLOTLYJS"):
            setup_notebook(plotlyjs="cdn")
    finally:
        setup_notebook(plotlyjs="embed")
    assert pio.renderers.default == "plotly_mimetype+notebook"


def _quick_grid(tmp_path: Path, **top) -> Path:
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "mplmm", "display_name": "Python (mplmm)",
                                                           "language": "python"}})
    cell = nbformat.v4.new_code_cell('value: int = 1  # a number\noutput_dir: str = "."  # run folder')
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell]
    nbformat.write(nb, tmp_path / "quick.ipynb")
    spec = {"name": "quick", "output_root": str(tmp_path / "out"),
            "stages": [{"name": "q", "notebook": str(tmp_path / "quick.ipynb"), "grid": {"value": [1, 2]}}], **top}
    return _write(tmp_path, spec)


def test_report_options_from_grid_and_flags(tmp_path, monkeypatch):
    """The grid's report: block sets no_input/standalone, a flag turns one on; a finished run's report is exported
    again (not re-run) when they change."""
    import papermill

    calls = []

    def fake_execute(src, dst, **kwargs):
        calls.append(dst)
        Path(dst).write_text(_fake_notebook(tmp_path).read_text())

    monkeypatch.setattr(papermill, "execute_notebook", fake_execute)
    grid = _quick_grid(tmp_path, report={"no_input": True})
    run_grid(grid, root=ROOT, progress=False)
    report = tmp_path / "out" / "q__value=1" / "report.html"
    text = report.read_text()
    assert len(calls) == 2 and "secret_code_marker" not in text and _script_srcs(text) == ["../_static/plotly.min.js"]
    status = runs.read_status(report.parent)
    assert status["no_input"] is True and status["standalone"] is False
    assert runs.read_grid_record(tmp_path / "out")["report"] == {"no_input": True, "standalone": False}
    run_grid(grid, root=ROOT, progress=False, standalone=True)
    text = report.read_text()
    assert len(calls) == 2 and _script_srcs(text) == [] and text.count("plotly.js v") == 1
    assert runs.read_status(report.parent)["standalone"] is True
    assert batch.report_options(load_grid(grid, root=ROOT), no_input=False) == {"no_input": False,
                                                                                "standalone": False}


def test_batch_command_passes_report_flags(tmp_path, monkeypatch):
    from mplmm.cli import main

    seen = {}
    monkeypatch.setattr(batch, "run_grid", lambda *a, **kw: seen.update(kw) or tmp_path / "index.html")
    assert main(["batch", "g.yaml", "--standalone"]) == 0
    assert seen["standalone"] is True and seen["no_input"] is None  # None: the grid's report: block decides
    assert main(["batch", "g.yaml", "--no-input"]) == 0 and seen["no_input"] is True and seen["standalone"] is None


def test_report_command_writes_a_standalone_file(tmp_path, capsys):
    from mplmm.cli import main

    nb = _fake_notebook(tmp_path)
    assert main(["report", str(nb), "--no-input"]) == 0
    text = (tmp_path / "nb.html").read_text()
    assert text.count("plotly.js v") == 1 and _script_srcs(text) == [] and "secret_code_marker" not in text
    assert "standalone" in capsys.readouterr().out


def _atomic_write_keeps_umask(tmp_path: Path) -> bool:
    from mplmm.utils import atomic_write

    old = os.umask(0o022)
    try:
        probe = atomic_write(tmp_path / "probe", lambda tmp: Path(tmp).write_text("x"))
    finally:
        os.umask(old)
    return probe.stat().st_mode & 0o044 == 0o044


def test_runner_files_respect_the_umask(tmp_path, monkeypatch):
    """Under umask 022 a colleague can read what the runner writes (status, metrics, reports, index, plotly.js).

    Needs mplmm.utils.atomic_write to keep the umask (it made 0600 files through tempfile.mkstemp); that fix is on
    the branch splitting mplmm/utils: until it is merged this test reports XFAIL (only for that cause)."""
    import papermill

    def fake_execute(src, dst, **kwargs):
        Path(dst).write_text(_fake_notebook(tmp_path).read_text())
        metrics_file.write_metrics(Path(dst).parent, {"key_metrics": {"x": 1.0}})

    monkeypatch.setattr(papermill, "execute_notebook", fake_execute)
    old = os.umask(0o022)
    try:
        run_grid(_quick_grid(tmp_path), root=ROOT, progress=False)
    finally:
        os.umask(old)
    out = tmp_path / "out"
    files = [out / "q__value=1" / n for n in ("status.json", "metrics.json", "report.html", "notebook.ipynb")]
    files += [out / "index.html", out / "index.csv", out / "grid.json", out / "_static" / "plotly.min.js",
              *(out / "_static").glob("report-*.css")]
    unreadable = {str(f.relative_to(out)): oct(f.stat().st_mode & 0o777) for f in files
                  if f.stat().st_mode & 0o044 != 0o044}
    if unreadable and not _atomic_write_keeps_umask(tmp_path):
        pytest.xfail(f"mplmm.utils.atomic_write still makes 0600 files (fixed on the utils branch): {unreadable}")
    assert not unreadable, f"not group/other-readable under umask 022: {unreadable}"


def test_failed_run_report_has_a_banner(tmp_path):
    nb = _fake_notebook(tmp_path)
    text = export_html(nb, tmp_path / "r.html", failure="DataError (cell 3): x.npz: key 'audio' <missing>").read_text()
    assert "This run FAILED" in text and "DataError (cell 3)" in text and "&lt;missing&gt;" in text
    assert text.index("This run FAILED") < text.index("trace-one")
    assert "This run FAILED" not in export_html(nb, tmp_path / "ok.html").read_text()
    assert failure_text({"status": "ok"}) is None
    assert failure_text({"status": "failed", "error": {"name": "E", "message": "m", "cell": 2}}) == "E (cell 2): m"


def test_execute_run_waits_for_late_outputs(tmp_path, monkeypatch):
    """papermill fails a run whose cell outputs arrive > 4 s after the cell's reply; runs must wait longer."""
    import papermill

    seen = {}

    def fake_execute(src, dst, **kwargs):
        seen.update(kwargs)
        logging.getLogger("papermill").warning("Timeout waiting for IOPub output")  # as nbclient logs it
        Path(dst).write_text(_fake_notebook(tmp_path).read_text())

    monkeypatch.setattr(papermill, "execute_notebook", fake_execute)
    status = batch.execute_run(_job(tmp_path))
    assert status["status"] == "ok" and (tmp_path / "run" / "report.html").is_file()
    assert seen["iopub_timeout"] >= 60 and seen["raise_on_iopub_timeout"] is True
    assert "Timeout waiting for IOPub output" in (tmp_path / "run" / "log.txt").read_text()  # warnings kept


def _job(tmp_path: Path, name: str = "run", **extra) -> dict:
    return {"folder": str(tmp_path / name), "stage": "s", "notebook": "nb.ipynb", "params": {}, "point": {},
            "no_input": False, "kernel": "python3", "root": str(tmp_path), **extra}


def test_execute_run_retries_only_machinery_failures(tmp_path, monkeypatch):
    import papermill
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    calls = []

    def flaky(errors):
        def fake_execute(src, dst, **kwargs):
            calls.append(dst)
            if len(calls) <= len(errors):
                raise errors[len(calls) - 1]
            Path(dst).write_text(_fake_notebook(tmp_path).read_text())
        return fake_execute

    monkeypatch.setattr(papermill, "execute_notebook", flaky([DeadKernelError("Kernel died")]))
    status = batch.execute_run(_job(tmp_path))
    assert status["status"] == "ok" and status["error"] is None and status["attempts"] == 2 and len(calls) == 2
    assert status["retried_after"][0]["name"] == "DeadKernelError"
    assert "attempt 1 of 2 failed (DeadKernelError)" in (tmp_path / "run" / "log.txt").read_text()

    for exc in (DeadKernelError("again"), DeadKernelError("and again")), (RuntimeError("Kernel didn't respond in 60 seconds"),) * 2:
        calls.clear()
        monkeypatch.setattr(papermill, "execute_notebook", flaky(list(exc)))
        status = batch.execute_run(_job(tmp_path, "twice"))  # one retry, then the failure stands
        assert status["status"] == "failed" and status["attempts"] == 2 and len(calls) == 2

    hung = CellTimeoutError("A cell timed out while it was being executed, after 5 seconds.")
    notebook_error = papermill.PapermillExecutionError(3, 3, "x = 1", "ValueError", "bad value", [])
    for i, exc in enumerate((hung, notebook_error, RuntimeError("some other failure"))):
        calls.clear()
        monkeypatch.setattr(papermill, "execute_notebook", flaky([exc]))
        status = batch.execute_run(_job(tmp_path, f"once{i}"))
        assert status["status"] == "failed" and status["attempts"] == 1 and len(calls) == 1, exc
    assert status["error"]["name"] == "RuntimeError"
    calls.clear()
    monkeypatch.setattr(papermill, "execute_notebook", flaky([DeadKernelError("x")]))
    assert batch.execute_run(_job(tmp_path, "no_retry", retries=0))["status"] == "failed" and len(calls) == 1
    assert batch.is_transient(CellTimeoutError("... The message was: Timeout waiting for IOPub output."))


def test_write_index_with_robustness_and_failures(tmp_path):
    spec = _grid(output_root=str(tmp_path / "out"))
    g = load_grid(spec, root=ROOT)
    from mplmm.utils import write_json

    for run in g.all_runs():
        run.folder.mkdir(parents=True)
    write_json(g.runs["pre"][0].folder / "status.json", {"status": "ok", "duration_s": 1.5, "params": {"model": "mult"}})
    write_json(g.runs["pre"][0].folder / "metrics.json",
               {"primary_metric": "Acc", "test": {"Acc": 0.75, "loss": 0.5, "MAE": 1.0}})
    (g.runs["pre"][0].folder / "report.html").write_text("<html></html>")
    write_json(g.runs["tune"][0].folder / "status.json",
               {"status": "failed", "duration_s": 2.0, "error": {"name": "DataError", "message": "no such <file>"}})
    curves = [{"method": m, "seed": s, "rate": r, "mask_seed": 0, "Acc": 0.8 - 0.3 * r + 0.01 * s}
              for m in ("mult", "mplmm") for s in (0, 1) for r in (0.0, 1.0)]
    write_json(g.runs["rob"][0].folder / "status.json", {"status": "ok", "duration_s": 3.0})
    write_json(g.runs["rob"][0].folder / "metrics.json",
               {"metric": "Acc", "curves": curves,
                "auc_summary": [{"method": "mult", "auc_mean": 0.66, "auc_std": 0.0, "n_seeds": 2}]})
    index = write_index(g)
    text = index.read_text()
    assert index == tmp_path / "out" / "index.html"
    assert "plotly.js v" not in text and text.count("Plotly.newPlot") == 1  # plotly.js: the shared copy
    assert _script_srcs(text) == ["_static/plotly.min.js"] and (tmp_path / "out/_static/plotly.min.js").is_file()
    assert re.search(r'"name":\s*"mplmm -std"', text) and "robustness-figure" in text
    assert '<table class="leaderboard">' in text and "Acc @0" in text and "AUC Acc" in text
    assert 'href="pre/report.html"' in text and "test.Acc = 0.7500" in text and "AUC mult = 0.6600" in text
    assert "no such &lt;file&gt;" in text  # escaped error message
    import pandas as pd

    csv = pd.read_csv(tmp_path / "out" / "index.csv")
    assert len(csv) == len(g.all_runs())
    row = csv.set_index("run").loc["pre"]
    assert row["status"] == "ok" and row["test.Acc"] == 0.75 and json.loads(row["params"]) == {"model": "mult"}
    assert csv.set_index("run").loc["one", "status"] == "not run"


def test_index_draws_one_robustness_figure_per_dataset(tmp_path):
    """Curves of different datasets (or metrics) never share an axis: one figure each, plotly.js embedded once."""
    from mplmm.utils import write_json

    g = load_grid(_grid(output_root=str(tmp_path / "out")), root=ROOT)
    for run, dataset, metric in ((g.runs["rob"][0], "synthetic", "Non0_acc_2"), (g.runs["one"][0], "iemocap_x", "Acc")):
        run.folder.mkdir(parents=True)
        write_json(run.folder / "status.json", {"status": "ok", "duration_s": 1.0})
        curves = [{"method": "mplmm", "seed": 0, "rate": r, "mask_seed": 0, metric: 0.8 - 0.3 * r} for r in (0.0, 1.0)]
        write_json(run.folder / "metrics.json", {"metric": metric, "protocol": "modality", "curves": curves,
                                                 "dataset": {"name": dataset}})
    figures = batch.robustness_overviews(g)
    titles = sorted(f.layout.title.text for f in figures)
    assert len(figures) == 2 and "Acc vs" in titles[0] and "iemocap_x" in titles[0] and "synthetic" in titles[1]
    assert all(len({t.name for t in f.data if not t.name.endswith("std")}) == 1 for f in figures)
    text = write_index(g).read_text()
    assert "plotly.js v" not in text and text.count("Plotly.newPlot") == 2 and len(_script_srcs(text)) == 1
    assert 'id="robustness-figure"' in text and 'id="robustness-figure-2"' in text
    g.report = {"standalone": True}  # one self-contained file: plotly.js embedded once, no script src
    text = write_index(g).read_text()
    assert text.count("plotly.js v") == 1 and text.count("Plotly.newPlot") == 2 and _script_srcs(text) == []


def test_is_done_requires_same_params(tmp_path):
    g = load_grid(_grid(output_root=str(tmp_path / "o")), root=ROOT)
    run = g.runs["pre"][0]
    run.folder.mkdir(parents=True)
    (run.folder / "notebook.ipynb").write_text("{}")
    (run.folder / "status.json").write_text(json.dumps({"status": "ok", "params": {"a": 1.0}}))
    assert batch.is_done(run, {"a": 1.0}) and not batch.is_done(run, {"a": 2.0})


def test_key_metrics_conventions():
    from mplmm.workbench.batch import key_metrics

    assert key_metrics({"key_metrics": {"acc": 0.5, "note": "x"}, "test": {"Acc": 0.1}}) == {"acc": 0.5}
    assert key_metrics({"primary_metric": "Non0_acc_2", "test": {"Non0_acc_2": 0.7, "MAE": 1.0, "Corr": 0.3}}) == {
        "test.Non0_acc_2": 0.7, "test.MAE": 1.0}
    assert key_metrics({"auc_summary": [{"method": "m", "auc_mean": 0.6}]}) == {"AUC m": 0.6}
    assert key_metrics({"n_samples": 16, "gap": 0.1, "flag": True}, exclude={"n_samples"}) == {"gap": 0.1}


def test_index_shows_results_by_observed_pattern(tmp_path):
    """Runs that recorded ``by_pattern`` (notebooks 02 and 07) get one table: patterns with counts against runs, the
    seeds of one method averaged; runs without it and failed runs add nothing."""
    from mplmm.utils import write_json
    from mplmm.workbench.batch.index import pattern_frame

    g = load_grid(_grid(output_root=str(tmp_path / "out")), root=ROOT)
    for run in g.all_runs():
        run.folder.mkdir(parents=True)
    rob, one = g.runs["rob"][0], g.runs["one"][0]
    records = [{"method": "mplmm", "seed": s, "pattern": p, "n": n, "Acc": a + 0.1 * s}
               for s in (0, 1) for p, n, a in (("complete", 6, 0.5), ("vision missing", 2, 0.25))]
    write_json(rob.folder / "status.json", {"status": "ok", "duration_s": 1.0})
    write_json(rob.folder / "metrics.json", {"metric": "Acc", "by_pattern": records,
                                             "key_metrics": {"clips": 63, "failed": 0, "share": 0.5}})
    write_json(one.folder / "status.json", {"status": "failed", "duration_s": 1.0})
    write_json(one.folder / "metrics.json", {"metric": "Acc", "by_pattern": records})
    frame = pattern_frame(g)
    assert len(frame) == 4 and set(frame["run"]) == {rob.name}
    text = write_index(g).read_text()
    section = text[text.index("By observed pattern"):text.index("<h2>Runs</h2>")]
    assert "vision missing" in section and "0.3000" in section and "0.5500" in section  # means over the two seeds
    assert f"{rob.name} · mplmm" in section
    assert "clips = 63<br>failed = 0<br>share = 0.5000" in text  # counts stay counts
