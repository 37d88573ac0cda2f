"""Markdown table of a robustness run (``robustness.csv`` written by notebooks/02_robustness.ipynb).

Per method: metrics at the complete test set (rate 0) and at the training rate, and the area under the metric-vs-rate
curve; each value is the mean ± std over TRAINING seeds of the mean over mask seeds.

    python scripts/compare_table.py papermill_runs/compare/robustness_mosi/robustness.csv [--rate 0.7]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mplmm.evaluate import area_under_curve  # noqa: E402


def table(curves: pd.DataFrame, rate: float, metrics: list[str], auc_metric: str) -> pd.DataFrame:
    per_seed = curves.groupby(["method", "seed", "rate"])[metrics].mean().reset_index()
    rows = []
    for method, g in per_seed.groupby("method"):
        row = {"method": method, "seeds": g["seed"].nunique()}
        for r in (0.0, rate):
            at = g[g["rate"].round(6) == round(r, 6)]
            for m in metrics:
                row[f"{m} @{r:g}"] = f"{at[m].mean():.3f} ± {at[m].std(ddof=1) if len(at) > 1 else 0:.3f}"
        aucs = [area_under_curve(curves[(curves.method == method) & (curves.seed == s)], auc_metric)
                for s in g["seed"].unique()]
        s = pd.Series(aucs)
        row[f"AUC {auc_metric}"] = f"{s.mean():.3f} ± {s.std(ddof=1) if len(s) > 1 else 0:.3f}"
        rows.append(row)
    out = pd.DataFrame(rows)
    key = f"{metrics[0]} @{rate:g}"
    return out.sort_values(key, ascending=False, key=lambda c: c.str.split(" ").str[0].astype(float))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("csv")
    ap.add_argument("--rate", type=float, default=0.7)
    ap.add_argument("--metrics", nargs="+", default=["Non0_acc_2", "Non0_F1_score", "MAE"])
    args = ap.parse_args()
    curves = pd.read_csv(args.csv)
    t = table(curves, args.rate, args.metrics, args.metrics[0])
    print("| " + " | ".join(t.columns) + " |")
    print("|" + "---|" * len(t.columns))
    for row in t.itertuples(index=False):
        print("| " + " | ".join(str(v) for v in row) + " |")


if __name__ == "__main__":
    main()
