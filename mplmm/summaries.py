"""Robustness summaries under the papers' names: pure functions of a curve (a level column and a metric column).

A curve is a DataFrame with one row per (level, seed) as :func:`mplmm.evaluate.robustness_curve` (level column
``rate``) or :func:`mplmm.evaluate.noise_curve` (level column ``noise``) return it; rows of one level are averaged
first (mask seeds). Every function reads the raw metric: for an error (MAE) a larger area is worse.

* :func:`area_under_curve` — the workbench's AUC: trapezoid over the evaluated levels divided by their range.
* :func:`auilc` — EMT-DLFR's AUILC (area under the indicator-missing-rate curve): the trapezoid, step 0.1, over its
  rate grid. Its released code sums over r = 0.0, 0.1, …, 1.0 (width 1, so the area has the metric's scale); its
  table caption says r = 0.1 … 1.0. ``grid="code"`` (default, :data:`AUILC_RATES`) is the code's grid, the one its
  published numbers come from; ``grid="caption"`` (:data:`AUILC_CAPTION_RATES`) integrates over 0.1 … 1.0 and
  divides by the width 0.9, so both read on the metric's scale.
* :func:`air` — OpenVNA's AIR (``AIRrobustness`` in its demo code): ``np.trapz(y, x)`` over the noise or drop levels
  (levels in [0, 1]; not divided by the range), and :func:`air_effective` = y(first level) − AIR, the drop from the
  clean score OpenVNA reports beside it.
* :func:`relative_robustness` — MultiBench's relative robustness: the trapezoid over the levels in order with a
  hard-coded step of 0.1 (as in its ``eval_scripts/robustness.py``), whatever the levels are.
* :func:`effective_robustness` — MultiBench's effective robustness against a reference curve f_ref at the same
  levels: ``sum_i [(f_i - f_0) - (ref_i - ref_0)]``, the reference shifted to start where the method starts. MultiBench
  compares with late fusion; the workbench has none, so the reference is a method of the grid (``mult_zero``: MulT
  trained on complete data, zero-filled at test, by default). MultiBench also min-max normalises both robustness
  numbers over the methods of its benchmark; these functions do not (a normalised number depends on which other
  methods are in the table).

On the standard grid 0.0, 0.1, …, 1.0 the AUC, the AUILC (code grid), AIR and relative robustness are the same
number; they part on other grids, which is why each keeps its paper's definition.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import pandas as pd

from .errors import ConfigError

#: EMT-DLFR's AUILC grid in its released code (``run_once.py``): r = 0.0, 0.1, ..., 1.0
AUILC_RATES: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(11))
#: the grid its table caption names: r = 0.1, ..., 1.0
AUILC_CAPTION_RATES: tuple[float, ...] = AUILC_RATES[1:]
AUILC_GRIDS = {"code": AUILC_RATES, "caption": AUILC_CAPTION_RATES}
MULTIBENCH_STEP = 0.1


def level_means(curve: pd.DataFrame, metric: str, level: str = "rate") -> pd.Series:
    """``metric`` per level (mean over the rows of a level, e.g. mask seeds), sorted by level."""
    for col in (level, metric):
        if col not in curve:
            raise ConfigError(f"curve: expected a column {col!r}, found {sorted(map(str, curve.columns))}")
    return curve.groupby(level)[metric].mean().sort_index()


def _xy(curve: pd.DataFrame, metric: str, level: str) -> tuple[np.ndarray, np.ndarray]:
    g = level_means(curve, metric, level)
    return g.index.to_numpy(dtype=float), g.to_numpy(dtype=float)


def _trapezoid(y: np.ndarray, x: np.ndarray) -> float:
    return float(np.sum((y[1:] + y[:-1]) * np.diff(x) / 2.0))


def area_under_curve(curve: pd.DataFrame, metric: str, level: str = "rate") -> float:
    """Trapezoid area under ``metric`` over the evaluated levels divided by their range (one level: its value)."""
    x, y = _xy(curve, metric, level)
    if len(x) < 2:
        return float(y[0]) if len(y) else float("nan")
    return _trapezoid(y, x) / float(x[-1] - x[0])


def missing_levels(curve: pd.DataFrame, wanted: Sequence[float], level: str = "rate") -> list[float]:
    """The levels of ``wanted`` that ``curve`` was not evaluated at (within 1e-9)."""
    have = curve[level].astype(float).unique() if level in curve else np.array([])
    return [float(w) for w in wanted if not np.any(np.abs(have - float(w)) < 1e-9)]


def auilc(curve: pd.DataFrame, metric: str, grid: str = "code", level: str = "rate") -> float:
    """EMT-DLFR's AUILC of ``metric`` on its rate grid (``grid``: ``"code"`` 0.0–1.0, ``"caption"`` 0.1–1.0, divided
    by its width 0.9). Every rate of the grid must have been evaluated; other evaluated rates are ignored."""
    if grid not in AUILC_GRIDS:
        raise ConfigError(f"auilc: grid must be one of {sorted(AUILC_GRIDS)}, got {grid!r}")
    rates = AUILC_GRIDS[grid]
    lacking = missing_levels(curve, rates, level)
    if lacking:
        raise ConfigError(f"auilc: the {grid} grid needs test rates {list(rates)}; the curve lacks {lacking}")
    g = level_means(curve, metric, level)
    x = np.asarray(rates, dtype=float)
    y = np.array([g[np.isclose(g.index.to_numpy(dtype=float), r, atol=1e-9)].iloc[0] for r in rates])
    return _trapezoid(y, x) / float(x[-1] - x[0])


def air(curve: pd.DataFrame, metric: str, level: str = "rate") -> float:
    """OpenVNA's AIR: ``np.trapz`` of ``metric`` over the evaluated levels (not divided by their range)."""
    x, y = _xy(curve, metric, level)
    if np.any((x < 0) | (x > 1)):
        raise ConfigError(f"air: levels must lie in [0, 1] (OpenVNA integrates over imperfection levels 0-1), "
                          f"got {x.tolist()}")
    return _trapezoid(y, x) if len(x) > 1 else 0.0


def air_effective(curve: pd.DataFrame, metric: str, level: str = "rate") -> float:
    """OpenVNA's effective robustness beside AIR: the metric at the first (cleanest) level minus :func:`air`."""
    x, y = _xy(curve, metric, level)
    return float(y[0]) - air(curve, metric, level) if len(y) else float("nan")


def relative_robustness(curve: pd.DataFrame, metric: str, level: str = "rate") -> float:
    """MultiBench's relative robustness: ``sum_i (y_i + y_(i+1)) * 0.1 / 2`` over the levels in order (step fixed
    at 0.1)."""
    _, y = _xy(curve, metric, level)
    return float(np.sum((y[1:] + y[:-1]) * MULTIBENCH_STEP / 2.0))


def effective_robustness(curve: pd.DataFrame, reference: pd.DataFrame, metric: str, level: str = "rate") -> float:
    """MultiBench's effective robustness of ``curve`` against ``reference`` (both evaluated at the same levels):
    ``sum_i [(y_i - y_0) - (ref_i - ref_0)]``."""
    x, y = _xy(curve, metric, level)
    xr, yr = _xy(reference, metric, level)
    if len(x) != len(xr) or not np.allclose(x, xr):
        raise ConfigError(f"effective_robustness: the reference must be evaluated at the same levels; curve "
                          f"{x.tolist()}, reference {xr.tolist()}")
    return float(np.sum((y - y[0]) - (yr - yr[0]))) if len(y) else float("nan")


def summarise(curve: pd.DataFrame, metric: str, level: str = "rate",
              reference: Optional[pd.DataFrame] = None) -> dict[str, float]:
    """Every summary that applies to ``curve``: ``auc``, ``auilc`` and ``auilc_caption`` (when the curve has the
    grid's rates), ``air``, ``air_effective``, ``relative_robustness`` and, with a ``reference`` curve,
    ``effective_robustness``. A summary that does not apply is left out."""
    out = {"auc": area_under_curve(curve, metric, level)}
    if level == "rate":
        for grid in AUILC_GRIDS:
            if not missing_levels(curve, AUILC_GRIDS[grid], level):
                out["auilc" if grid == "code" else "auilc_caption"] = auilc(curve, metric, grid, level)
    x, _ = _xy(curve, metric, level)
    if len(x) and x.min() >= 0 and x.max() <= 1:
        out["air"] = air(curve, metric, level)
        out["air_effective"] = air_effective(curve, metric, level)
    out["relative_robustness"] = relative_robustness(curve, metric, level)
    if reference is not None:
        out["effective_robustness"] = effective_robustness(curve, reference, metric, level)
    return out


#: the method effective robustness is measured against by default (MultiBench uses late fusion, which the workbench
#: does not have): MulT trained on complete data and zero-filled at test time
EFFECTIVE_REFERENCE = "mult_zero"


def summary_table(curves: pd.DataFrame, metric: str, level: str = "rate", method_col: str = "method",
                  seed_col: str = "seed", reference: Optional[str] = EFFECTIVE_REFERENCE) -> pd.DataFrame:
    """One row per (method, training seed) with every summary of :func:`summarise`; ``effective_robustness`` against
    the mean curve (over its training seeds) of the method named ``reference`` when it is among the methods and was
    evaluated at the same levels (else the column is left out)."""
    if not len(curves):
        return pd.DataFrame(columns=[method_col, seed_col, "auc"])
    frame = curves if seed_col in curves else curves.assign(**{seed_col: 0})
    ref = frame[frame[method_col].astype(str) == reference] if reference is not None else frame.iloc[:0]
    ref_levels = np.sort(ref[level].astype(float).unique())
    rows = []
    for (method, seed), g in frame.groupby([method_col, seed_col], sort=False):
        levels = np.sort(g[level].astype(float).unique())
        same = len(ref) > 0 and levels.shape == ref_levels.shape and np.allclose(levels, ref_levels)
        rows.append({method_col: method, seed_col: seed, **summarise(g, metric, level, ref if same else None)})
    return pd.DataFrame(rows)


__all__ = ["AUILC_CAPTION_RATES", "AUILC_GRIDS", "AUILC_RATES", "EFFECTIVE_REFERENCE", "MULTIBENCH_STEP", "air",
           "air_effective", "area_under_curve", "auilc", "effective_robustness", "level_means", "missing_levels",
           "relative_robustness", "summarise", "summary_table"]
