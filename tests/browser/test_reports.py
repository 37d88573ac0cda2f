"""The exported HTML reports of a batch grid, opened from disk in headless Chromium with the network disabled.

The grid is ``papermill_runs/grids/tiny.yaml`` run into a temporary output root (stages whose notebook does not exist
yet are dropped), or an already finished grid output given by ``MPLMM_BROWSER_REPORTS=papermill_runs/demo``.
For ``index.html`` and every ``<run>/report.html``:

* every request other than ``file:``/``data:``/``blob:`` is aborted and recorded — a report must load nothing from
  the network;
* no console errors and no uncaught JavaScript errors;
* plotly.js loaded, and every plotly div drew (``svg.main-svg`` present, traces drawn), at least one per page;
* no traceback in the report.

A screenshot of each page goes to ``tests/browser/_output/report_<run>.png``.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "papermill_runs" / "grids" / "tiny.yaml"
DRAW_TIMEOUT_MS = 30_000
LOCAL_SCHEMES = ("file:", "data:", "blob:", "about:")

JS_DRAWN = """() => {
  const divs = Array.from(document.querySelectorAll('.plotly-graph-div, .js-plotly-plot'));
  return divs.length > 0 && divs.every((d) => d.querySelector('svg.main-svg'));
}"""

JS_INSPECT = """() => {
  const divs = Array.from(new Set(document.querySelectorAll('.plotly-graph-div, .js-plotly-plot')));
  const plots = divs.map((gd) => ({
    id: gd.id,
    svg: gd.querySelectorAll('svg.main-svg').length,
    traces: gd.querySelectorAll('g.trace, g.hm, .heatmaplayer image, g.imagelayer image').length,
    data: Array.isArray(gd.data) ? gd.data.length : -1,
    width: gd.getBoundingClientRect().width,
  }));
  const stderr = Array.from(document.querySelectorAll(
      '[data-mime-type="application/vnd.jupyter.stderr"], .output_stderr, .jp-OutputArea-output.output_error'))
    .map((e) => e.innerText).filter((t) => /Traceback|Error:/.test(t)).map((t) => t.slice(0, 600));
  const scripts = Array.from(document.querySelectorAll('script[src], link[href]'))
    .map((e) => e.getAttribute('src') || e.getAttribute('href'));
  return {plots, stderr, scripts, plotly: typeof window.Plotly === 'object' && !!window.Plotly.newPlot,
          title: document.title};
}"""


@pytest.fixture(scope="module")
def grid_output(tmp_path_factory) -> Path:
    """Output root of a finished grid: ``$MPLMM_BROWSER_REPORTS``, else tiny.yaml run into a temporary folder."""
    given = os.environ.get("MPLMM_BROWSER_REPORTS")
    if given:
        out = Path(given).expanduser().resolve()
        if not (out / "index.html").is_file():
            pytest.fail(f"MPLMM_BROWSER_REPORTS={given}: no index.html there (run the grid first)", pytrace=False)
        return out
    import yaml

    from mplmm.workbench.batch import run_grid

    base = tmp_path_factory.mktemp("grid")
    spec = yaml.safe_load(TINY.read_text())
    spec["output_root"] = str(base / "out")
    spec["stages"] = [s for s in spec["stages"] if (ROOT / s["notebook"]).is_file()]
    grid = base / "tiny.yaml"
    grid.write_text(yaml.safe_dump(spec, sort_keys=False))
    t0 = time.time()
    index = run_grid(grid, jobs=2, root=ROOT, progress=False)
    (base / "seconds.txt").write_text(f"{time.time() - t0:.1f}\n")
    statuses = {p.parent.name: json.loads(p.read_text()) for p in sorted(index.parent.glob("*/status.json"))}
    failed = {name: st.get("error") for name, st in statuses.items() if st.get("status") != "ok"}
    if failed:  # say why, instead of failing later on a report without figures
        pytest.fail(f"grid runs failed under {index.parent}: {failed}", pytrace=False)
    return index.parent


def _pages(out: Path) -> list[Path]:
    return [out / "index.html", *sorted(out.glob("*/report.html"))]


def _open_offline(browser, html: Path, shot: Path) -> dict:
    """Open ``html`` from disk with every network request aborted; returns what was seen."""
    page = browser.new_page()
    blocked: list[str] = []
    console: list[str] = []
    errors: list[str] = []

    def route(r):
        url = r.request.url
        if url.startswith(LOCAL_SCHEMES):
            r.continue_()
        else:
            blocked.append(url)
            r.abort("internetdisconnected")

    page.route("**/*", route)
    page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(html.resolve().as_uri(), wait_until="load", timeout=60_000)
        drawn = True
        try:
            page.wait_for_function(JS_DRAWN, timeout=DRAW_TIMEOUT_MS, polling=250)
        except Exception:  # noqa: BLE001 - reported by the assertions
            drawn = False
        info = page.evaluate(JS_INSPECT)
        first = page.locator(".plotly-graph-div").first
        if first.count():  # the first figure with the heading above it in view
            first.evaluate("(e) => { e.scrollIntoView({block: 'start'}); window.scrollBy(0, -120); }")
            page.wait_for_timeout(200)
        page.screenshot(path=str(shot))
    finally:
        page.close()
    info.update(blocked=blocked, console=console, errors=errors, drawn=drawn, page=str(html),
                in_file=html.read_text(encoding="utf-8", errors="replace").count('class="plotly-graph-div"'))
    return info


def _problems(info: dict) -> list[str]:
    out = []
    if info["blocked"]:
        out.append(f"requested the network: {info['blocked'][:5]}")
    if info["console"]:
        out.append(f"console errors: {info['console'][:5]}")
    if info["errors"]:
        out.append(f"uncaught JavaScript errors: {info['errors'][:5]}")
    plots = info["plots"]
    if not plots:
        out.append(f"no plotly figure in the page ({info['in_file']} plotly divs in the file)")
    elif not info["plotly"]:
        out.append("plotly.js did not load (window.Plotly missing)")
    blank = [p["id"] for p in plots if p["svg"] == 0 or (p["data"] > 0 and p["traces"] == 0) or p["width"] < 50]
    if blank:
        out.append(f"{len(blank)} of {len(plots)} plotly figures not drawn: {blank[:5]}")
    if info["stderr"]:
        out.append(f"tracebacks in the report: {info['stderr'][:2]}")
    return out


def _shot_name(html: Path, out: Path) -> str:
    rel = html.relative_to(out)
    name = "index" if rel.parent == Path(".") else rel.parent.name
    return "report_" + "".join(c if c.isalnum() or c in "-_" else "_" for c in name) + ".png"


def test_index_page_draws_offline(grid_output, browser, output_dir):
    info = _open_offline(browser, grid_output / "index.html", output_dir / _shot_name(grid_output / "index.html",
                                                                                       grid_output))
    problems = _problems(info)
    assert not problems, f"{grid_output / 'index.html'}:\n  " + "\n  ".join(problems)


def test_every_report_draws_offline(grid_output, browser, output_dir):
    reports = _pages(grid_output)[1:]
    assert reports, f"no <run>/report.html under {grid_output}"
    failures, summary = {}, {}
    for html in reports:
        info = _open_offline(browser, html, output_dir / _shot_name(html, grid_output))
        summary[str(html.relative_to(grid_output))] = {"plots": len(info["plots"]),
                                                       "drawn": sum(p["svg"] > 0 for p in info["plots"])}
        problems = _problems(info)
        if problems:
            failures[str(html)] = problems
    (output_dir / "reports_summary.json").write_text(json.dumps(summary, indent=1))
    assert not failures, "\n".join(f"{page}:\n  " + "\n  ".join(p) for page, p in failures.items())
