"""Plot builders for :mod:`mplmm.interpret`: DataFrames / arrays in, ``plotly.graph_objects.Figure`` out.

Heatmaps use ``go.Heatmap`` / ``px.imshow`` (``figure_factory.create_annotated_heatmap`` is gone in plotly 7).
Prompt-token columns of attention maps are marked with a shaded rectangle and a label.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..constants import MODALITIES, MODE_NAMES
from ._style import color_for

PROMPT_FILL = "rgba(214,39,40,0.10)"
PROMPT_LINE = "rgba(214,39,40,0.9)"
_TEMPLATE = "plotly_white"


def _mode_color(mode: int) -> str:
    return color_for(int(mode))


def _modality_color(name: str) -> str:
    return color_for(7 + list(MODALITIES).index(name)) if name in MODALITIES else color_for(0)


def _mark_prompts(fig: go.Figure, prompt_columns: Sequence[int], row: Optional[int] = None,
                  col: Optional[int] = None, label: bool = True) -> None:
    """Shade the prompt-token key columns (categorical x: positions are column indices)."""
    cols = list(prompt_columns)
    if not cols:
        return
    kw: dict[str, Any] = dict(x0=min(cols) - 0.5, x1=max(cols) + 0.5, fillcolor=PROMPT_FILL,
                              line=dict(color=PROMPT_LINE, width=1.5, dash="dot"), layer="above")
    if label:
        kw.update(annotation_text=f"prompt tokens (P={len(cols)})", annotation_position="top left",
                  annotation_font=dict(size=10, color=PROMPT_LINE))
    if row is not None:
        kw.update(row=row, col=col)
    fig.add_vrect(**kw)


# ----------------------------------------------------------------------------------------------------------------------
# attention
# ----------------------------------------------------------------------------------------------------------------------
def attention_heatmap(weights: Any, x_labels: Optional[Sequence[str]] = None, y_labels: Optional[Sequence[str]] = None,
                      prompt_columns: Sequence[int] = (), title: Optional[str] = None,
                      zmax: Optional[float] = None) -> go.Figure:
    """One attention map ``(Lq, Lk)`` (rows = queries, columns = keys); prompt-token columns shaded."""
    w = np.asarray(weights, dtype=float)
    if w.ndim != 2:
        raise ValueError(f"attention_heatmap expects a 2-D array, got shape {w.shape}")
    xl = list(x_labels) if x_labels is not None else [str(i) for i in range(w.shape[1])]
    yl = list(y_labels) if y_labels is not None else [str(i) for i in range(w.shape[0])]
    fig = go.Figure(go.Heatmap(z=w, x=xl, y=yl, colorscale="Blues", zmin=0, zmax=zmax, colorbar=dict(title="weight"),
                               hovertemplate="query %{y}<br>key %{x}<br>weight %{z:.3f}<extra></extra>"))
    _mark_prompts(fig, prompt_columns)
    fig.update_xaxes(title_text="key", type="category")
    fig.update_yaxes(title_text="query", type="category", autorange="reversed")
    fig.update_layout(title=title, template=_TEMPLATE, height=max(320, 18 * len(yl) + 140))
    return fig


def attention_figure(maps: Any, module: str, layer: int = -1, head: Optional[int] = None,
                     sample: Optional[int] = 0, title: Optional[str] = None) -> go.Figure:
    """:func:`attention_heatmap` of one module of an :class:`mplmm.interpret.AttentionMaps`."""
    w = maps.map(module, layer=layer, head=head, sample=sample)
    if title is None:
        mode = "" if sample is None else f", {MODE_NAMES[int(maps.modes[int(sample)])]}"
        title = (f"{module} — layer {layer}, {'mean of heads' if head is None else f'head {head}'}, "
                 f"{'mean of samples' if sample is None else f'sample {sample}'}{mode}")
    return attention_heatmap(w, maps.key_labels(module), maps.query_labels(module), maps.prompt_columns(module),
                             title=title)


def attention_grid(maps: Any, modules: Optional[Sequence[str]] = None, layer: int = -1, head: Optional[int] = None,
                   sample: Optional[int] = None, cols: int = 3, title: Optional[str] = None) -> go.Figure:
    """Several modules' maps side by side (shared colour scale); prompt columns shaded in each."""
    modules = list(modules) if modules is not None else list(maps.modules)
    n = len(modules)
    cols = max(1, min(cols, n))
    rows = (n + cols - 1) // cols
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=modules, horizontal_spacing=0.06,
                        vertical_spacing=0.12 if rows > 1 else 0.1)
    zmax = 0.0
    mats = [maps.map(m, layer=layer, head=head, sample=sample) for m in modules]
    for mat in mats:
        zmax = max(zmax, float(np.max(mat)))
    for i, (module, mat) in enumerate(zip(modules, mats)):
        r, c = i // cols + 1, i % cols + 1
        fig.add_trace(go.Heatmap(z=mat, x=maps.key_labels(module), y=maps.query_labels(module), coloraxis="coloraxis",
                                 name=module,
                                 hovertemplate=f"{module}<br>query %{{y}}<br>key %{{x}}<br>weight %{{z:.3f}}"
                                               f"<extra></extra>"), row=r, col=c)
        _mark_prompts(fig, maps.prompt_columns(module), row=r, col=c, label=i == 0)
    fig.update_xaxes(type="category", tickfont=dict(size=8))
    fig.update_yaxes(type="category", autorange="reversed", tickfont=dict(size=8))
    fig.update_layout(title=title, template=_TEMPLATE, height=330 * rows + 80,
                      coloraxis=dict(colorscale="Blues", cmin=0, cmax=zmax or 1.0, colorbar=dict(title="weight")))
    return fig


def readout_attention_figure(maps_by_mode: Mapping[int, Any], layer: int = -1, head: Optional[int] = None,
                             title: Optional[str] = None) -> go.Figure:
    """What the readout token (last position) of each memory transformer attends to, one row per mode.

    ``maps_by_mode``: ``{mode: AttentionMaps}`` (the same samples forced into each mode); weights are averaged over
    samples (and heads unless ``head``). One panel per branch; prompt-token columns shaded.
    """
    modes = list(maps_by_mode)
    first = maps_by_mode[modes[0]]
    mems = [m for m in ("trans_l_mem", "trans_a_mem", "trans_v_mem") if m in first.modules]
    fig = make_subplots(rows=1, cols=len(mems), subplot_titles=mems, horizontal_spacing=0.05, shared_yaxes=True)
    zmax = 0.0
    rows = {}
    for mod in mems:
        rows[mod] = np.stack([maps_by_mode[k].map(mod, layer=layer, head=head, sample=None)[-1] for k in modes])
        zmax = max(zmax, float(rows[mod].max()))
    for j, mod in enumerate(mems):
        fig.add_trace(go.Heatmap(z=rows[mod], x=first.key_labels(mod), y=[MODE_NAMES[int(k)] for k in modes],
                                 coloraxis="coloraxis", name=mod,
                                 hovertemplate=f"{mod}<br>%{{y}}<br>key %{{x}}: %{{z:.3f}}<extra></extra>"),
                      row=1, col=j + 1)
        _mark_prompts(fig, first.prompt_columns(mod), row=1, col=j + 1, label=j == 0)
    fig.update_xaxes(type="category", tickfont=dict(size=8), title_text="key")
    fig.update_yaxes(type="category", autorange="reversed")
    fig.update_layout(title=title, template=_TEMPLATE, height=120 + 40 * len(modes),
                      coloraxis=dict(colorscale="Blues", cmin=0, cmax=zmax or 1.0, colorbar=dict(title="weight")))
    return fig


def prompt_share_figure(share: pd.DataFrame, layer: Optional[int] = None, title: Optional[str] = None) -> go.Figure:
    """Bars of the readout token's attention share on the prompt tokens: mode × branch, one panel per layer.

    ``share`` is :func:`mplmm.interpret.prompt_attention_share`'s frame; ``layer`` picks one layer (None: all).
    The share of a uniform attention (``P / (L + P)``) is drawn as a short black tick on each bar.
    """
    frame = share if layer is None else share[share["layer"] == layer]
    if frame.empty:
        raise ValueError("prompt_share_figure: no rows to plot")
    layers = sorted(frame["layer"].unique())
    fig = make_subplots(rows=1, cols=len(layers), subplot_titles=[f"layer {li}" for li in layers], shared_yaxes=True,
                        horizontal_spacing=0.04)
    order = [MODE_NAMES[m] for m in sorted(frame["mode"].unique())]
    for j, li in enumerate(layers):
        sub = frame[frame["layer"] == li]
        for branch in [b for b in MODALITIES if b in set(sub["branch"])]:
            g = sub[sub["branch"] == branch].set_index("mode_name").reindex(order)
            fig.add_trace(go.Bar(x=order, y=g["share"], name=branch, legendgroup=branch, showlegend=j == 0,
                                 marker_color=_modality_color(branch),
                                 error_y=dict(type="data", array=g["share_std"], visible=True, thickness=1)),
                          row=1, col=j + 1)
            fig.add_trace(go.Scatter(x=order, y=g["uniform"], mode="markers", name="uniform share",
                                     legendgroup="uniform", showlegend=j == 0 and branch == MODALITIES[0],
                                     marker=dict(symbol="line-ew-open", size=14, color="black")), row=1, col=j + 1)
    fig.update_yaxes(title_text="attention share on prompt tokens", range=[0, 1], row=1, col=1)
    fig.update_layout(barmode="group", title=title, template=_TEMPLATE, height=420,
                      legend=dict(orientation="h", y=-0.35))
    return fig


def similarity_heatmap(similarity: pd.DataFrame, title: Optional[str] = None) -> go.Figure:
    """Annotated cosine-similarity heatmap (−1 … 1, diverging colours)."""
    fig = px.imshow(similarity, text_auto=".2f", zmin=-1, zmax=1, color_continuous_scale="RdBu_r", aspect="auto")
    fig.update_layout(title=title, template=_TEMPLATE, height=460, coloraxis_colorbar=dict(title="cosine"))
    fig.update_xaxes(tickangle=-30)
    return fig


def prompt_pca_figure(pca_modes: pd.DataFrame, pca_tokens: Optional[pd.DataFrame] = None,
                      explained: Optional[Sequence[float]] = None, title: Optional[str] = None) -> go.Figure:
    """2-D PCA of the missing-type prompts: one labelled point per mode (panel 1), tokens per mode (panel 2)."""
    two = pca_tokens is not None and len(pca_tokens)
    titles = ["modes (all tokens flattened)"] + (["individual prompt tokens"] if two else [])
    fig = make_subplots(rows=1, cols=2 if two else 1, subplot_titles=titles, horizontal_spacing=0.1)
    for _, r in pca_modes.iterrows():
        fig.add_trace(go.Scatter(x=[r["pc1"]], y=[r["pc2"]], mode="markers+text", text=[r["mode_name"]],
                                 textposition="top center", name=r["mode_name"], legendgroup=r["mode_name"],
                                 marker=dict(size=14, color=_mode_color(r["mode"]))), row=1, col=1)
    if two:
        symbols = {"text": "circle", "audio": "square", "vision": "diamond"}
        for mode, g in pca_tokens.groupby("mode"):
            fig.add_trace(go.Scatter(x=g["pc1"], y=g["pc2"], mode="markers", name=MODE_NAMES[int(mode)],
                                     legendgroup=MODE_NAMES[int(mode)], showlegend=False,
                                     text=[f"{MODE_NAMES[int(mode)]} · {b} · token {t}"
                                           for b, t in zip(g["branch"], g["token"])],
                                     hovertemplate="%{text}<extra></extra>",
                                     marker=dict(size=6, opacity=0.6, color=_mode_color(mode),
                                                 symbol=[symbols.get(b, "circle") for b in g["branch"]])),
                          row=1, col=2)
    xt, yt = "PC1", "PC2"
    if explained is not None and len(explained) >= 2:
        xt, yt = f"PC1 ({explained[0]:.0%})", f"PC2 ({explained[1]:.0%})"
    fig.update_xaxes(title_text=xt, row=1, col=1)
    fig.update_yaxes(title_text=yt, row=1, col=1)
    fig.update_layout(title=title, template=_TEMPLATE, height=460)
    return fig


def generation_figure(quality: pd.DataFrame, metrics: Sequence[str] = ("mse", "cosine"),
                      title: Optional[str] = None) -> go.Figure:
    """Per time step error / similarity of generated vs real features: rows = metrics, columns = modalities,
    one line per mode in which the modality is generated (legend says from which sources)."""
    mods = [m for m in MODALITIES if m in set(quality["modality"])]
    fig = make_subplots(rows=len(metrics), cols=len(mods), subplot_titles=[f"{m} generated" for m in mods],
                        shared_xaxes=False, vertical_spacing=0.12, horizontal_spacing=0.06)
    for j, mod in enumerate(mods):
        sub = quality[quality["modality"] == mod]
        for mode, g in sub.groupby("mode"):
            label = f"{MODE_NAMES[int(mode)]} (from {g['sources'].iloc[0]})"
            for i, metric in enumerate(metrics):
                fig.add_trace(go.Scatter(x=g["timestep"], y=g[metric], mode="lines+markers", name=label,
                                         legendgroup=f"{mod}{mode}", showlegend=i == 0,
                                         line=dict(color=_mode_color(mode))), row=i + 1, col=j + 1)
    for i, metric in enumerate(metrics):
        fig.update_yaxes(title_text=metric, row=i + 1, col=1)
    fig.update_xaxes(title_text="time step", row=len(metrics))
    fig.update_layout(title=title, template=_TEMPLATE, height=300 * len(metrics) + 120,
                      legend=dict(orientation="h", y=-0.15))
    return fig


# ----------------------------------------------------------------------------------------------------------------------
# attributions
# ----------------------------------------------------------------------------------------------------------------------
def modality_importance_heatmap(importance: pd.DataFrame, value: str = "abs_importance",
                                title: Optional[str] = None) -> go.Figure:
    """Mode × modality heatmap of :func:`mplmm.interpret.modality_importance`; missing cells say "missing"."""
    modes = sorted(importance["mode"].unique())
    mods = [m for m in MODALITIES if m in set(importance["modality"])]
    z = np.full((len(modes), len(mods)), np.nan)
    text = [["" for _ in mods] for _ in modes]
    for _, r in importance.iterrows():
        i, j = modes.index(r["mode"]), mods.index(r["modality"])
        z[i, j] = r[value]
        text[i][j] = f"{r[value]:.3f}" + ("" if r.get("present", True) else "<br>(missing)")
    signed = value == "importance"
    lim = float(np.nanmax(np.abs(z))) if np.isfinite(z).any() else 1.0
    fig = go.Figure(go.Heatmap(z=z, x=mods, y=[MODE_NAMES[m] for m in modes], text=text, texttemplate="%{text}",
                               colorscale="RdBu_r" if signed else "Viridis", zmid=0 if signed else None,
                               zmin=None if signed else 0, zmax=None if signed else lim or 1.0,
                               colorbar=dict(title=value),
                               hovertemplate="%{y}<br>%{x}: %{z:.4f}<extra></extra>"))
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(title=title, template=_TEMPLATE, height=420)
    return fig


def _as_2d(a: Any) -> np.ndarray:
    arr = a.detach().cpu().numpy() if hasattr(a, "detach") else np.asarray(a)
    return arr[None, :] if arr.ndim == 1 else arr


def timestep_heatmaps(attributions: Mapping[str, Any], sample_labels: Optional[Sequence[str]] = None,
                      title: Optional[str] = None) -> go.Figure:
    """Per-sample time-step relevance: one heatmap per modality (rows = samples, columns = time steps),
    diverging colours centred on 0 with one shared scale."""
    names = [m for m in MODALITIES if m in attributions] + [m for m in attributions if m not in MODALITIES]
    arrays = [_as_2d(attributions[m]) for m in names]
    lim = max((float(np.abs(a).max()) for a in arrays if a.size), default=1.0) or 1.0
    n = arrays[0].shape[0] if arrays else 0
    labels = list(sample_labels) if sample_labels is not None else [f"sample {i}" for i in range(n)]
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=names, horizontal_spacing=0.04, shared_yaxes=True)
    for j, (name, arr) in enumerate(zip(names, arrays)):
        fig.add_trace(go.Heatmap(z=arr, x=list(range(arr.shape[1])), y=labels, coloraxis="coloraxis", name=name,
                                 hovertemplate=f"{name}<br>%{{y}}<br>step %{{x}}: %{{z:.4f}}<extra></extra>"),
                      row=1, col=j + 1)
        fig.update_xaxes(title_text="time step", row=1, col=j + 1)
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_layout(title=title, template=_TEMPLATE, height=max(300, 22 * n + 160),
                      coloraxis=dict(colorscale="RdBu_r", cmin=-lim, cmax=lim, colorbar=dict(title="relevance")))
    return fig


def timestep_bars(attributions: Mapping[str, Any], sample: int = 0, title: Optional[str] = None) -> go.Figure:
    """One sample's time-step relevance as bars, one row per modality."""
    names = [m for m in MODALITIES if m in attributions]
    fig = make_subplots(rows=len(names), cols=1, subplot_titles=names, vertical_spacing=0.12)
    for i, name in enumerate(names):
        arr = _as_2d(attributions[name])[int(sample)]
        fig.add_trace(go.Bar(x=list(range(arr.shape[0])), y=arr, name=name, marker_color=_modality_color(name),
                             hovertemplate=f"{name} step %{{x}}: %{{y:.4f}}<extra></extra>"), row=i + 1, col=1)
        fig.update_yaxes(title_text="relevance", row=i + 1, col=1)
    fig.update_xaxes(title_text="time step", row=len(names), col=1)
    fig.update_layout(title=title, template=_TEMPLATE, height=220 * len(names) + 100, showlegend=False)
    return fig


def attribution_summary_figure(summary: pd.DataFrame, value: str = "mean_abs",
                               title: Optional[str] = None) -> go.Figure:
    """Dataset-level relevance per time step: one panel per modality, a line per mode (dash per method)."""
    mods = [m for m in MODALITIES if m in set(summary["modality"])]
    methods = list(dict.fromkeys(summary["method"])) if "method" in summary.columns else [None]
    dashes = ["solid", "dash", "dot", "dashdot"]
    fig = make_subplots(rows=1, cols=len(mods), subplot_titles=mods, horizontal_spacing=0.06)
    for j, mod in enumerate(mods):
        sub = summary[summary["modality"] == mod]
        for k, method in enumerate(methods):
            part = sub if method is None else sub[sub["method"] == method]
            for mode, g in part.groupby("mode"):
                name = MODE_NAMES[int(mode)] + ("" if method is None else f" · {method}")
                fig.add_trace(go.Scatter(x=g["timestep"], y=g[value], mode="lines+markers", name=name,
                                         legendgroup=name, showlegend=j == 0,
                                         line=dict(color=_mode_color(mode), dash=dashes[k % len(dashes)])),
                              row=1, col=j + 1)
        fig.update_xaxes(title_text="time step", row=1, col=j + 1)
    fig.update_yaxes(title_text=value, row=1, col=1)
    fig.update_layout(title=title, template=_TEMPLATE, height=420, legend=dict(orientation="h", y=-0.25))
    return fig


# ----------------------------------------------------------------------------------------------------------------------
# panels' figures: missing-rate explorer and run comparison
# ----------------------------------------------------------------------------------------------------------------------
def missing_explorer_figure(result: Mapping[str, Any], title: Optional[str] = None) -> go.Figure:
    """Figure of :func:`mplmm.interpret.evaluate_missing`: the split's metrics (left) and predictions (right:
    prediction vs truth coloured by mode for regression, predicted vs true class counts for classification)."""
    metrics = {k: v for k, v in result["metrics"].items() if isinstance(v, (int, float)) and np.isfinite(v)}
    fig = make_subplots(rows=1, cols=2, subplot_titles=("metrics", "predictions"), horizontal_spacing=0.12)
    primary = result.get("primary_metric")
    fig.add_trace(go.Bar(x=list(metrics), y=list(metrics.values()), name="metrics", showlegend=False,
                         marker_color=[color_for(3) if k == primary else color_for(0) for k in metrics],
                         text=[f"{v:.3f}" for v in metrics.values()], textposition="outside"), row=1, col=1)
    pred = result["predictions"]
    if result.get("task", "regression") == "regression":
        for mode, g in pred.groupby("mode"):
            fig.add_trace(go.Scatter(x=g["truth"], y=g["pred"], mode="markers", name=MODE_NAMES[int(mode)],
                                     marker=dict(color=_mode_color(mode), size=6, opacity=0.75)), row=1, col=2)
        lo = float(min(pred["truth"].min(), pred["pred"].min())) if len(pred) else -1.0
        hi = float(max(pred["truth"].max(), pred["pred"].max())) if len(pred) else 1.0
        fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="y = x", showlegend=False,
                                 line=dict(color="grey", dash="dot")), row=1, col=2)
        fig.update_xaxes(title_text="truth", row=1, col=2)
        fig.update_yaxes(title_text="prediction", row=1, col=2)
    else:
        classes = sorted(set(pred["truth"]) | set(pred["pred"]))
        for col, name in (("truth", "true"), ("pred", "predicted")):
            counts = pred[col].value_counts().reindex(classes, fill_value=0)
            fig.add_trace(go.Bar(x=[str(c) for c in classes], y=counts.values, name=name), row=1, col=2)
        fig.update_xaxes(title_text="class", row=1, col=2)
    spec = result.get("spec", {})
    auto = (f"forced mode: {MODE_NAMES[result['forced_mode']]}" if result.get("forced_mode") is not None
            else f"missing rate {spec.get('rate', 0):.2f} ({spec.get('protocol', 'modality')} protocol)")
    fig.update_layout(title=title or auto, template=_TEMPLATE, height=420, barmode="group",
                      legend=dict(orientation="h", y=-0.2))
    return fig


def run_comparison_figure(histories: Mapping[str, pd.DataFrame], column: str = "valid_loss",
                          table: Optional[pd.DataFrame] = None, metric: Optional[str] = None,
                          title: Optional[str] = None) -> go.Figure:
    """Compare runs: ``column`` of each run's history over epochs (left) and ``metric`` of ``table`` (a
    :func:`mplmm.workbench.runs.find_runs` frame, one bar per run, right)."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=(f"{column} per epoch", metric or "test metric"),
                        horizontal_spacing=0.1)
    for i, (name, hist) in enumerate(histories.items()):
        if hist is None or column not in getattr(hist, "columns", []):
            continue
        x = hist["epoch"] if "epoch" in hist.columns else list(range(1, len(hist) + 1))
        fig.add_trace(go.Scatter(x=list(x), y=hist[column].tolist(), mode="lines+markers", name=name,
                                 legendgroup=name, line=dict(color=color_for(i))), row=1, col=1)
    if table is not None and metric and metric in table.columns:
        sub = table[table["run"].isin(list(histories))] if len(histories) else table
        names = list(sub["run"])
        colors = [color_for(list(histories).index(n)) if n in histories else color_for(0) for n in names]
        fig.add_trace(go.Bar(x=names, y=sub[metric].tolist(), name=metric, showlegend=False, marker_color=colors,
                             text=[f"{v:.3f}" if pd.notna(v) else "" for v in sub[metric]], textposition="outside"),
                      row=1, col=2)
    fig.update_xaxes(title_text="epoch", row=1, col=1)
    fig.update_layout(title=title, template=_TEMPLATE, height=420, legend=dict(orientation="h", y=-0.2))
    return fig


__all__ = [
    "attention_figure", "attention_grid", "attention_heatmap", "attribution_summary_figure", "generation_figure",
    "missing_explorer_figure", "modality_importance_heatmap", "prompt_pca_figure", "prompt_share_figure",
    "readout_attention_figure", "run_comparison_figure", "similarity_heatmap", "timestep_bars", "timestep_heatmaps",
]


# ----------------------------------------------------------------------------------------------------------------------
# one sample (mplmm explain)
# ----------------------------------------------------------------------------------------------------------------------
def mode_predictions_figure(per_mode: pd.DataFrame, title: Optional[str] = None) -> go.Figure:
    """One sample's prediction in each missing mode it can run in (columns ``mode_name`` and ``prediction``, or
    ``prob_<class>`` columns for classification); the sample's own mode is outlined."""
    own = per_mode.get("own_mode", pd.Series(False, index=per_mode.index)).astype(bool).tolist()
    line = dict(width=[3 if o else 0 for o in own], color="black")
    if "prediction" in per_mode.columns:
        fig = go.Figure(go.Bar(x=per_mode["mode_name"], y=per_mode["prediction"], marker_line=line,
                               marker_color=[_mode_color(m) for m in per_mode["mode"]],
                               hovertemplate="%{x}: %{y:.4f}<extra></extra>"))
        fig.update_yaxes(title_text="prediction")
    else:
        fig = go.Figure()
        for i, col in enumerate(c for c in per_mode.columns if c.startswith("prob_")):
            fig.add_trace(go.Bar(x=per_mode["mode_name"], y=per_mode[col], name=col[5:], marker_color=color_for(i),
                                 hovertemplate=f"{col[5:]} %{{x}}: %{{y:.3f}}<extra></extra>"))
        fig.update_layout(barmode="group")
        fig.update_yaxes(title_text="probability", range=[0, 1])
    fig.update_layout(title=title, template=_TEMPLATE, height=360)
    return fig


def modality_share_figure(shares: Mapping[str, float], title: Optional[str] = None) -> go.Figure:
    """Signed importance ``f(x) − f(x without modality)`` per modality of one sample, as bars."""
    names = [m for m in MODALITIES if m in shares]
    fig = go.Figure(go.Bar(x=names, y=[shares[m] for m in names], marker_color=[_modality_color(m) for m in names],
                           hovertemplate="%{x}: %{y:+.4f}<extra></extra>"))
    fig.update_yaxes(title_text="f(x) − f(x without modality)")
    fig.update_layout(title=title, template=_TEMPLATE, height=320)
    return fig
