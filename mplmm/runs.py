"""The run-folder contract: file names, the versioned ``metrics.json`` schema, ``status.json``, scanning for runs.

A **run folder** is what one notebook run (``output_dir``) or one ``python -m mplmm train --out`` leaves behind; a
**grid output root** holds one run folder per run of a batch grid plus the index. Every writer and reader of these
files goes through this module (see ``docs/runs.md`` for the keys):

* :func:`write_metrics` / :func:`read_metrics` — ``metrics.json``, stamped ``"schema": "mplmm-metrics/1"``; files
  written before the stamp existed (no ``schema`` key) read as version 0 and need no conversion;
* :func:`write_status` / :func:`read_status` — ``status.json`` written by the batch runner; :func:`write_grid_record`
  / :func:`read_grid_record` — the output root's ``grid.json``;
* :func:`write_text` / :func:`copy_file` — the atomic writes behind every file the runner writes;
* :func:`find_runs` / :func:`load_run` / :func:`flatten_metrics` — run folders under a root (the run explorer).
"""
from __future__ import annotations

import json
import logging
import math
import os
import shutil
from pathlib import Path
from typing import Any, Union

import pandas as pd

from .errors import UserError

PathLike = Union[str, os.PathLike]

# ---------------------------------------------------------------------------------------------------------- names
NOTEBOOK = "notebook.ipynb"  # the executed notebook (batch runs)
REPORT = "report.html"  # its HTML export
STATUS = "status.json"  # ok / failed, error, duration, params (batch runs)
METRICS = "metrics.json"  # what the notebook (or train) measured: this module's schema
LOG = "log.txt"  # kernel output, papermill's warnings (batch runs)
HISTORY = "history.csv"  # per-epoch training history (01_train, python -m mplmm train)
RUN_FILES = (METRICS, HISTORY)  # a folder holding either one is a run for find_runs
INDEX_HTML = "index.html"  # grid output root: the index page
INDEX_CSV = "index.csv"  # grid output root: one row per run
GRID_JSON = "grid.json"  # grid output root: the grid's name, file, reference method and report options
STATIC_DIR = "_static"  # grid output root: files the reports share
PLOTLYJS = "plotly.min.js"  # in STATIC_DIR: the one copy of plotly.js every report and the index load

# --------------------------------------------------------------------------------------------------------- schema
SCHEMA_VERSION = 1
_SCHEMA_PREFIX = "mplmm-metrics/"
METRICS_SCHEMA = f"{_SCHEMA_PREFIX}{SCHEMA_VERSION}"  # the value of metrics["schema"]
SCHEMA_KEY = "schema"

#: the top-level keys that some reader relies on → (accepted JSON types, meaning). Any other key may be added freely.
METRICS_KEYS: dict[str, tuple[tuple[type, ...], str]] = {
    "schema": ((str,), "schema version, stamped by write_metrics"),
    "model": ((str,), "registered model name"),
    "dataset": ((dict, str), "ds.summary() (a mapping with name, source, task, ...) or the dataset name"),
    "config": ((dict,), "the training configuration (TrainConfig as a mapping)"),
    "provenance": ((dict,), "versions, git commit, host, time"),
    "runtime": ((dict,), "device, precision, TF32, deterministic algorithms, CPU threads"),
    "parameters": ((dict,), "parameter counts: total, trainable, frozen"),
    "best_epoch": ((int,), "the epoch selected on validation"),
    "epochs_run": ((int,), "epochs trained (early stopping may end sooner)"),
    "n_samples": ((int,), "samples an interpretation notebook looked at"),
    "primary_metric": ((str,), "the headline metric, a key of test and valid"),
    "test": ((dict,), "test-split metrics {name: number} under the fixed evaluation masks"),
    "valid": ((dict,), "validation-split metrics {name: number}"),
    "key_metrics": ((dict,), "headline numbers {name: number} shown in the batch index"),
    "metric": ((str,), "the metric column of curves and per_mode"),
    "protocol": ((str,), "missing-data protocol of curves (modality, entry, frame)"),
    "rates": ((list,), "test missing rates evaluated"),
    "mask_seeds": ((list,), "seeds of the fixed test masks"),
    "label": ((str,), "a robustness run's name for its set of checkpoints (e.g. tuned, default); '' for none"),
    "runs": ((list,), "records of the checkpoints evaluated: path, run, model, seed, method"),
    "curves": ((list,), "records: method, seed, rate, mask_seed and one column per metric"),
    "summary": ((list,), "records: method, rate, mean, std, n_seeds of metric"),
    "auc": ((list,), "records: method, seed, auc"),
    "auc_summary": ((list,), "records: method, auc_mean, auc_std, n_seeds"),
    "per_mode": ((list,), "records: method, seed, mode (0-6), mode_name and one column per metric"),
}
#: columns every record of these list keys must have (plus the column named by ``metric`` when it is set)
RECORD_COLUMNS: dict[str, tuple[str, ...]] = {
    "curves": ("method", "seed", "rate"),
    "per_mode": ("method", "seed", "mode"),
    "auc_summary": ("method", "auc_mean"),
}

log = logging.getLogger(__name__)


class MetricsError(UserError):
    """A ``metrics.json`` breaks the schema (a known key of the wrong type, a record without its columns)."""


def metrics_version(metrics: dict) -> int:
    """The schema version of a metrics mapping: 0 for files written before the stamp existed."""
    tag = metrics.get(SCHEMA_KEY)
    if isinstance(tag, str) and tag.startswith(_SCHEMA_PREFIX) and tag[len(_SCHEMA_PREFIX):].isdigit():
        return int(tag[len(_SCHEMA_PREFIX):])
    return 0


def check_metrics(metrics: dict) -> None:
    """Raise :class:`MetricsError` when a known key has the wrong type or a record lacks a required column."""
    if not isinstance(metrics, dict):
        raise MetricsError(f"metrics must be a mapping, got {type(metrics).__name__}")
    for key, (types, meaning) in METRICS_KEYS.items():
        value = metrics.get(key)
        if value is not None and not isinstance(value, types):
            names = " or ".join(t.__name__ for t in types)
            raise MetricsError(f"metrics[{key!r}] must be a {names} ({meaning}), got {type(value).__name__}")
    metric = metrics.get("metric")
    for key, columns in RECORD_COLUMNS.items():
        wanted = [*columns, metric] if metric and key in ("curves", "per_mode") else list(columns)
        for i, rec in enumerate(metrics.get(key) or []):
            missing = [c for c in wanted if not isinstance(rec, dict) or c not in rec]
            if missing:
                raise MetricsError(f"metrics[{key!r}][{i}] lacks column(s) {missing}; needs {wanted}")


def _metrics_path(folder_or_path: PathLike) -> Path:
    path = Path(folder_or_path)
    return path if path.suffix == ".json" else path / METRICS


def write_metrics(folder_or_path: PathLike, metrics: dict[str, Any]) -> Path:
    """Check ``metrics`` (:func:`check_metrics`), stamp the schema version and write it atomically as JSON (NumPy
    values converted) to ``folder/metrics.json`` or to the ``.json`` path given; returns the path."""
    from .utils import _jsonable, write_json

    stamped = _jsonable({SCHEMA_KEY: METRICS_SCHEMA, **{k: v for k, v in metrics.items() if k != SCHEMA_KEY}})
    check_metrics(stamped)
    return write_json(_metrics_path(folder_or_path), stamped)


def read_metrics(folder_or_path: PathLike) -> dict:
    """The metrics of a run folder (or a ``.json`` path): ``{}`` when the file is missing or not a JSON mapping.
    Unversioned (older) files read as they are; a newer schema than this code knows is read with a warning."""
    data = _read_json(_metrics_path(folder_or_path))
    if metrics_version(data) > SCHEMA_VERSION:
        log.warning("%s: written with %s, newer than %s; some keys may be ignored",
                    _metrics_path(folder_or_path), data[SCHEMA_KEY], METRICS_SCHEMA)
    return data


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


# --------------------------------------------------------------------------------------------------------- status
def read_status(folder: PathLike) -> dict:
    """A run's ``status.json`` (``{}`` when missing or unreadable: the run has not run)."""
    return _read_json(Path(folder) / STATUS)


def write_status(folder: PathLike, status: dict) -> Path:
    """Write a run's ``status.json`` atomically."""
    from .utils import write_json

    return write_json(Path(folder) / STATUS, status)


def read_grid_record(output_root: PathLike) -> dict:
    """A grid output root's ``grid.json`` (``{}`` when missing): name, grid file, reference method, report options."""
    return _read_json(Path(output_root) / GRID_JSON)


def write_grid_record(output_root: PathLike, record: dict) -> Path:
    """Write a grid output root's ``grid.json`` atomically."""
    from .utils import write_json

    return write_json(Path(output_root) / GRID_JSON, record)


# ---------------------------------------------------------------------------------------------------------- files
def write_text(path: PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) atomically: readers never see a half-written report or index."""
    from .utils import atomic_write

    return atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))


def copy_file(src: PathLike, dst: PathLike) -> Path:
    """Copy ``src`` to ``dst`` atomically."""
    from .utils import atomic_write

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
    "GRID_JSON", "HISTORY", "INDEX_CSV", "INDEX_HTML", "LOG", "METRICS", "METRICS_KEYS", "METRICS_SCHEMA", "NOTEBOOK",
    "PLOTLYJS", "RECORD_COLUMNS", "REPORT", "RUN_FILES", "SCHEMA_VERSION", "STATIC_DIR", "STATUS", "MetricsError",
    "check_metrics", "copy_file", "find_runs", "flatten_metrics", "load_run", "metrics_version", "read_grid_record",
    "read_metrics", "read_status", "write_grid_record", "write_metrics", "write_status", "write_text",
]
