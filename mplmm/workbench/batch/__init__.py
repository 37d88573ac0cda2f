"""Papermill batch runner: a YAML grid of notebook stages → executed notebooks, offline HTML reports, an index.

A grid file lists **stages**, run in order; each stage runs one notebook over the product of its ``grid`` (or once).
Later stages refer to earlier runs' folders with ``{stage}`` (a single run), ``{stage[0]}`` (by position) or
``{stage[seed=1]}`` (by grid values); inside a **list** parameter, ``"{stage}/best.pt"`` expands to one entry per run
of that stage::

    name: demo                                # default: the file name
    output_root: papermill_runs/demo          # default: papermill_runs/<name>
    defaults: {dataset: synthetic, epochs: 4} # given to every stage whose notebook has that parameter
    stages:
      - name: pretrain
        notebook: notebooks/01_train.ipynb
        params: {model: mult, stage: pretrain}
      - name: tune
        notebook: notebooks/01_train.ipynb
        params: {model: mplmm, stage: prompt-tune, pretrained: "{pretrain}/best.pt", train_rate: 0.7}
        grid: {seed: [0, 1]}
      - name: robustness
        notebook: notebooks/02_robustness.ipynb
        params: {checkpoints: ["{pretrain}/best.pt", "{tune}/best.pt"]}
    reference: mplmm                          # the index compares every method with this one
    report: {no_input: false, standalone: false}

Every run gets ``<output_root>/<stage>[__<key>=<value>...]/`` (grid keys only) holding ``notebook.ipynb`` (executed),
``report.html`` (offline: plotly.js and the stylesheet loaded from the grid's shared ``<output_root>/_static/``, or
embedded once with ``standalone``; no CDN scripts), ``status.json`` (ok/failed, error, duration, params), ``log.txt`` (kernel
output) and whatever the notebook writes to its ``output_dir`` (injected = the run folder); file names are in
:mod:`mplmm.workbench.runs`, the ``metrics.json`` schema in :mod:`mplmm.metrics_file`. ``<output_root>/index.html`` and
``index.csv`` list every run, with
a leaderboard per dataset and protocol of the robustness runs. A failed run is recorded and the batch goes
on; runs that depend on it fail with ``DependencyError``. Re-running skips runs whose ``status.json`` says ok with the
same parameters, unless ``force``. Relative paths (notebooks, data, ``output_root``) resolve from ``root`` (default:
the current directory), which is also the kernels' working directory. Runs execute on this machine (one GPU each when
there are GPUs) or as one Slurm job array per stage: see :mod:`mplmm.workbench.batch.executors`.

Modules, each importing only those before it: :mod:`.grid` (data types, parsing), :mod:`.report` (HTML export,
plotly.js), :mod:`.execute` (one run: kernel, papermill, retries), :mod:`.executors` (local, Slurm), :mod:`.tune`
(tuning stages), :mod:`.references` (references between stages), :mod:`.load` (:func:`load_grid`: parsing and every
check), :mod:`.leaderboard`, :mod:`.index` and :mod:`.run` (:func:`run_grid`).
"""
from __future__ import annotations

from .execute import (IOPUB_TIMEOUT_S, KERNEL_ENV, KERNEL_NAME, RUN_ENV, TRANSIENT_RETRIES, ensure_kernel,
                      execute_run, failed_status, is_done, is_transient)
from .grid import DEFAULT_CELL_TIMEOUT, DependencyError, Grid, GridError, Run, Stage
from .index import index_frame, key_metrics, robustness_groups, robustness_overviews, write_index
from .leaderboard import build_leaderboard, markdown_for
from .load import load_grid
from .references import resolve_params
from .report import export_html, plotlyjs_tag, shared_static, strip_plotlyjs
from .run import report_options, run_grid

__all__ = [
    "DEFAULT_CELL_TIMEOUT", "DependencyError", "Grid", "GridError", "IOPUB_TIMEOUT_S", "KERNEL_ENV", "KERNEL_NAME",
    "RUN_ENV", "Run", "Stage", "TRANSIENT_RETRIES", "build_leaderboard", "ensure_kernel", "execute_run", "export_html",
    "failed_status", "index_frame", "is_done", "is_transient", "key_metrics", "load_grid", "markdown_for",
    "plotlyjs_tag", "report_options", "resolve_params", "robustness_groups", "robustness_overviews", "run_grid",
    "shared_static", "strip_plotlyjs", "write_index",
]
