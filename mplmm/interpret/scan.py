"""Run folders (the run explorer): folders holding ``metrics.json`` and/or ``history.csv``, scanned and read."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Union

import numpy as np
import pandas as pd

RUN_FILES = ("metrics.json", "history.csv")


def flatten_metrics(d: dict, prefix: str = "", max_depth: int = 3) -> dict[str, float]:
    """Numeric leaves of a nested dict as ``{"test.MAE": 0.8, ...}`` (lists and strings are skipped)."""
    out: dict[str, float] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and max_depth > 0:
            out.update(flatten_metrics(v, key + ".", max_depth - 1))
        elif isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool):
            if math.isfinite(float(v)):
                out[key] = float(v)
    return out


def find_runs(root: Union[str, Path] = "runs", max_depth: int = 4) -> pd.DataFrame:
    """Run folders under ``root`` (``root`` itself included): those holding ``metrics.json`` and/or ``history.csv``.

    One row per run: ``run`` (path relative to ``root``), ``path``, ``has_metrics``, ``has_history``, ``model`` and the
    flattened numeric metrics (``test.MAE``, ...).
    """
    root = Path(root)
    rows = []
    if root.is_dir():
        candidates = [root] + sorted(p for p in root.rglob("*") if p.is_dir()
                                     and len(p.relative_to(root).parts) <= max_depth)
        for folder in candidates:
            has = {f: (folder / f).is_file() for f in RUN_FILES}
            if not any(has.values()):
                continue
            metrics = _read_json(folder / "metrics.json") if has["metrics.json"] else {}
            rel = folder.relative_to(root).as_posix()
            rows.append({"run": rel if rel != "." else folder.name, "path": str(folder),
                         "has_metrics": has["metrics.json"], "has_history": has["history.csv"],
                         "model": metrics.get("model") if isinstance(metrics.get("model"), str) else None,
                         "primary_metric": metrics.get("primary_metric")
                         if isinstance(metrics.get("primary_metric"), str) else None,
                         **flatten_metrics(metrics)})
    base = ["run", "path", "has_metrics", "has_history", "model", "primary_metric"]
    return pd.DataFrame(rows, columns=None if rows else base)


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def load_run(path: Union[str, Path]) -> tuple[pd.DataFrame, dict]:
    """``(history, metrics)`` of a run folder (empty DataFrame / dict for what it lacks)."""
    path = Path(path)
    hist = pd.read_csv(path / "history.csv") if (path / "history.csv").is_file() else pd.DataFrame()
    metrics = _read_json(path / "metrics.json") if (path / "metrics.json").is_file() else {}
    return hist, metrics


__all__ = ["RUN_FILES", "find_runs", "flatten_metrics", "load_run"]
