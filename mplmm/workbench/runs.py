"""The run-folder contract: file names, ``status.json``, scanning for runs (``metrics.json``: :mod:`.metrics_file`).

A **run folder** is what one notebook run (``output_dir``) or one ``python -m mplmm train --out`` leaves behind; a
**grid output root** holds one run folder per run of a batch grid plus the index. Every writer and reader of these
files goes through this module (see ``docs/runs.md`` for the keys):

* :func:`write_status` / :func:`read_status` — ``status.json`` written by the batch runner; :func:`write_grid_record`
  / :func:`read_grid_record` — the output root's ``grid.json``;
* :func:`write_text` / :func:`copy_file` — the atomic writes behind every file the runner writes;
* :func:`find_runs` / :func:`load_run` / :func:`flatten_metrics` — run folders under a root (the run explorer).
"""
from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from ..metrics_file import METRICS, read_metrics
from ..utils import PathLike, read_json

# ---------------------------------------------------------------------------------------------------------- names
NOTEBOOK = "notebook.ipynb"  # the executed notebook (batch runs)
REPORT = "report.html"  # its HTML export
STATUS = "status.json"  # ok / failed, error, duration, params (batch runs)
LOG = "log.txt"  # kernel output, papermill's warnings (batch runs)
HISTORY = "history.csv"  # per-epoch training history (01_train, python -m mplmm train)
RUN_FILES = (METRICS, HISTORY)  # a folder holding either one is a run for find_runs
INDEX_HTML = "index.html"  # grid output root: the index page
INDEX_CSV = "index.csv"  # grid output root: one row per run
GRID_JSON = "grid.json"  # grid output root: the grid's name, file, reference method and report options
STATIC_DIR = "_static"  # grid output root: files the reports share
PLOTLYJS = "plotly.min.js"  # in STATIC_DIR: the one copy of plotly.js every report and the index load

# --------------------------------------------------------------------------------------------------------- status
def read_status(folder: PathLike) -> dict:
    """A run's ``status.json`` (``{}`` when missing or unreadable: the run has not run)."""
    return read_json(Path(folder) / STATUS)


def write_status(folder: PathLike, status: dict) -> Path:
    """Write a run's ``status.json`` atomically."""
    from ..utils import write_json

    return write_json(Path(folder) / STATUS, status)


def read_grid_record(output_root: PathLike) -> dict:
    """A grid output root's ``grid.json`` (``{}`` when missing): name, grid file, reference method, report options."""
    return read_json(Path(output_root) / GRID_JSON)


def write_grid_record(output_root: PathLike, record: dict) -> Path:
    """Write a grid output root's ``grid.json`` atomically."""
    from ..utils import write_json

    return write_json(Path(output_root) / GRID_JSON, record)


# ---------------------------------------------------------------------------------------------------------- files
def write_text(path: PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) atomically: readers never see a half-written report or index."""
    from ..utils import atomic_write

    return atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))


def copy_file(src: PathLike, dst: PathLike) -> Path:
    """Copy ``src`` to ``dst`` atomically."""
    from ..utils import atomic_write

    def copy(fh) -> None:
        with open(src, "rb") as source:
            shutil.copyfileobj(source, fh)

    return atomic_write(dst, copy)


# ------------------------------------------------------------------------------------------------------- scanning
def flatten_metrics(d: dict, prefix: str = "", max_depth: int = 3) -> dict[str, float]:
    """Numeric leaves of a nested dict as ``{"test.MAE": 0.8, ...}`` (lists, strings and non-finite numbers are
    skipped)."""
    out: dict[str, float] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and max_depth > 0:
            out.update(flatten_metrics(value, name + ".", max_depth - 1))
        elif _is_number(value) and math.isfinite(float(value)):
            out[name] = float(value)
    return out


def _is_number(value: Any) -> bool:
    import numpy as np

    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def find_runs(root: PathLike = "runs", max_depth: int = 4) -> pd.DataFrame:
    """Run folders under ``root`` (``root`` itself included): those holding ``metrics.json`` and/or ``history.csv``.

    One row per run: ``run`` (path relative to ``root``), ``path``, ``has_metrics``, ``has_history``, ``model``,
    ``primary_metric`` and the flattened numeric metrics (``test.MAE``, ...).
    """
    root = Path(root)
    rows = []
    if root.is_dir():
        candidates = [root] + sorted(p for p in root.rglob("*")
                                     if p.is_dir() and len(p.relative_to(root).parts) <= max_depth)
        for folder in candidates:
            has = {name: (folder / name).is_file() for name in RUN_FILES}
            if not any(has.values()):
                continue
            metrics = read_metrics(folder)
            rel = folder.relative_to(root).as_posix()
            rows.append({"run": rel if rel != "." else folder.name, "path": str(folder),
                         "has_metrics": has[METRICS], "has_history": has[HISTORY],
                         **{k: metrics[k] if isinstance(metrics.get(k), str) else None
                            for k in ("model", "primary_metric")},
                         **flatten_metrics(metrics)})
    base = ["run", "path", "has_metrics", "has_history", "model", "primary_metric"]
    return pd.DataFrame(rows, columns=None if rows else base)


def load_run(path: PathLike) -> tuple[pd.DataFrame, dict]:
    """``(history, metrics)`` of a run folder (an empty DataFrame / dict for what it lacks)."""
    path = Path(path)
    hist = pd.read_csv(path / HISTORY) if (path / HISTORY).is_file() else pd.DataFrame()
    return hist, read_metrics(path)


__all__ = [
    "GRID_JSON", "HISTORY", "INDEX_CSV", "INDEX_HTML", "LOG", "NOTEBOOK", "PLOTLYJS", "REPORT", "RUN_FILES",
    "STATIC_DIR", "STATUS", "copy_file", "find_runs", "flatten_metrics", "load_run", "read_grid_record", "read_status",
    "write_grid_record", "write_status", "write_text",
]
