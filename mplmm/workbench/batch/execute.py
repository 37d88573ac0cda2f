"""Executing one run: the Jupyter kernel, papermill with retries of machinery failures, status.json, the report."""
from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Iterator, Optional

from .. import runs
from ..notebook import PLOTLYJS_ENV
from .grid import Run
from .report import export_html

KERNEL_NAME = "mplmm"
KERNEL_DISPLAY_NAME = "Python (mplmm)"
KERNEL_ENV = {"PLOTLY_RENDERER": "plotly_mimetype+notebook", "TQDM_DISABLE": "1", "PYTHONHASHSEED": "0"}
# After a cell's reply, how long its last outputs may take to arrive before the run fails. papermill's default, 4 s,
# is too short on a loaded 2-core machine (a notebook run outside the batch carries plotly.js, ~4.7 MB, in its setup
# cell's output).
IOPUB_TIMEOUT_S = 120
TRANSIENT_RETRIES = 1  # a run whose kernel died / did not start / lost outputs is run once more (see is_transient)
#: set in every run's kernel: its figures carry no plotly.js, the report loads it
#: (mplmm.workbench.notebook.setup_notebook)
RUN_ENV = {PLOTLYJS_ENV: "external"}


def ensure_kernel(name: str = KERNEL_NAME) -> str:
    """Make sure a kernelspec ``name`` exists (register one for this interpreter if not); returns the name to use.

    Tries ``sys.prefix`` (like ``python -m ipykernel install --sys-prefix``), then a private folder put on
    ``JUPYTER_PATH`` (read-only environments). The kernel gets ``PLOTLY_RENDERER``/``TQDM_DISABLE``/
    ``PYTHONHASHSEED`` in its environment.
    """
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec(name)
        return name
    except NoSuchKernel:
        pass
    from ipykernel.kernelspec import install

    try:
        install(kernel_name=name, display_name=KERNEL_DISPLAY_NAME, prefix=sys.prefix, env=dict(KERNEL_ENV))
    except OSError:
        import tempfile

        private = Path(tempfile.gettempdir()) / f"mplmm-jupyter-{os.getuid() if hasattr(os, 'getuid') else 0}"
        install(kernel_name=name, display_name=KERNEL_DISPLAY_NAME, prefix=str(private), env=dict(KERNEL_ENV))
        share = str(private / "share" / "jupyter")
        os.environ["JUPYTER_PATH"] = os.pathsep.join(p for p in (share, os.environ.get("JUPYTER_PATH")) if p)
    KernelSpecManager().get_kernel_spec(name)
    return name


@contextlib.contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def _log_warnings_to(stream: Any) -> Iterator[None]:
    """Copy papermill's / nbclient's warnings (e.g. a lost cell output) into the run's ``log.txt``."""
    handler = logging.StreamHandler(stream)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("[%(name)s] %(levelname)s %(message)s"))
    logger = logging.getLogger("papermill")
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


def is_transient(exc: BaseException) -> bool:
    """True for failures of the machinery rather than of the notebook: the kernel died or did not start, or a cell's
    outputs never arrived. ``execute_run`` runs the notebook again after one (a training run resumes from last.pt)."""
    name, text = type(exc).__name__, str(exc)
    if name == "DeadKernelError":
        return True
    if name == "CellTimeoutError":
        return "IOPub" in text  # the per-cell execution timeout (a hung cell) is not retried
    return name == "RuntimeError" and ("Kernel didn't respond" in text or "Kernel died before replying" in text)


def error_text(err: dict, with_cell: bool = False) -> str:
    """``name: message`` of a status' ``error`` (``name (cell N): message`` with ``with_cell``)."""
    cell = f" (cell {err['cell']})" if with_cell and err.get("cell") is not None else ""
    return f"{err.get('name')}{cell}: {err.get('message')}"


def failure_text(status: dict) -> Optional[str]:
    """One line naming a failed run's error (None for a run that did not fail)."""
    if status.get("status") != "failed":
        return None
    return error_text(status.get("error") or {"name": "error", "message": ""}, with_cell=True)


def shorten(text: str, limit: int = 500) -> str:
    """``text`` without terminal colour codes, cut to ``limit`` characters."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(text)).strip()
    return text if len(text) <= limit else text[:limit - 3] + "..."


def execute_run(job: dict) -> dict:
    """Execute one run (a picklable ``job`` dict) and return its status; never raises for notebook errors.

    ``job``: ``folder``, ``stage``, ``notebook``, ``params``, ``point``, ``kernel``, ``root``, ``no_input``, and
    optionally ``timeout`` (per cell), ``retries``, ``env``, ``gpu``, ``slurm`` and ``static`` (the grid's
    ``_static/`` folder whose plotly.js and stylesheet the report loads; without it the report embeds them).
    """
    import papermill as pm

    folder = Path(job["folder"])
    nb_out = folder / runs.NOTEBOOK
    folder.mkdir(parents=True, exist_ok=True)
    status = {"run": folder.name, "stage": job["stage"], "notebook": job["notebook"], "params": job["params"],
              "point": job["point"], "status": "running", "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
              "no_input": job["no_input"], "standalone": not job.get("static"), "error": None,
              "gpu": job.get("gpu")}
    if job.get("slurm"):
        status["slurm"] = job["slurm"]
    runs.write_status(folder, status)
    t0 = time.time()
    env = {**{k: v for k, v in KERNEL_ENV.items() if k not in os.environ}, **RUN_ENV, **job.get("env", {})}
    attempts = 1 + max(int(job.get("retries", TRANSIENT_RETRIES)), 0)
    with _environ(env), open(folder / runs.LOG, "w") as log, _log_warnings_to(log):
        for attempt in range(1, attempts + 1):
            status["attempts"] = attempt
            try:
                pm.execute_notebook(job["notebook"], str(nb_out), parameters=job["params"], kernel_name=job["kernel"],
                                    cwd=job["root"], progress_bar=False, log_output=False, stdout_file=log,
                                    stderr_file=log, execution_timeout=job.get("timeout"),
                                    extra_arguments=["--IPKernelApp.log_level=ERROR"],  # no TCP-transport warnings
                                    iopub_timeout=IOPUB_TIMEOUT_S, raise_on_iopub_timeout=True)
                status.update(status="ok", error=None)
                break
            except pm.PapermillExecutionError as exc:  # the notebook's own error: never retried
                status["status"] = "failed"
                status["error"] = {"name": exc.ename, "message": shorten(exc.evalue), "cell": exc.exec_count}
                break
            except Exception as exc:  # noqa: BLE001 - kernel death, missing kernel, bad notebook: record and go on
                status["status"] = "failed"
                status["error"] = {"name": type(exc).__name__, "message": shorten(exc)}
                log.write(traceback.format_exc())
                if not is_transient(exc) or attempt == attempts:
                    break
                status.setdefault("retried_after", []).append(status["error"])
                log.write(f"\n[mplmm] attempt {attempt} of {attempts} failed ({status['error']['name']}); "
                          "running the notebook again\n")
                log.flush()
    status["duration_s"] = round(time.time() - t0, 2)
    if nb_out.is_file():
        try:
            export_html(nb_out, folder / runs.REPORT, no_input=job["no_input"], failure=failure_text(status),
                        static=job.get("static"))
        except Exception as exc:  # noqa: BLE001 - a report failure must not hide the run's own status
            status["report_error"] = f"{type(exc).__name__}: {shorten(exc, 200)}"
    runs.write_status(folder, status)
    return status


def failed_status(run: Run, params: dict, exc: Exception, no_input: bool, **extra: Any) -> dict:
    """Record a run that failed outside its notebook (``extra`` overrides or adds status keys)."""
    run.folder.mkdir(parents=True, exist_ok=True)
    status = {"run": run.name, "stage": run.stage.name, "notebook": str(run.stage.notebook), "params": params,
              "point": run.point, "status": "failed", "no_input": no_input, "duration_s": 0.0,
              "error": {"name": type(exc).__name__, "message": shorten(exc)}, **extra}
    runs.write_status(run.folder, status)
    return status


def is_done(run: Run, params: dict) -> bool:
    """True when ``run`` finished ok with these parameters (re-running the grid skips it)."""
    st = runs.read_status(run.folder)
    return (st.get("status") == "ok" and (run.folder / runs.NOTEBOOK).is_file()
            and json.loads(json.dumps(st.get("params"))) == json.loads(json.dumps(params)))

