"""Rewrite the result tables of docs/results.md from the grids' output folders.

    python scripts/results_tables.py                          # every published grid whose output folder exists
    python scripts/results_tables.py tune_mosi --date 2026-12-01
    python scripts/results_tables.py compare --root /data/papermill_runs

For each published grid (``compare``, ``tune_mosi``, ``ablation_mosi``, ``protocols_mosi``) whose output folder
``<root>/<grid>/`` exists, ``docs/results/<grid>.md`` is replaced by a one-line provenance (the equivalent
``python -m mplmm table`` command, the grid file and the date) followed by every leaderboard of that folder, as
``markdown_for`` prints them.
A grid without an output folder keeps its published file: the tables in this checkout stay as they were measured.
"""
from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mplmm.workbench.batch import markdown_for  # noqa: E402  (the checkout's package, put on the path above)

#: the grids whose tables docs/results.md publishes, with the table options they were published with
GRIDS: dict[str, dict] = {
    "compare": {"rates": [0.0, 0.7], "metrics": ["Non0_F1_score", "MAE"]},
    "tune_mosi": {"rates": [0.0, 0.7]},
    "ablation_mosi": {"rates": [0.0, 0.7, 1.0], "metrics": ["MAE"]},
    "protocols_mosi": {"rates": [0.0, 0.5, 1.0], "metrics": ["MAE"]},
}
HEADER = "% scripts/results_tables.py rewrites this file from the grid's output folder, when that folder exists.\n"


def table_command(grid: str, folder: Path) -> str:
    """The ``python -m mplmm table`` command that prints the same tables."""
    opts = GRIDS[grid]
    cmd = f"python -m mplmm table {folder.as_posix()} --rates " + " ".join(f"{r:g}" for r in opts["rates"])
    if opts.get("metrics"):
        cmd += " --metrics " + " ".join(opts["metrics"])
    return cmd


def provenance(grid: str, folder: Path, date: str) -> str:
    """One line: the command, the grid file and the date."""
    return (f"*Made by `{table_command(grid, folder)}` from the runs of `papermill_runs/grids/{grid}.yaml`, "
            f"{date}.*")


def write_tables(grid: str, root: Path, out_dir: Path, date: str) -> Path | None:
    """Replace ``out_dir/<grid>.md`` from ``root/<grid>/``; None (file untouched) when that folder does not exist."""
    folder = root / grid
    if not folder.is_dir():
        return None
    opts = GRIDS[grid]
    tables = markdown_for(folder, rates=opts["rates"], metrics=opts.get("metrics"))
    shown = folder.relative_to(ROOT) if folder.resolve().is_relative_to(ROOT) else folder
    path = out_dir / f"{grid}.md"
    path.write_text(f"{HEADER}\n{provenance(grid, shown, date)}\n\n{tables.rstrip()}\n", encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("grids", nargs="*", help=f"grids to rewrite, of {', '.join(GRIDS)} (default: all of them)")
    ap.add_argument("--root", type=Path, default=ROOT / "papermill_runs", help="folder holding the grids' outputs")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "results", help="where the table files are")
    ap.add_argument("--date", default=dt.date.today().isoformat(), help="date in the provenance line")
    args = ap.parse_args(argv)
    unknown = [g for g in args.grids if g not in GRIDS]
    if unknown:
        ap.error(f"no published tables for {', '.join(unknown)} (known: {', '.join(GRIDS)})")
    for grid in args.grids or list(GRIDS):
        path = write_tables(grid, args.root.resolve(), args.out, args.date)
        print(f"{grid}: wrote {path}" if path else f"{grid}: no {args.root / grid}/, published tables kept")
    return 0


if __name__ == "__main__":
    sys.exit(main())
