"""Leaderboards from robustness runs (notebook 02's ``metrics.json``: ``curves`` and ``per_mode`` tagged with
``method`` and training ``seed``).

Per (dataset, protocol, metric), one table of methods: the mean ± std over training seeds (mask seeds averaged first)
of the metric at each evaluated test rate and of the area under the metric-vs-rate curve (AUC), a methods × missing
modes heatmap, and, with a reference method, each method's paired difference to it: per training seed present in
both, method − reference, then the mean and a 95% t-interval over those n seeds (no interval for n < 2). Beside it,
the robustness summaries under the papers' names (:mod:`mplmm.summaries`: EMT-DLFR AUILC, OpenVNA AIR, MultiBench
relative and effective robustness). Feature-noise curves (``noise_curves``) form groups of their own whose level is
the noise level, never a missing rate.
"""
from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Union

import numpy as np
import pandas as pd

from ... import metrics_file
from .. import runs

AUC = "AUC"  # in a column (metric, AUC): the area under the metric-vs-rate curve
NOISE = "noise"  # RobustnessGroup.level of feature-noise groups
REFERENCE_MARK = " (reference)"


@dataclass
class RobustnessGroup:
    """The robustness results of one dataset, protocol and metric, pooled over the runs that have them."""

    dataset: str
    protocol: str
    metric: str
    curves: pd.DataFrame  # method, seed, rate, mask_seed, <metric>, ...
    per_mode: pd.DataFrame  # method, seed, mode, <metric>, ... (may be empty)
    runs: list[str] = field(default_factory=list)
    label: str = ""  # the robustness runs' label (notebook 02's `label`, e.g. tuned / default)
    compute: pd.DataFrame = field(default_factory=pd.DataFrame)  # method, seed, epochs, train_seconds (may be empty)
    level: str = "rate"  # what the curves' ``rate`` column holds: the test missing rate, or the feature-noise level

    @property
    def title(self) -> str:
        what = "gaussian feature noise" if self.level == NOISE else f"{self.protocol} protocol" if self.protocol else ""
        parts = [self.dataset, what, self.metric, self.label]
        return " · ".join(p for p in parts if p)

    @property
    def level_name(self) -> str:
        """The x axis in words."""
        return "feature-noise level (missing rate 0)" if self.level == NOISE else "test missing rate"


Column = tuple[str, Union[float, str]]  # (metric, test rate) or (metric, AUC)


@dataclass
class Leaderboard:
    """A group's numbers: ``values`` maps each column to its per-(method, seed) Series; ``methods`` in ranking order,
    the ``rates`` shown, the ``metrics`` shown (the group's headline metric first), and the reference method if it
    is in the group (``wanted_reference``: the one asked for)."""

    group: RobustnessGroup
    values: dict[Column, pd.Series]
    methods: list[str]
    rates: list[float]
    metrics: list[str]
    reference: Optional[str]
    wanted_reference: Optional[str] = None

    @property
    def columns(self) -> list[Column]:
        """The methods table's columns: every metric at every rate, then the headline metric's AUC."""
        return [(m, r) for r in self.rates for m in self.metrics] + [(self.group.metric, AUC)]

    @property
    def compared(self) -> list[Column]:
        """The paired comparison's columns: the headline metric at every rate, then its AUC."""
        return [(self.group.metric, r) for r in self.rates] + [(self.group.metric, AUC)]

    def per_method(self, column: Column, method: str) -> pd.Series:
        """``column``'s values of ``method``, indexed by training seed (empty when it has none)."""
        series = self.values[column]
        return series.loc[method] if method in series.index.get_level_values(0) else series.iloc[:0]


# ----------------------------------------------------------------------------------------------------- statistics
def _t_coverage(t: float, df: int) -> float:
    """P(|T| <= t) for Student's t with integer ``df`` (closed form: Abramowitz & Stegun 26.7.3-4)."""
    theta = math.atan(t / math.sqrt(df))
    c2, s = math.cos(theta) ** 2, math.sin(theta)
    if df % 2:
        term, total = math.cos(theta), 0.0
        for j in range(1, (df - 1) // 2 + 1):
            total += term
            term *= c2 * (2 * j) / (2 * j + 1)
        return 2 / math.pi * (theta + s * total)
    term, total = 1.0, 0.0
    for j in range(df // 2):
        total += term
        term *= c2 * (2 * j + 1) / (2 * j + 2)
    return s * total


def t_quantile(df: int, level: float = 0.95) -> float:
    """The two-sided ``level`` quantile of Student's t with ``df`` degrees of freedom (2.776 for df 4)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    lo, hi = 0.0, 1.0
    while _t_coverage(hi, df) < level:
        hi *= 2
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _t_coverage(mid, df) < level else (lo, mid)
    return (lo + hi) / 2


def paired_interval(diffs: Iterable[float], level: float = 0.95) -> tuple[float, float, float, int]:
    """``(mean, low, high, n)`` of paired differences: a t-interval at ``level`` (NaN bounds for n < 2)."""
    d = np.asarray([x for x in diffs if x == x], dtype=float)
    n = len(d)
    if n == 0:
        return math.nan, math.nan, math.nan, 0
    mean = float(d.mean())
    if n < 2:
        return mean, math.nan, math.nan, 1
    half = t_quantile(n - 1, level) * float(d.std(ddof=1)) / math.sqrt(n)
    return mean, mean - half, mean + half, n


# ------------------------------------------------------------------------------------------------------ gathering
def _dataset_label(metrics: dict) -> str:
    ds = metrics.get("dataset")
    if isinstance(ds, dict):
        return str(ds.get("name") or ds.get("source") or "?")
    return str(ds) if ds else "?"


def _tagged(records: Optional[list], run: str) -> pd.DataFrame:
    """Records of one run as a frame with ``method`` (default: the run's name), ``seed`` (default 0) and ``_run``."""
    frame = pd.DataFrame(records or [])
    if not len(frame):
        return frame
    return frame.assign(method=frame["method"].astype(str) if "method" in frame else run,
                        seed=frame["seed"] if "seed" in frame else 0, _run=run)


def _pooled(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """The runs' frames in one; a method found in several runs becomes ``"<run>: <method>"``."""
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame()
    frame = pd.concat(frames, ignore_index=True)
    clash = frame.groupby("method")["_run"].transform("nunique") > 1
    return frame.assign(method=frame["method"].where(~clash, frame["_run"] + ": " + frame["method"])).drop(
        columns="_run")


def collect_groups(found: Iterable[tuple[str, dict]]) -> list[RobustnessGroup]:
    """Group ``(run name, metrics)`` pairs that have ``curves`` and ``metric`` by (dataset, protocol, metric, label),
    in order of appearance. A method name found in several runs of a group is labelled ``"<run>: <method>"``."""
    pooled: dict[tuple[str, str, str, str], list[tuple[str, dict]]] = {}
    for name, met in found:
        if met.get("curves") and isinstance(met.get("metric"), str):
            key = (_dataset_label(met), str(met.get("protocol") or ""), met["metric"], str(met.get("label") or ""))
            pooled.setdefault(key, []).append((name, met))
    groups = [RobustnessGroup(dataset, protocol, metric, _pooled([_tagged(m["curves"], n) for n, m in members]),
                              _pooled([_tagged(m.get("per_mode"), n) for n, m in members]), [n for n, _ in members],
                              label, _pooled([_tagged(m.get("runs"), n) for n, m in members]))
              for (dataset, protocol, metric, label), members in pooled.items()]
    noise: dict[tuple[str, str, str], list[tuple[str, dict]]] = {}
    for (dataset, _, metric, label), members in pooled.items():
        for name, met in members:
            if met.get("noise_curves"):
                noise.setdefault((dataset, metric, label), []).append((name, met))
    for (dataset, metric, label), members in noise.items():
        curves = _pooled([_tagged(_noise_as_level(m["noise_curves"]), n) for n, m in members])
        groups.append(RobustnessGroup(dataset, "", metric, curves, pd.DataFrame(), [n for n, _ in members], label,
                                      _pooled([_tagged(m.get("runs"), n) for n, m in members]), level=NOISE))
    return groups


def _noise_as_level(records: list) -> list:
    """Noise-curve records with the noise level in the ``rate`` column the tables read (the missing rate, 0, is
    dropped: these groups are labelled as noise everywhere they are shown)."""
    return [{**{k: v for k, v in rec.items() if k not in ("rate", NOISE)}, "rate": rec[NOISE]} for rec in records]


def folder_groups(path: Union[str, Path]) -> list[RobustnessGroup]:
    """The groups of a robustness run folder, or of every run folder directly under ``path`` (a grid's output root;
    runs whose ``status.json`` says anything but ok are left out)."""
    path = Path(path)
    if (path / metrics_file.METRICS).is_file():
        return collect_groups([(path.name, metrics_file.read_metrics(path))])
    found = []
    for folder in sorted(p for p in path.iterdir() if p.is_dir()) if path.is_dir() else []:
        status = runs.read_status(folder)
        if (folder / metrics_file.METRICS).is_file() and status.get("status", "ok") == "ok":
            found.append((folder.name, metrics_file.read_metrics(folder)))
    return collect_groups(found)


# ------------------------------------------------------------------------------------------------------ the table
def _higher_is_better(metric: str) -> bool:
    from ...metrics import metric_direction

    try:
        return metric_direction(metric) == "higher"
    except KeyError:
        return metric != "loss"


def build_leaderboard(group: RobustnessGroup, reference: Optional[str] = None,
                      rates: Optional[Iterable[float]] = None, metrics: Optional[Iterable[str]] = None) -> Leaderboard:
    """The numbers of ``group``, methods ranked by mean AUC of its metric. ``rates``: only these of the evaluated
    test rates as columns (the AUC always uses every rate); ``metrics``: more metric columns after the headline one
    (the comparison stays on the headline metric). ``reference`` is matched against method names (exactly, or as
    the part after ``"<run>: "`` when that is unique)."""
    from ...plots.robustness import auc_table

    shown_metrics = list(dict.fromkeys([group.metric, *(metrics or [])]))
    missing = [m for m in shown_metrics if m not in group.curves]
    if missing:
        have = [c for c in group.curves.columns if c not in ("method", "seed", "rate", "mask_seed", "protocol",
                                                             "split")]
        raise metrics_file.MetricsError(f"{group.title}: no metric {missing} in the curves; they have {have}")
    shown = sorted(float(r) for r in group.curves["rate"].unique())
    if rates is not None:
        wanted = [float(r) for r in rates]
        shown = [r for r in shown if any(abs(r - w) < 1e-9 for w in wanted)]
    means = group.curves.groupby(["method", "seed", "rate"], sort=False)[shown_metrics].mean()
    values: dict[Column, pd.Series] = {(m, r): means[m].xs(r, level="rate") for r in shown for m in shown_metrics}
    auc = auc_table(group.curves, group.metric).set_index(["method", "seed"])["auc"]
    values[(group.metric, AUC)] = auc
    order = auc.groupby(level="method", sort=False).mean()
    methods = list(order.sort_values(ascending=not _higher_is_better(group.metric), kind="stable").index)
    return Leaderboard(group, values, methods, shown, shown_metrics, _match_reference(reference, methods), reference)


def _match_reference(reference: Optional[str], methods: list[str]) -> Optional[str]:
    if reference is None or reference in methods:
        return reference
    hits = [m for m in methods if m.split(": ", 1)[-1] == reference]
    return hits[0] if len(hits) == 1 else None


def _pair(values: pd.Series) -> tuple[float, float]:
    """``(mean, std)`` of the non-missing values (std NaN with fewer than two, both NaN with none)."""
    values = values.dropna()
    return (float(values.mean()) if len(values) else math.nan, float(values.std(ddof=1)) if len(values) > 1
            else math.nan)


COMPUTE = ("epochs", "train_seconds")  # what training cost, per (method, seed): whole pipeline (notebook 02's runs)


def has_compute(group: RobustnessGroup) -> bool:
    """Whether any checkpoint of ``group`` recorded what its training cost (checkpoints before the record did not)."""
    frame = group.compute
    if not len(frame) or "epochs" not in frame:
        return False
    return bool(pd.to_numeric(frame["epochs"], errors="coerce").notna().any())


def method_compute(group: RobustnessGroup, method: str) -> dict[str, float]:
    """Mean epochs and training seconds of ``method``'s checkpoints over the whole pipeline (a prompt method's
    backbone pre-training included); NaN when its checkpoints did not record them."""
    frame = group.compute
    if not len(frame) or "method" not in frame:
        return {k: math.nan for k in COMPUTE}
    mine = frame[frame["method"] == method]
    return {k: float(pd.to_numeric(mine[k], errors="coerce").mean()) if k in mine and len(mine) else math.nan
            for k in COMPUTE}


def summary_rows(board: Leaderboard) -> list[dict]:
    """One row per method (ranking order): ``method``, ``seeds``, mean ``epochs`` and ``train_seconds`` (NaN when not
    recorded) and ``(mean, std)`` per column (std NaN with one seed)."""
    rows = []
    for method in board.methods:
        row: dict = {"method": method, "seeds": len(board.per_method((board.group.metric, AUC), method)),
                     **method_compute(board.group, method)}
        for col in board.columns:
            row[col] = _pair(board.per_method(col, method))
        rows.append(row)
    return rows


def comparison_rows(board: Leaderboard) -> list[dict]:
    """Per method other than the reference: ``method``, ``n`` (training seeds in both) and per compared column the
    paired ``(mean, low, high)`` of method − reference. Empty without a reference."""
    if board.reference is None:
        return []
    rows = []
    for method in board.methods:
        if method == board.reference:
            continue
        row: dict = {"method": method}
        for col in board.compared:
            mine, ref = board.per_method(col, method), board.per_method(col, board.reference)
            seeds = mine.index.intersection(ref.index)
            mean, low, high, n = paired_interval(mine[seeds] - ref[seeds])
            row[col] = (mean, low, high)
            row.setdefault("n", n)
        rows.append(row)
    return rows


# ------------------------------------------------------------------------------------------------------ rendering
def _header(columns: list[Column], prefix: str = "", level: str = "rate") -> list[str]:
    at = "@noise " if level == NOISE else "@"
    return [f"{prefix}AUC {m}" if r == AUC else f"{prefix}{m} {at}{r:g}" for m, r in columns]


def _mean_std(pair: tuple[float, float]) -> str:
    mean, std = pair
    if mean != mean:
        return "–"
    return f"{mean:.3f}" if std != std else f"{mean:.3f} ± {std:.3f}"


def _difference(triple: tuple[float, float, float]) -> str:
    mean, low, high = triple
    if mean != mean:
        return "–"
    return f"{mean:+.3f}" if low != low else f"{mean:+.3f} [{low:+.3f}, {high:+.3f}]"


def _label(board: Leaderboard, method: str) -> str:
    return method + (REFERENCE_MARK if method == board.reference else "")


def _count(value: float, digits: int = 0) -> str:
    return "–" if value != value else f"{value:.{digits}f}"


def table_cells(board: Leaderboard) -> tuple[list[str], list[list[str]]]:
    """Header and formatted rows of the methods table: ``epochs`` and ``train min`` (means over seeds, the whole
    pipeline: a prompt method's backbone included) when the checkpoints recorded them."""
    rows, cost = summary_rows(board), has_compute(board.group)
    header = ["method", "seeds", *(["epochs", "train min"] if cost else []),
              *_header(board.columns, level=board.group.level)]
    cells = [[_label(board, r["method"]), str(r["seeds"]),
              *([_count(r["epochs"]), _count(r["train_seconds"] / 60, 1)] if cost else []),
              *(_mean_std(r[c]) for c in board.columns)] for r in rows]
    return header, cells


def comparison_cells(board: Leaderboard) -> tuple[list[str], list[list[str]]]:
    """Header and formatted rows of the paired comparison (empty rows without a reference)."""
    header = ["method", "n", *_header(board.compared, "Δ ", board.group.level)]
    rows = [[r["method"], str(r["n"]), *(_difference(r[c]) for c in board.compared)] for r in comparison_rows(board)]
    return header, rows


def comparison_note(board: Leaderboard) -> str:
    """The sentence saying what the comparison table holds (or why there is none)."""
    if board.wanted_reference is None:
        return "No reference method set (grid key `reference`, or `--reference`): no paired comparison."
    if board.reference is None:
        return f"Reference method `{board.wanted_reference}` is not among these methods: no paired comparison."
    return (f"Paired difference to `{board.reference}`: method − {board.reference} per training seed present in "
            f"both (n seeds), mean [95% t-interval over seeds]; no interval when n < 2.")


#: the summaries table's columns: key of mplmm.summaries.summarise -> header
SUMMARY_COLUMNS: dict[str, str] = {
    "auc": "AUC", "auilc": "AUILC 0.0–1.0 (EMT-DLFR code)", "auilc_caption": "AUILC 0.1–1.0 (EMT-DLFR caption)",
    "air": "AIR (OpenVNA)", "air_effective": "clean − AIR (OpenVNA)",
    "relative_robustness": "relative robustness (MultiBench)",
    "effective_robustness": "effective robustness (MultiBench)",
}


def summaries_cells(board: Leaderboard, effective_reference: Optional[str] = None) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the summaries table: per metric shown (the headline one first) and method (ranking order),
    the mean ± std over training seeds of each summary of :func:`mplmm.summaries.summary_table` that applies to the
    group's curves (effective robustness against ``effective_reference``, default
    :data:`mplmm.summaries.EFFECTIVE_REFERENCE`)."""
    from ...summaries import EFFECTIVE_REFERENCE, summary_table

    tables = {m: summary_table(board.group.curves, m, reference=effective_reference or EFFECTIVE_REFERENCE)
              for m in board.metrics}
    keys = [k for k in SUMMARY_COLUMNS if k in tables[board.group.metric]]
    header = ["method", "metric", "seeds", *(SUMMARY_COLUMNS[k] for k in keys)]
    rows = []
    for metric, table in tables.items():
        for method in board.methods:
            mine = table[table["method"].astype(str) == method]
            rows.append([_label(board, method), metric, str(len(mine)),
                         *(_mean_std(_pair(mine[k])) if k in mine else "–" for k in keys)])
    return header, rows


def summaries_note(board: Leaderboard, effective_reference: Optional[str] = None) -> str:
    """The sentence saying what the summaries table holds."""
    from ...summaries import EFFECTIVE_REFERENCE

    ref = effective_reference or EFFECTIVE_REFERENCE
    return (f"Robustness summaries under the papers' names (docs/protocols.md), mean ± std over training seeds, of "
            f"the raw metric (for an error such as MAE a larger area is worse): AUILC needs the rates of its grid; "
            f"AIR and relative robustness are not divided by the level range; effective robustness is "
            f"MultiBench's, against `{ref}`'s mean curve (shown when `{ref}` was evaluated at the same levels), "
            f"without MultiBench's min-max normalisation.")


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def describe(group: RobustnessGroup) -> str:
    """The sentence saying what the methods table holds."""
    cost = (" Epochs and train min: mean over seeds of what training cost over the whole pipeline (a prompt "
            "method's backbone pre-training included; validation passes included)." if has_compute(group) else "")
    return (f"Mean ± std over training seeds (mask or noise seeds averaged first; one seed: its value) at each "
            f"{group.level_name}; AUC: area under {group.metric} vs that level, normalised.{cost} Runs: "
            f"{', '.join(group.runs)}.")


def to_markdown(board: Leaderboard, level: int = 3, effective_reference: Optional[str] = None) -> str:
    """The group's heading, methods table, robustness summaries and paired comparison as markdown."""
    parts = [f"{'#' * level} {board.group.title}", describe(board.group), _markdown_table(*table_cells(board)),
             summaries_note(board, effective_reference),
             _markdown_table(*summaries_cells(board, effective_reference)), comparison_note(board)]
    header, rows = comparison_cells(board)
    if rows:
        parts.append(_markdown_table(header, rows))
    return "\n\n".join(parts) + "\n"


def _html_table(header: list[str], rows: list[list[str]], css: str) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f'<td class="{"num" if i else ""}">{html.escape(c)}</td>'
                                    for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def to_html(board: Leaderboard, effective_reference: Optional[str] = None) -> str:
    """The description, the methods table, the robustness summaries and the paired comparison as HTML (no
    figures)."""
    out = f"<p>{html.escape(describe(board.group))}</p>" + _html_table(*table_cells(board), "leaderboard")
    out += (f"<p>{html.escape(summaries_note(board, effective_reference)).replace('`', '')}</p>"
            + _html_table(*summaries_cells(board, effective_reference), "leaderboard summaries"))
    header, rows = comparison_cells(board)
    out += f"<p>{html.escape(comparison_note(board)).replace('`', '')}</p>"
    if rows:
        out += _html_table(header, rows, "comparison")
    return out


# ------------------------------------------------------------------------------------------ between protocols
def protocol_sets(groups: list[RobustnessGroup]) -> list[list[RobustnessGroup]]:
    """Groups of one dataset, metric and label evaluated under two or more missing protocols (noise groups apart)."""
    by_key: dict[tuple[str, str, str], list[RobustnessGroup]] = {}
    for grp in groups:
        if grp.level != NOISE:
            by_key.setdefault((grp.dataset, grp.metric, grp.label), []).append(grp)
    return [members for members in by_key.values() if len({m.protocol for m in members}) > 1]


def protocol_cells(members: list[RobustnessGroup], summary: str = "air") -> tuple[list[str], list[list[str]]]:
    """Per method (first group's order): ``summary`` (:func:`mplmm.summaries.summarise` key) under each protocol,
    mean ± std over training seeds, e.g. OpenVNA's AIR under random (``frame``) and structural (``block``) drop."""
    from ...summaries import summary_table

    tables = [summary_table(m.curves, m.metric, reference=None) for m in members]
    methods = list(dict.fromkeys(str(x) for t in tables for x in t["method"]))
    header = ["method", *(f"{SUMMARY_COLUMNS.get(summary, summary)} · {m.protocol}" for m in members)]
    rows = []
    for method in methods:
        cells = []
        for t in tables:
            mine = t[t["method"].astype(str) == method]
            cells.append(_mean_std(_pair(mine[summary])) if summary in t and len(mine) else "–")
        rows.append([method, *cells])
    return header, rows


def protocol_title(members: list[RobustnessGroup], summary: str = "air") -> str:
    first = members[0]
    parts = [first.dataset, first.metric, first.label, f"{SUMMARY_COLUMNS.get(summary, summary)} by protocol"]
    return " · ".join(p for p in parts if p)


def protocol_note(members: list[RobustnessGroup]) -> str:
    return (f"The same checkpoints under {', '.join(f'`{m.protocol}`' for m in members)}: mean ± std over training "
            f"seeds of the summary over the evaluated rates (docs/protocols.md).")


# ------------------------------------------------------------------------------------------- between labels
BASE_LABEL = "default"  # with several labels, the one the others are compared with (else the first seen)


def label_pairs(groups: list[RobustnessGroup]) -> list[tuple[RobustnessGroup, RobustnessGroup]]:
    """``(base, other)`` for groups that share dataset, protocol and metric but carry different labels (e.g. tuned
    vs default configurations). A label with ``tuned`` in it is compared with the same label saying ``default``
    (``tuned_complete`` with ``default_complete``) when there is one; every other label without ``default`` in it
    with ``default``; without any ``default`` label, every label with the first one seen."""
    by_key: dict[tuple[str, str, str, str], list[RobustnessGroup]] = {}
    for grp in groups:
        by_key.setdefault((grp.dataset, grp.protocol, grp.metric, grp.level), []).append(grp)
    pairs = []
    for members in by_key.values():
        if len({m.label for m in members}) < 2:
            continue
        by_label = {m.label: m for m in members}
        if BASE_LABEL not in by_label and not any(BASE_LABEL in lab for lab in by_label):
            pairs += [(members[0], m) for m in members if m.label != members[0].label]
            continue
        for m in members:
            counterpart = m.label.replace("tuned", BASE_LABEL)
            if counterpart != m.label and counterpart in by_label:
                pairs.append((by_label[counterpart], m))
            elif BASE_LABEL not in m.label and BASE_LABEL in by_label:
                pairs.append((by_label[BASE_LABEL], m))
    return pairs


def label_comparison_cells(base: Leaderboard, other: Leaderboard) -> tuple[list[str], list[list[str]]]:
    """Per method in both boards: the base and the other label's mean ± std of the headline metric at every rate
    and its AUC, and the paired difference other − base per training seed (mean [95% t-interval])."""
    cols = other.compared
    lb, lo = base.group.label or "base", other.group.label or "other"
    header = ["method", "n"] + [h for c in _header(cols) for h in (f"{lb} {c}", f"{lo} {c}", f"Δ {c}")]
    rows = []
    for method in other.methods:
        if method not in base.methods:
            continue
        row, n = [method], 0
        for col in cols:
            mine, ref = other.per_method(col, method), base.per_method(col, method)
            seeds = mine.index.intersection(ref.index)
            mean, low, high, n = paired_interval(mine[seeds] - ref[seeds])
            row += [_mean_std(_pair(ref)), _mean_std(_pair(mine)), _difference((mean, low, high))]
        rows.append([row[0], str(n), *row[1:]])
    return header, rows


def label_note(base: Leaderboard, other: Leaderboard) -> str:
    return (f"{other.group.label} vs {base.group.label}: the same methods under both labels; Δ = "
            f"{other.group.label} − {base.group.label} per training seed present in both (n seeds), mean [95% "
            f"t-interval over seeds].")


def label_markdown(base: Leaderboard, other: Leaderboard, level: int = 3) -> str:
    title = f"{base.group.dataset} · {base.group.metric} · {other.group.label} vs {base.group.label}"
    return "\n\n".join([f"{'#' * level} {title}", label_note(base, other),
                         _markdown_table(*label_comparison_cells(base, other))]) + "\n"


def protocol_html(members: list[RobustnessGroup]) -> str:
    """The between-protocols table of :func:`protocol_cells` with its sentence, as HTML."""
    return (f"<p>{html.escape(protocol_note(members)).replace('`', '')}</p>"
            + _html_table(*protocol_cells(members), "comparison"))


def label_html(base: Leaderboard, other: Leaderboard) -> str:
    return (f"<p>{html.escape(label_note(base, other))}</p>"
            + _html_table(*label_comparison_cells(base, other), "comparison"))


def markdown_for(path: Union[str, Path], reference: Optional[str] = None, rates: Optional[Iterable[float]] = None,
                 metrics: Optional[Iterable[str]] = None, effective_reference: Optional[str] = None) -> str:
    """Every leaderboard of a run folder or a grid's output root as markdown (``python -m mplmm table``); the
    reference defaults to the one recorded in the output root's ``grid.json``; ``rates`` and ``metrics`` as in
    :func:`build_leaderboard`."""
    path = Path(path)
    if reference is None:
        reference = runs.read_grid_record(path).get("reference")
    groups = folder_groups(path)
    if not groups:
        raise metrics_file.MetricsError(f"{path}: no robustness results (a metrics.json with 'curves', as notebook 02 "
                                "writes) in this folder or the run folders directly under it")
    rates = list(rates) if rates is not None else None
    metrics = list(metrics) if metrics is not None else None
    parts = [to_markdown(build_leaderboard(g, reference, rates, metrics), effective_reference=effective_reference)
             for g in groups]
    parts += [label_markdown(build_leaderboard(a, reference, rates), build_leaderboard(b, reference, rates))
              for a, b in label_pairs(groups)]
    parts += ["\n\n".join([f"### {protocol_title(members)}", protocol_note(members),
                            _markdown_table(*protocol_cells(members))]) + "\n" for members in protocol_sets(groups)]
    return "\n".join(parts)
