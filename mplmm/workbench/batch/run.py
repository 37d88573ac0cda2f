"""Running a whole grid: stage order, skip-done, the executors, the progress bar, then the index."""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Optional, Sequence, Union

from .. import runs
from ..tuning import apply_values
from . import tune as T
from .execute import ensure_kernel, error_text, failed_status, is_done
from .grid import DependencyError, Grid, GridError, Run
from .index import write_index
from .load import load_grid
from .references import resolve_params
from .report import export_html, shared_static


def report_options(g: Grid, no_input: Optional[bool] = None, standalone: Optional[bool] = None) -> dict[str, bool]:
    """The report options of a run of ``g``: each argument given (not None) overrides the grid's ``report:`` block;
    unset ones are false."""
    given = {"no_input": no_input, "standalone": standalone}
    return {k: bool(v if v is not None else g.report.get(k, False)) for k, v in given.items()}


def _refresh_report(run: Run, no_input: bool, static: Optional[str]) -> None:
    """Export a finished run's report again when it is missing or was made with other options."""
    prev = runs.read_status(run.folder)
    wanted = {"no_input": no_input, "standalone": static is None}
    if (run.folder / runs.REPORT).is_file() and all(prev.get(k) == v for k, v in wanted.items()):
        return
    export_html(run.folder / runs.NOTEBOOK, run.folder / runs.REPORT, no_input, static=static)
    runs.write_status(run.folder, {**prev, **wanted})


def _resolve(g: Grid, run: Run, status: dict, counts: dict, bar) -> Optional[dict]:
    """The run's parameters, or None after recording it as failed because a run it needs failed."""
    try:
        return resolve_params(g, run, status)
    except DependencyError as exc:
        failed_status(run, {}, exc, g.report["no_input"])
        status[run.name] = "failed"
        counts["failed"] += 1
        bar.update(1)
        return None


def _skip(g: Grid, run: Run, static: Optional[str], status: dict, counts: dict, bar) -> None:
    _refresh_report(run, g.report["no_input"], static)
    status[run.name] = "ok"
    counts["skipped"] += 1
    bar.update(1)


def _job(g: Grid, run: Run, params: dict, kernel: str, static: Optional[str], force: bool) -> dict:
    """The picklable job of one run (its folder cleared first with ``force``)."""
    if force and run.folder.is_dir() and g.output_root in run.folder.parents:
        shutil.rmtree(run.folder)
    return {"folder": str(run.folder), "stage": run.stage.name, "notebook": str(run.stage.notebook),
            "params": params, "point": run.keys, "kernel": kernel, "root": str(g.root),
            "no_input": g.report["no_input"], "static": static, "timeout": run.stage.timeout}


def _record(run: Run, st: dict, status: dict, counts: dict, bar) -> None:
    status[run.name] = st["status"]
    counts[st["status"]] = counts.get(st["status"], 0) + 1
    bar.update(1)
    if st["status"] != "ok":
        bar.write(f"FAILED {run.name}: {error_text(st.get('error') or {})}")


def _run_tuning(g: Grid, stage, runner, kernel: str, static: Optional[str], status: dict, counts: dict, bar,
                force: bool) -> None:
    """Run a tuning stage in waves: wave k runs trial k of every study (grid point) at once, each drawn by its
    study's seeded sampler from the trials before it, and tells each study its run's validation objective."""
    groups = T.studies_of(g, stage)
    if force:
        T.reset_studies(g, groups)
    studies = {T.base_name(grp[0]): T.open_study(g, grp[0]) for grp in groups}  # refuses a changed setup
    for wave in range(stage.tune.trials):
        items, preps = [], {}
        for grp in groups:
            run = grp[wave]
            params = _resolve(g, run, status, counts, bar)
            if params is None:
                continue
            study = studies[T.base_name(run)]
            prep = T.prepare_trial(g, study, run)
            params = apply_values(params, prep.values)
            if not force and is_done(run, params):
                if prep.state != "COMPLETE":  # finished, but the study was not told (interrupted just then)
                    T.tell(study, prep, {"status": "ok"})
                _skip(g, run, static, status, counts, bar)
                continue
            items.append((run, _job(g, run, params, kernel, static, force=False)))
            preps[run.name] = (study, prep)
        for run, st in runner.run(items):
            study, prep = preps[run.name]
            problem = T.tell(study, prep, st)
            if problem:
                bar.write(f"TRIAL FAILED {run.name}: {problem}")
            _record(run, st, status, counts, bar)


def run_grid(grid: Union[str, os.PathLike, dict], jobs: Optional[int] = None, force: bool = False,
             no_input: Optional[bool] = None, only: Optional[str] = None, root: Union[str, os.PathLike, None] = None,
             progress: bool = True, gpus: Union[str, Sequence[Union[int, str]], None] = None, jobs_per_gpu: int = 1,
             executor: str = "local", slurm: Optional[dict] = None, standalone: Optional[bool] = None) -> Path:
    """Run every stage of ``grid`` (a YAML path or dict) in order; returns the path of ``<output_root>/index.html``.

    ``jobs``: runs of one stage executed in parallel processes (threads per run = cores // jobs; default: GPUs ×
    ``jobs_per_gpu`` when there are GPUs, else 1). ``gpus``: GPUs the runs take turns on (``"0,1"`` or a list; default
    every visible GPU; ``"none"``: no GPU pool), at most ``jobs_per_gpu`` runs per GPU, each kernel seeing only its
    GPU. ``executor``: ``"local"``, ``"slurm"`` (one submitit job array per stage) or ``"slurm-local"`` (the same
    through submitit's local executor); ``slurm``: settings overriding the grid's ``slurm:`` block (see
    :mod:`mplmm.workbench.batch.executors`). ``force``: re-run finished runs (their folders are cleared first).
    ``no_input``: hide code in the HTML reports; ``standalone``: reports and index embed plotly.js (and the reports
    their stylesheet) instead of loading them from the grid's ``_static/`` (both default to the grid's ``report:``
    block, else false; finished runs get their report exported again when these change). ``only``: run just that stage
    (earlier stages must have finished).
    ``root``: working directory of the kernels and base of relative paths (default: the current directory).
    """
    from tqdm.auto import tqdm

    from .executors import make_executor  # looked up per call (tests replace it)

    g = load_grid(grid, root)
    if only is not None and only not in g.runs:
        raise GridError(f"{g.path}: --only {only!r}: no such stage; stages: {[s.name for s in g.stages]}")
    g.report = report_options(g, no_input, standalone)
    runner = make_executor(executor, g, jobs, gpus, jobs_per_gpu, slurm)
    kernel = ensure_kernel()
    g.output_root.mkdir(parents=True, exist_ok=True)
    static = None if g.report["standalone"] else str(shared_static(g.output_root))
    status: dict[str, str] = {r.name: runs.read_status(r.folder).get("status", "") for r in g.all_runs()}
    todo_stages = [s for s in g.stages if only is None or s.name == only]
    counts = {"ok": 0, "failed": 0, "skipped": 0}
    bar = tqdm(total=sum(len(g.runs[s.name]) for s in todo_stages), desc=g.name, unit="run",
               disable=not progress, file=sys.stderr)
    try:
        for stage in todo_stages:
            bar.set_description(f"{g.name}:{stage.name}")
            if stage.tune is not None:
                _run_tuning(g, stage, runner, kernel, static, status, counts, bar, force)
                continue
            jobs_list: list[tuple[Run, dict]] = []
            for run in g.runs[stage.name]:
                params = _resolve(g, run, status, counts, bar)
                if params is None:
                    continue
                if not force and is_done(run, params):
                    _skip(g, run, static, status, counts, bar)
                    continue
                jobs_list.append((run, _job(g, run, params, kernel, static, force)))
            for run, st in runner.run(jobs_list):
                _record(run, st, status, counts, bar)
    finally:
        bar.close()
        runner.close()
    index = write_index(g)
    print(f"{g.name}: {counts['ok']} ran ok, {counts['failed']} failed, {counts['skipped']} already done "
          f"→ {index}")
    return index
