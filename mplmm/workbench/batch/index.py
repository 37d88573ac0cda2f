"""The grid's index: ``index.csv`` (one row per run), ``index.html`` (the tuning studies of tuning stages; per dataset,
protocol, metric and label a combined robustness figure, the leaderboard of methods, the per-mode heatmap and the
paired comparison with the grid's reference method, and tables between labels; the results per observed pattern of
missingness; then the runs table) and ``grid.json``."""
from __future__ import annotations

import html
import json
import os
import time
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from ... import metrics_file
from .. import runs
from .execute import error_text
from .grid import INJECTED, Grid, rel_path
from .leaderboard import (
    RobustnessGroup,
    build_leaderboard,
    collect_groups,
    label_html,
    label_pairs,
    protocol_html,
    protocol_sets,
    protocol_title,
    to_html,
)
from .report import plotlyjs_tag, shared_static


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def key_metrics(metrics: dict, exclude: Iterable[str] = ()) -> dict[str, float]:
    """The headline numbers of a ``metrics.json``: its ``key_metrics`` mapping if it has one; else the test primary
    metric (+ MAE/Acc/F1) and each method's AUC; else the first top-level numbers not named in ``exclude`` (the
    notebook's parameters)."""
    given = metrics.get("key_metrics")
    if isinstance(given, dict):
        return {str(k): v if isinstance(v, int) else float(v) for k, v in given.items() if _is_number(v)}
    out: dict[str, float] = {}
    test = metrics.get("test")
    if isinstance(test, dict):
        prim = metrics.get("primary_metric")
        for k in [prim, "MAE", "Acc", "F1"]:
            if k in test and _is_number(test[k]):
                out[f"test.{k}"] = float(test[k])
    valid = metrics.get("valid")
    if not out and isinstance(valid, dict) and not test:  # a tuning trial: the test split was never evaluated
        prim = metrics.get("primary_metric")
        for k in [prim, "MAE"]:
            if k in valid and _is_number(valid[k]):
                out[f"valid.{k}"] = float(valid[k])
    for rec in metrics.get("auc_summary") or []:
        if isinstance(rec, dict) and _is_number(rec.get("auc_mean")):
            out[f"AUC {rec.get('method')}"] = float(rec["auc_mean"])
    if not out:
        skip = set(exclude)
        for k, v in metrics.items():
            if _is_number(v) and k not in skip:
                out[k] = float(v)
            if len(out) >= 4:
                break
    return out


def index_frame(g: Grid) -> pd.DataFrame:
    """One row per run: run, stage, status, duration, error, parameters (JSON), key and test metrics."""
    rows = []
    for run in g.all_runs():
        st = runs.read_status(run.folder)
        met = metrics_file.read_metrics(run.folder) if st.get("status") == "ok" else {}
        params = {k: v for k, v in (st.get("params") or {}).items() if k != INJECTED}
        err = st.get("error") or {}
        row = {"run": run.name, "stage": run.stage.name, "status": st.get("status") or "not run",
               "duration_s": st.get("duration_s"), "error": error_text(err) if err else "",
               "params": json.dumps(params, sort_keys=True), "folder": rel_path(g, run.folder),
               **{f"grid.{k}": v for k, v in run.keys.items()}}
        row.update(key_metrics(met, run.stage.accepted))
        if isinstance(met.get("test"), dict):
            row.update({f"test.{k}": float(v) for k, v in met["test"].items() if _is_number(v)})
        rows.append(row)
    return pd.DataFrame(rows)


def robustness_groups(g: Grid) -> list[RobustnessGroup]:
    """The robustness results of every ok run whose ``metrics.json`` has ``curves``, one group per (dataset,
    protocol, metric): curves of different datasets or metrics never share an axis or a table."""
    ok = [r for r in g.all_runs() if runs.read_status(r.folder).get("status") == "ok"]
    return collect_groups((r.name, metrics_file.read_metrics(r.folder)) for r in ok)


def _overview(g: Grid, group: RobustnessGroup):
    from ...plots.robustness import robustness_figure

    where = " · ".join(x for x in (g.name, group.dataset, f"{group.protocol} protocol" if group.protocol else "")
                       if x)
    title = f"{group.metric} vs {group.level_name} (mean ± std over training seeds) · {where}"
    return robustness_figure(group.curves, group.metric, title=title)


def robustness_overviews(g: Grid) -> list:
    """One combined robustness figure per group of :func:`robustness_groups` (empty if none)."""
    return [_overview(g, group) for group in robustness_groups(g)]


def _figure_html(fig, div_id: str, height: int) -> str:
    return fig.to_html(full_html=False, include_plotlyjs=False, default_height=height, div_id=div_id)


def robustness_html(g: Grid) -> str:
    """The index's robustness section (empty without robustness runs): per group a heading, the combined figure,
    the leaderboard, the per-mode heatmap and the paired comparison with ``g.reference``."""
    from ...plots.robustness import per_mode_heatmap

    groups = robustness_groups(g)
    parts = ["<h2>Robustness</h2>"] if groups else []
    for i, group in enumerate(groups):
        suffix = f"-{i + 1}" if i else ""
        board = build_leaderboard(group, g.reference)
        parts += [f"<h3>{html.escape(group.title)}</h3>",
                  _figure_html(_overview(g, group), "robustness-figure" + suffix, 480), to_html(board)]
        if len(group.per_mode) and group.metric in group.per_mode:
            fig = per_mode_heatmap(group.per_mode, group.metric,
                                   title=f"{group.metric} per missing mode (mean over training seeds)")
            parts.append(_figure_html(fig, "per-mode-heatmap" + suffix, fig.layout.height or 300))
    for members in protocol_sets(groups):  # e.g. OpenVNA's AIR under random and structural drop
        parts += [f"<h3>{html.escape(protocol_title(members))}</h3>", protocol_html(members)]
    for base, other in label_pairs(groups):  # e.g. tuned vs default configurations of the same methods
        rates = _few_rates(base)  # three columns per rate: a few rates keep the table readable
        parts += [f"<h3>{html.escape(base.dataset)} · {html.escape(base.metric)} · {html.escape(other.label)} vs "
                  f"{html.escape(base.label)}</h3>",
                  label_html(build_leaderboard(base, g.reference, rates), build_leaderboard(other, g.reference, rates))]
    return "\n".join(parts)


def pattern_frame(g: Grid) -> pd.DataFrame:
    """``run, method, pattern, n, metric, value``: the by-observed-pattern records (``by_pattern``: a list of
    records, as notebooks 02 and 07 write them) of every ok run; empty when there are none."""
    rows = []
    for run in g.all_runs():
        if runs.read_status(run.folder).get("status") != "ok":
            continue
        met = metrics_file.read_metrics(run.folder)
        recs, metric = met.get("by_pattern"), met.get("metric") or met.get("primary_metric")
        if not isinstance(recs, list) or not metric:
            continue
        for rec in recs:
            if isinstance(rec, dict) and _is_number(rec.get(metric)):
                rows.append({"run": run.name, "method": rec.get("method") or run.name, "pattern": rec.get("pattern"),
                             "n": rec.get("n"), "metric": metric, "value": float(rec[metric])})
    return pd.DataFrame(rows, columns=["run", "method", "pattern", "n", "metric", "value"])


def patterns_html(g: Grid) -> str:
    """The index's section on real absence (empty when no run recorded per-pattern results): per metric a table of
    patterns (what the samples really have, with their count) against runs, under no simulated drop."""
    frame = pattern_frame(g)
    if frame.empty:
        return ""
    parts = ["<h2>By observed pattern</h2><p>What the samples really have (no simulated drop): each pattern's "
             "count and metric per run. A sample that lacks a modality is never scored as complete.</p>"]
    for metric, part in frame.groupby("metric", sort=False):
        table = part.assign(column=part["run"] + " · " + part["method"].astype(str)).pivot_table(
            index=["pattern", "n"], columns="column", values="value", aggfunc="mean")
        table.columns.name = "run · method (mean over seeds)"
        parts.append(f"<h3>{html.escape(str(metric))}</h3>")
        parts.append(table.to_html(float_format=lambda v: f"{v:.4f}", classes="leaderboard", border=0))
    return "\n".join(parts)


SUMMARY_RATES = (0.0, 0.5, 0.7, 1.0)  # the rates of the index's tables between labels (when evaluated)


def _few_rates(group: RobustnessGroup) -> list[float]:
    """The evaluated rates among SUMMARY_RATES (every rate when at most four were evaluated)."""
    have = sorted(float(r) for r in group.curves["rate"].unique())
    if len(have) <= len(SUMMARY_RATES):
        return have
    return [r for r in have if any(abs(r - w) < 1e-9 for w in SUMMARY_RATES)] or have


def tuning_html(g: Grid) -> str:
    """The index's tuning section (empty without tuning stages): per tuning stage the table of its studies (trials
    used, best validation value, chosen configuration), then per study the optimisation history and the parameter
    importances."""
    from .tune import studies_of, study_of

    stages = [s for s in g.stages if s.tune is not None]
    if not stages:
        return ""
    from ..tuning import history_figure, importance_figure, study_table

    parts = ["<h2>Tuning</h2>"]
    for stage in stages:
        spec = stage.tune
        studies = [st for st in (study_of(g, grp[0]) for grp in studies_of(g, stage)) if st is not None]
        journal = html.escape(rel_path(g, g.output_root / "optuna_journal.log"))
        parts.append(f"<h3>{html.escape(stage.name)}</h3><p>{spec.trials} trials per study (the same for every grid "
                     f"point), objective: validation <code>{html.escape(spec.objective)}</code> ({spec.direction}), "
                     f"sampler {spec.sampler} seeded {spec.seed}; studies in <code>{journal}</code> (open one in "
                     f"<code>notebooks/05_tuning.ipynb</code>).</p>")
        if not studies:
            parts.append("<p>No study has started yet.</p>")
            continue
        table = study_table(studies)
        table["best_value"] = table["best_value"].map(lambda v: f"{v:.4f}" if v == v else "–")
        table["best_params"] = table["best_params"].map(_fmt_params)
        parts.append(table.to_html(index=False, escape=False, classes="leaderboard", border=0))
        for i, st in enumerate(studies):  # history and importance side by side, one row per study
            div = f"tuning-{stage.name}-{i}"
            pair = [_figure_html(history_figure(st, spec.objective), f"{div}-history", 360)]
            imp = importance_figure(st, spec.objective)
            if imp is not None:
                pair.append(_figure_html(imp, f"{div}-importance", 360))
            parts.append('<div class="pair">' + "".join(f"<div>{f}</div>" for f in pair) + "</div>")
    return "\n".join(parts)


_INDEX_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;font-size:13px}th,td{border:1px solid #ddd;padding:4px 8px;vertical-align:top}
th{background:#f4f4f4;text-align:left}tr.failed td{background:#fdecea}tr.notrun td{color:#888}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}code{font-size:12px}.err{color:#b00020;max-width:30em}
table.leaderboard,table.comparison{margin:0.5em 0 1em}h3{margin-top:2em}
.pair{display:grid;grid-template-columns:1fr 1fr;gap:1em}.pair>div{min-width:0;overflow:hidden}
"""


def _fmt_number(v: float) -> str:
    """A count (recorded as an integer) as one (``63``), anything else with four decimals."""
    return str(v) if isinstance(v, int) else f"{v:.4f}"


def _fmt_params(params_json: str, limit: int = 60) -> str:
    """A run's parameters as ``<code>key=value</code>`` lines (long values cut)."""
    params = json.loads(params_json) if params_json else {}
    lines = []
    for k, v in params.items():
        text = v if isinstance(v, str) else json.dumps(v)
        text = text if len(text) <= limit else text[:limit - 3] + "..."
        lines.append(f"<code>{html.escape(k)}={html.escape(text)}</code>")
    return "<br>".join(lines)


def write_index(g: Grid) -> Path:
    """Write ``index.csv`` (one row per run), ``grid.json`` and ``index.html`` (the runs table and the robustness
    section); plotly.js comes from the shared copy, or is embedded when ``g.report["standalone"]``."""
    frame = index_frame(g)
    g.output_root.mkdir(parents=True, exist_ok=True)
    runs.write_text(g.output_root / runs.INDEX_CSV, frame.to_csv(index=False))
    runs.write_grid_record(g.output_root, {"name": g.name, "grid": g.path, "reference": g.reference,
                                           "report": g.report})
    rows_html = []
    for row in frame.to_dict("records"):
        folder = Path(row["folder"])
        run_dir = g.root / folder if not folder.is_absolute() else folder
        links = []
        for fname, label in ((runs.REPORT, "report"), (runs.NOTEBOOK, "notebook"), (runs.LOG, "log")):
            if (run_dir / fname).is_file():
                href = os.path.relpath(run_dir / fname, g.output_root)
                links.append(f'<a href="{html.escape(Path(href).as_posix())}">{label}</a>')
        stage = next(s for s in g.stages if s.name == row["stage"])
        shown = key_metrics(metrics_file.read_metrics(run_dir), stage.accepted) if row["status"] == "ok" else {}
        metrics_html = "<br>".join(f"{html.escape(k)} = {_fmt_number(v)}" for k, v in shown.items())
        cls = {"failed": "failed", "not run": "notrun"}.get(row["status"], "")
        dur = "" if row["duration_s"] is None or row["duration_s"] != row["duration_s"] else f"{row['duration_s']:.1f}"
        status_html = html.escape(row["status"])
        if row["error"]:
            status_html += f'<div class="err">{html.escape(row["error"])}</div>'
        rows_html.append(
            f'<tr class="{cls}"><td><code>{html.escape(row["run"])}</code></td><td>{html.escape(row["stage"])}</td>'
            f'<td>{_fmt_params(row["params"])}</td><td>{status_html}</td><td class="num">{dur}</td>'
            f'<td class="num">{metrics_html}</td><td>{" · ".join(links)}</td></tr>')
    path = g.output_root / runs.INDEX_HTML
    robustness = robustness_html(g)
    tuning = tuning_html(g)
    patterns = patterns_html(g)
    head_js = ""
    if robustness or tuning:
        head_js = plotlyjs_tag(path, None if g.report.get("standalone") else shared_static(g.output_root))
    ok = int((frame["status"] == "ok").sum()) if len(frame) else 0
    doc = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(g.name)} · mplmm batch</title>
<style>{_INDEX_CSS}</style>
{head_js}</head><body>
<h1>{html.escape(g.name)}</h1>
<p>Grid <code>{html.escape(g.path)}</code> · {len(frame)} runs, {ok} ok · written {time.strftime('%Y-%m-%d %H:%M')}
· <a href="{runs.INDEX_CSV}">{runs.INDEX_CSV}</a></p>
{tuning}
{robustness}
{patterns}
{"<h2>Runs</h2>" if tuning or robustness or patterns else ""}
<table><thead><tr><th>run</th><th>stage</th><th>params</th><th>status</th><th>duration [s]</th>
<th>key metrics</th><th>files</th></tr></thead><tbody>
{chr(10).join(rows_html)}
</tbody></table>
</body></html>
"""
    return runs.write_text(path, doc)
