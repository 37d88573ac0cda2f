"""Robustness plots: metric vs test missing rate (mean ± std across training seeds), per-mode heatmaps.

Input frames are long tables as produced by :func:`mplmm.evaluate.robustness_curve` /
:func:`mplmm.evaluate.per_mode_table` with two extra columns: ``method`` (a label per method) and ``seed`` (the
training seed). Mask seeds (``mask_seed``) are averaged first, then mean and std are taken across training seeds.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ..constants import MODE_NAMES
from ._style import color_for, rgba


def _check(frame: pd.DataFrame, cols: list[str], what: str) -> None:
    missing = [c for c in cols if c not in frame.columns]
    if missing:
        raise KeyError(f"{what}: missing column(s) {missing}; have {list(frame.columns)}")


def _methods(frame: pd.DataFrame, method_col: str) -> list[str]:
    return list(dict.fromkeys(frame[method_col].astype(str)))  # order of first appearance


def _with_seed(frame: pd.DataFrame, seed_col: str) -> pd.DataFrame:
    if seed_col in frame.columns:
        return frame
    return frame.assign(**{seed_col: 0})


def summarise_curves(curves: pd.DataFrame, metric: str, method_col: str = "method", seed_col: str = "seed",
                     rate_col: str = "rate") -> pd.DataFrame:
    """One row per (method, rate): ``mean``, ``std`` (0 with a single seed) and ``n_seeds`` of ``metric``."""
    _check(curves, [method_col, rate_col, metric], "curves")
    frame = _with_seed(curves, seed_col).astype({method_col: str})
    per_seed = frame.groupby([method_col, seed_col, rate_col], sort=False)[metric].mean().reset_index()
    out = (per_seed.groupby([method_col, rate_col], sort=False)[metric]
           .agg(mean="mean", std="std", n_seeds="count").reset_index())
    out["std"] = out["std"].fillna(0.0)
    order = {m: i for i, m in enumerate(_methods(frame, method_col))}
    out = out.sort_values([method_col, rate_col], key=lambda s: s.map(order) if s.name == method_col else s)
    return out.reset_index(drop=True)


def _auc(x: np.ndarray, y: np.ndarray) -> float:
    if len(x) < 2:
        return float(y[0]) if len(y) else float("nan")
    return float(np.trapezoid(y, x) / (x[-1] - x[0]))


def auc_table(curves: pd.DataFrame, metric: str, method_col: str = "method", seed_col: str = "seed",
              rate_col: str = "rate") -> pd.DataFrame:
    """Area under ``metric`` vs rate (trapezoid, normalised by the rate range) per (method, training seed).

    Same definition as :func:`mplmm.evaluate.area_under_curve` (mask seeds averaged first).
    """
    _check(curves, [method_col, rate_col, metric], "curves")
    frame = _with_seed(curves, seed_col).astype({method_col: str})
    rows = []
    for (method, seed), g in frame.groupby([method_col, seed_col], sort=False):
        s = g.groupby(rate_col)[metric].mean().sort_index()
        rows.append({method_col: method, seed_col: seed,
                     "auc": _auc(s.index.to_numpy(dtype=float), s.to_numpy(dtype=float))})
    return pd.DataFrame(rows, columns=[method_col, seed_col, "auc"])


def auc_summary(curves: pd.DataFrame, metric: str, method_col: str = "method", seed_col: str = "seed",
                rate_col: str = "rate") -> pd.DataFrame:
    """Per method: ``auc_mean``, ``auc_std`` (0 with one seed) and ``n_seeds``."""
    table = auc_table(curves, metric, method_col, seed_col, rate_col)
    out = table.groupby(method_col, sort=False)["auc"].agg(auc_mean="mean", auc_std="std", n_seeds="count")
    out["auc_std"] = out["auc_std"].fillna(0.0)
    return out.reset_index()


def robustness_figure(curves: pd.DataFrame, metric: str, method_col: str = "method", seed_col: str = "seed",
                      rate_col: str = "rate", title: Optional[str] = None, band_alpha: float = 0.2) -> go.Figure:
    """``metric`` vs test missing rate, one colour per method: a mean line (trace name = method) and, when a
    method has several training seeds, a ± std band drawn as two traces named ``"<method> +std"`` and
    ``"<method> -std"`` (the second filled to the first; hidden from the legend, toggled with the method)."""
    summary = summarise_curves(curves, metric, method_col, seed_col, rate_col)
    fig = go.Figure()
    for i, method in enumerate(_methods(summary, method_col)):
        s = summary[summary[method_col] == method]
        color = color_for(i)
        x = s[rate_col].tolist()
        mean, std = s["mean"].to_numpy(float), s["std"].to_numpy(float)
        if int(s["n_seeds"].max()) > 1:
            fig.add_trace(go.Scatter(x=x, y=(mean + std).tolist(), mode="lines", name=f"{method} +std",
                                     line=dict(width=0, color=color), legendgroup=method, showlegend=False,
                                     hoverinfo="skip"))
            fig.add_trace(go.Scatter(x=x, y=(mean - std).tolist(), mode="lines", name=f"{method} -std",
                                     line=dict(width=0, color=color), fill="tonexty",
                                     fillcolor=rgba(color, band_alpha), legendgroup=method, showlegend=False,
                                     hoverinfo="skip"))
        n = s["n_seeds"].tolist()
        fig.add_trace(go.Scatter(x=x, y=mean.tolist(), mode="lines+markers", name=method, legendgroup=method,
                                 line=dict(color=color, width=2), customdata=np.c_[std, n].tolist(),
                                 hovertemplate=f"{method}<br>rate %{{x}}<br>{metric} %{{y:.4f}}"
                                               "<br>± %{customdata[0]:.4f} (%{customdata[1]} seeds)<extra></extra>"))
    fig.update_layout(title=title or f"{metric} vs test missing rate (mean ± std over training seeds)",
                      xaxis_title="test missing rate", yaxis_title=metric, template="plotly_white", height=450,
                      hovermode="closest")
    return fig


def per_mode_matrix(per_mode: pd.DataFrame, metric: str, method_col: str = "method",
                    mode_col: str = "mode") -> pd.DataFrame:
    """Methods × the 7 missing modes (columns = mode names, in mode order 0..6), mean over training seeds."""
    _check(per_mode, [method_col, mode_col, metric], "per-mode table")
    frame = per_mode.astype({method_col: str})
    mat = frame.pivot_table(index=method_col, columns=mode_col, values=metric, aggfunc="mean", sort=False)
    mat = mat.reindex(index=_methods(frame, method_col), columns=sorted(MODE_NAMES))
    mat.columns = [MODE_NAMES[int(m)] for m in mat.columns]
    mat.columns.name, mat.index.name = "mode", method_col
    return mat


def per_mode_heatmap(per_mode: pd.DataFrame, metric: str, method_col: str = "method", mode_col: str = "mode",
                     title: Optional[str] = None, higher_is_better: Optional[bool] = None) -> go.Figure:
    """Heatmap of ``metric`` for methods (rows) × missing modes (columns), values written in the cells.

    Better cells are brighter: for lower-is-better metrics (``MAE``, ``loss``) the colour scale is reversed
    (``higher_is_better`` overrides the guess from :func:`mplmm.metrics.metric_direction`).
    """
    mat = per_mode_matrix(per_mode, metric, method_col, mode_col)
    if higher_is_better is None:
        from ..metrics import metric_direction

        try:
            higher_is_better = metric_direction(metric) == "higher"
        except KeyError:
            higher_is_better = metric != "loss"
    z = [[None if pd.isna(v) else float(v) for v in row] for row in mat.to_numpy()]
    fig = go.Figure(go.Heatmap(z=z, x=list(mat.columns), y=list(mat.index), colorscale="Viridis",
                               reversescale=not higher_is_better, texttemplate="%{z:.3f}", name=metric,
                               colorbar=dict(title=dict(text=metric)),
                               hovertemplate="%{y}<br>%{x}<br>" + metric + " %{z:.4f}<extra></extra>"))
    fig.update_layout(title=title or f"{metric} per missing mode", template="plotly_white",
                      height=max(260, 90 + 45 * len(mat.index)), xaxis_title="missing mode",
                      yaxis=dict(autorange="reversed", title=method_col))
    return fig
