"""Real absence at a glance: what extraction could not deliver (per modality and reason), and predictions per
pattern of what the samples really have."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from ..constants import MODALITIES
from ..extract.pipeline import reason_kinds
from ._style import color_for


def absence_table(report: pd.DataFrame) -> pd.DataFrame:
    """Modality x outcome counts of an extraction report (``extract_report.csv``): ``ok`` and each reason of
    absence, numbers in a reason replaced by ``N`` so that like reasons count together."""
    counts = {m: reason_kinds(report[m]).value_counts() for m in MODALITIES if m in report}
    return pd.DataFrame(counts).fillna(0).astype(int).sort_index().rename_axis(index="outcome", columns="modality")


def absence_figure(report: pd.DataFrame, title: str = "What each modality became, per clip") -> go.Figure:
    """Stacked bars: per modality the clips extracted (``ok``) and the clips absent, by reason."""
    table = absence_table(report)
    order = ["ok"] + [o for o in table.index if o != "ok"]
    fig = go.Figure()
    for i, outcome in enumerate(o for o in order if o in table.index):
        fig.add_bar(x=list(table.columns), y=table.loc[outcome].tolist(), name=outcome,
                    marker_color="#2ca02c" if outcome == "ok" else color_for(i))
    fig.update_layout(barmode="stack", title=title, yaxis_title="clips", height=380, legend_title="outcome")
    return fig


def predictions_by_pattern_figure(table: pd.DataFrame, column: str = "prediction",
                                  title: str = "Predictions by what the samples have") -> go.Figure:
    """Box plot of ``column`` (a prediction table from :func:`mplmm.predict`) per ``present`` pattern, with counts."""
    fig = go.Figure()
    for i, (pattern, part) in enumerate(table.groupby("present", sort=True)):
        fig.add_box(y=part[column], name=f"{pattern or 'nothing'} (n={len(part)})", marker_color=color_for(i),
                    boxpoints="all", jitter=0.3)
    fig.update_layout(title=title, yaxis_title=column, showlegend=False, height=380)
    return fig
