#!/usr/bin/env python
"""Refresh the README screenshots from the browser tests.

Runs ``tests/browser`` (headless Chromium; see docs/browser_tests.md), which writes its screenshots to
``tests/browser/_output/``, then copies

* a JupyterLab widget panel  -> ``docs/screenshot_jupyterlab_widgets.png``
  (first of ``01_train``, ``02_robustness``, ``03_prompt_attention``, ``04_attributions``;
  ``<notebook>_widget_panel.png``)
* an HTML report             -> ``docs/screenshot_report.png``
  (``report_robustness.png``, else the first ``report_*.png``)

Usage::

    python scripts/take_screenshots.py                       # reports of papermill_runs/demo when it exists
    python scripts/take_screenshots.py --notebooks notebooks/03_prompt_attention.ipynb
    python scripts/take_screenshots.py --no-run              # only copy what the last test run left
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "tests" / "browser" / "_output"
DOCS = ROOT / "docs"
WIDGET_SOURCES = ("01_train", "02_robustness", "03_prompt_attention", "04_attributions")
TARGET_WIDGETS = DOCS / "screenshot_jupyterlab_widgets.png"
TARGET_REPORT = DOCS / "screenshot_report.png"


def pick_widget_shot() -> Path | None:
    for stem in WIDGET_SOURCES:
        candidate = OUTPUT / f"{stem}_widget_panel.png"
        if candidate.is_file():
            return candidate
    found = sorted(OUTPUT.glob("*_widget_panel.png"))
    return found[0] if found else None


def pick_report_shot() -> Path | None:
    preferred = OUTPUT / "report_robustness.png"
    if preferred.is_file():
        return preferred
    found = sorted(p for p in OUTPUT.glob("report_*.png") if p.name != "report_index.png")
    return found[0] if found else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--notebooks", default=None,
                    help="comma-separated notebooks opened in JupyterLab (default: the tests' 01_train, "
                         "02_robustness)")
    ap.add_argument("--reports", default=None,
                    help="finished grid output whose reports are opened (default: papermill_runs/demo when it "
                         "has an index.html, else the tests run tiny.yaml)")
    ap.add_argument("--no-run", action="store_true", help="do not run the tests, only copy their screenshots")
    args = ap.parse_args(argv)

    rc = 0
    if not args.no_run:
        env = dict(os.environ, MPLMM_REQUIRE_BROWSER="1")
        if args.notebooks:
            env["MPLMM_BROWSER_NOTEBOOKS"] = args.notebooks
        reports = args.reports or ("papermill_runs/demo"
                                   if (ROOT / "papermill_runs" / "demo" / "index.html").is_file() else None)
        if reports:
            env["MPLMM_BROWSER_REPORTS"] = str((ROOT / reports).resolve())
        rc = subprocess.call([sys.executable, "-m", "pytest", "-q", "tests/browser", "-m", "browser"],
                             cwd=ROOT, env=env)
    copied = 0
    for source, target in ((pick_widget_shot(), TARGET_WIDGETS), (pick_report_shot(), TARGET_REPORT)):
        if source is None:
            print(f"take_screenshots: nothing in {OUTPUT.relative_to(ROOT)} for {target.relative_to(ROOT)}",
                  file=sys.stderr)
            continue
        DOCS.mkdir(exist_ok=True)
        shutil.copyfile(source, target)
        copied += 1
        print(f"{source.relative_to(ROOT)} -> {target.relative_to(ROOT)}")
    if rc:
        print(f"take_screenshots: the browser tests failed (exit {rc}); screenshots copied anyway", file=sys.stderr)
    return rc or (0 if copied == 2 else 1)


if __name__ == "__main__":
    sys.exit(main())
