"""Training curves: losses and validation metrics over epochs, from :func:`mplmm.train.train`'s history DataFrame."""
from __future__ import annotations

from typing import Optional, Sequence, Union

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ._style import color_for

# history columns that are bookkeeping, not curves
_NOT_CURVES = {"epoch", "lr", "seconds", "best"}


def loss_columns(history: pd.DataFrame) -> list[str]:
    """``train_loss``, ``valid_loss`` and the extra training loss terms (``train_<part>``) found in ``history``."""
    cols = [c for c in ("train_loss", "valid_loss") if c in history.columns]
    extra = [c for c in history.columns if c.startswith("train_") and c not in cols and c not in _NOT_CURVES]
    return cols + extra


def metric_columns(history: pd.DataFrame) -> list[str]:
    """Validation metric columns (``valid_<metric>``, without ``valid_loss``)."""
    return [c for c in history.columns if c.startswith("valid_") and c != "valid_loss"]


def training_curves(history: pd.DataFrame, metrics: Optional[Union[str, Sequence[str]]] = None,
                    title: Optional[str] = None) -> go.Figure:
    """Two panels over epochs: losses (left) and validation metrics (right), best epochs marked.

    ``metrics``: metric names with or without the ``valid_`` prefix (default: every validation metric in the
    history). An empty history gives the empty two-panel layout (used to start a live plot).
    """
    if isinstance(metrics, str):
        metrics = [metrics]
    if metrics is None:
        mcols = metric_columns(history)
    else:
        mcols = [m if m.startswith("valid_") else f"valid_{m}" for m in metrics]
        missing = [m for m in mcols if len(history.columns) and m not in history.columns]
        if missing:
            raise KeyError(f"history has no column(s) {missing}; available: {metric_columns(history)}")
    fig = make_subplots(rows=1, cols=2, subplot_titles=("loss", "validation metrics"), horizontal_spacing=0.1)
    x = history["epoch"].tolist() if "epoch" in history.columns else list(range(1, len(history) + 1))
    for i, col in enumerate(loss_columns(history)):
        fig.add_trace(go.Scatter(x=x, y=history[col].tolist(), mode="lines+markers", name=col,
                                 line=dict(color=color_for(i), dash="dash" if col.startswith("valid") else None),
                                 legendgroup="loss"), row=1, col=1)
    offset = len(loss_columns(history))
    for j, col in enumerate(c for c in mcols if c in history.columns):
        fig.add_trace(go.Scatter(x=x, y=history[col].tolist(), mode="lines+markers", name=col,
                                 line=dict(color=color_for(offset + j)), legendgroup="metrics"), row=1, col=2)
    if "best" in history.columns and "valid_loss" in history.columns and len(history):
        best = history[history["best"].astype(bool)]
        bx = best["epoch"].tolist() if "epoch" in best.columns else [x[i] for i in best.index]
        fig.add_trace(go.Scatter(x=bx, y=best["valid_loss"].tolist(), mode="markers", name="best (valid)",
                                 marker=dict(symbol="star", size=12, color="gold", line=dict(width=1, color="black"))),
                      row=1, col=1)
    fig.update_xaxes(title_text="epoch", dtick=1 if len(x) <= 20 else None)
    fig.update_yaxes(title_text="loss", row=1, col=1)
    fig.update_yaxes(title_text="metric", row=1, col=2)
    fig.update_layout(title=title, template="plotly_white", height=400, legend=dict(orientation="h", y=-0.2))
    return fig
