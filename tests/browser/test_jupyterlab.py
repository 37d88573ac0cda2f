"""The workbench notebooks as users meet them: JupyterLab in headless Chromium, all cells run with the ``mplmm``
kernel, then checked in the DOM.

Per notebook (``01_train``, ``02_robustness``; override with ``MPLMM_BROWSER_NOTEBOOKS=a.ipynb,b.ipynb``):

* every code cell ran, no error output and no traceback on stderr;
* every plotly output drew (``.js-plotly-plot`` with ``svg.main-svg`` and its traces);
* every ipywidgets output rendered as a widget view (no "Loading widget…", no "Error displaying widget", no
  ``VBox(...)`` text fallback), and at least one widget panel is shown;
* moving a control of a panel (slider by keyboard, dropdown, toggle) changes the data of the panel's figure;
* screenshots go to ``tests/browser/_output/<notebook>.png`` and ``<notebook>_widget_panel.png``.

Nothing is saved: the test server runs with autosave off, so the tracked notebooks keep their (empty) outputs.
"""
from __future__ import annotations

import json
import os
import time
import urllib.error
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

DEFAULT_NOTEBOOKS = ("notebooks/01_train.ipynb", "notebooks/02_robustness.ipynb")
NOTEBOOKS = tuple(p.strip() for p in os.environ.get("MPLMM_BROWSER_NOTEBOOKS", "").split(",") if p.strip()) \
    or DEFAULT_NOTEBOOKS
KERNEL_READY_TIMEOUT_MS = 180_000  # JupyterLab loads, the kernel starts (imports torch) on a busy 2-core machine
RUN_ALL_TIMEOUT_MS = 480_000  # the notebooks' CPU defaults run in well under a minute; allow for a slow machine
RENDER_TIMEOUT_MS = 60_000  # outputs (plotly, widget views) drawn after the last cell finished
CONTROL_TIMEOUT_MS = 90_000  # one widget interaction: kernel recomputes, the figure is redrawn

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
PLOTLY_MIME = "application/vnd.plotly.v1+json"

# ---------------------------------------------------------------------------------------------------------------------
# JavaScript run in the page (JupyterLab exposes window.jupyterapp with --LabApp.expose_app_in_browser)
# ---------------------------------------------------------------------------------------------------------------------
JS_KERNEL_READY = """(path) => {
  const app = window.jupyterapp;
  if (!app || !app.shell) return false;
  const w = app.shell.currentWidget;
  if (!w || !w.context || w.context.path !== path || !w.content || !w.content.widgets) return false;
  const s = w.sessionContext;
  const k = s && s.session && s.session.kernel;
  return !!(s.isReady && k && k.status === 'idle' && k.connectionStatus === 'connected');
}"""

JS_RUN_ALL = """() => {
  const app = window.jupyterapp;
  app.shell.collapseLeft();  // screenshots: the notebook, not the file browser
  window.__mplmmRun = undefined;
  app.commands.execute('notebook:run-all-cells').then(
    (ok) => { window.__mplmmRun = {ok: ok === true || ok === undefined}; },
    (err) => { window.__mplmmRun = {ok: false, error: String(err)}; });
}"""

JS_RUN_FINISHED = """() => {
  if (window.__mplmmRun === undefined) return false;
  const w = window.jupyterapp.shell.currentWidget;
  const k = w.sessionContext.session && w.sessionContext.session.kernel;
  return !k || k.status === 'idle' || k.status === 'dead';
}"""

# outputs in the notebook model vs. what is drawn in the DOM
JS_COLLECT = """([widgetMime, plotlyMime]) => {
  const app = window.jupyterapp;
  const panel = app.shell.currentWidget;
  const nb = panel.content;
  const cells = [];
  let nPlotly = 0, nWidget = 0;
  nb.widgets.forEach((cell, index) => {
    if (cell.model.type !== 'code') return;
    const outs = cell.model.outputs.toJSON();
    const src = cell.model.sharedModel.getSource();
    const entry = {index, executionCount: cell.model.executionCount, source: src.slice(0, 120),
                   errors: [], stderr: [], widget: 0, plotly: 0, figures: []};
    const shown = cell.outputArea ? cell.outputArea.widgets : [];
    outs.forEach((o, j) => {
      if (o.output_type === 'error') entry.errors.push(`${o.ename}: ${o.evalue}`);
      if (o.output_type === 'stream' && o.name === 'stderr') entry.stderr.push(String(o.text).slice(0, 2000));
      const data = o.data || {};
      if (widgetMime in data) { entry.widget += 1; nWidget += 1; }
      else if (plotlyMime in data) {
        entry.plotly += 1; nPlotly += 1;
        // the figure in the notebook model vs. the one drawn: a display update that was never drawn shows here
        const spec = data[plotlyMime] || {};
        const gd = shown[j] ? shown[j].node.querySelector('.js-plotly-plot') : null;
        const size = (v) => {  // points of a trace array: plain, typed, or plotly's {dtype, bdata, shape}
          if (v === undefined || v === null) return 0;
          if (Array.isArray(v) || ArrayBuffer.isView(v)) return v.length;
          if (v.bdata !== undefined) {
            if (v.shape) return parseInt(String(v.shape).split(',')[0], 10);
            return Math.floor(atob(v.bdata).length / (parseInt(String(v.dtype).slice(1), 10) || 1));
          }
          return 0;
        };
        const names = (traces) => (traces || []).map((t) =>
          `${t.type || 'scatter'}:${t.name || ''}:${size(t.y) || size(t.x) || size(t.z) || size(t.values)}`).join('|');
        entry.figures.push({model: names(spec.data), drawn: gd ? names(gd.data) : null,
                            modelTraces: (spec.data || []).length});
      }
    });
    cells.push(entry);
  });
  const root = nb.node;
  const plots = Array.from(root.querySelectorAll('.js-plotly-plot')).map((gd) => ({
    svg: gd.querySelectorAll('svg.main-svg').length,
    traces: gd.querySelectorAll('g.trace, g.hm, .heatmaplayer image, g.imagelayer image').length,
    data: Array.isArray(gd.data) ? gd.data.length : -1,
    inWidget: !!gd.closest('.jupyter-widgets'),
    width: gd.getBoundingClientRect().width,
  }));
  // top-level widget views: output-area children that hold a .jupyter-widgets view
  const views = Array.from(root.querySelectorAll('.jp-OutputArea-output')).filter(
    (o) => (o.matches('.jupyter-widgets') || o.querySelector(':scope > .jupyter-widgets'))
           && !o.parentElement.closest('.jupyter-widgets'));
  const text = root.innerText;
  const fallback = Array.from(root.querySelectorAll('.jp-OutputArea-output[data-mime-type="text/plain"]'))
    .map((o) => o.innerText.trim()).filter((t) => /^(VBox|HBox|Box|FigureWidget)\\(/.test(t));
  return {
    cells, nPlotly, nWidget, plots, views: views.length,
    controls: views.map((v) => v.querySelectorAll(
      '.widget-slider, .widget-dropdown select, .widget-toggle-button, .widget-toggle-buttons button').length),
    loading: (text.match(/Loading widget/g) || []).length,
    widgetErrors: (text.match(/Error displaying widget[^\\n]*|Error rendering[^\\n]*|Model not found[^\\n]*/g) || []),
    fallback,
    kernel: panel.sessionContext.session && panel.sessionContext.session.kernel
      ? panel.sessionContext.session.kernel.status : 'none',
  };
}"""

# done when every plotly div drew and no widget view is still loading
JS_SETTLED = """(widgetMime) => {
  const nb = window.jupyterapp.shell.currentWidget.content;
  const root = nb.node;
  if (/Loading widget/.test(root.innerText)) return false;
  const plots = Array.from(root.querySelectorAll('.js-plotly-plot'));
  if (!plots.every((gd) => gd.querySelector('svg.main-svg'))) return false;
  let want = 0;
  nb.widgets.forEach((c) => { if (c.model.type === 'code')
    for (const o of c.model.outputs.toJSON()) if (o.data && widgetMime in o.data) want += 1; });
  const views = Array.from(root.querySelectorAll('.jp-OutputArea-output')).filter(
    (o) => (o.matches('.jupyter-widgets') || o.querySelector(':scope > .jupyter-widgets'))
           && !o.parentElement.closest('.jupyter-widgets'));
  return views.length >= want;
}"""

# mark the top-level widget views that hold controls, so Playwright locators can address them
JS_MARK_PANELS = """() => {
  const root = window.jupyterapp.shell.currentWidget.content.node;
  const views = Array.from(root.querySelectorAll('.jp-OutputArea-output')).filter(
    (o) => (o.matches('.jupyter-widgets') || o.querySelector(':scope > .jupyter-widgets'))
           && !o.parentElement.closest('.jupyter-widgets'));
  let k = 0;
  for (const v of views) {
    v.removeAttribute('data-mplmm-panel');
    if (v.querySelector('.widget-slider, .widget-dropdown select, .widget-toggle-button, .widget-toggle-buttons'))
      v.setAttribute('data-mplmm-panel', String(k++));
  }
  return k;
}"""

# what a panel's figure shows: traces' data and the title (a figure in an Output widget is re-created on update)
JS_FINGERPRINT = """(sel) => {
  const view = document.querySelector(sel);
  if (!view) return null;
  const plots = Array.from(view.querySelectorAll('.js-plotly-plot'));
  if (!plots.length) return null;
  return JSON.stringify(plots.map((gd) => ({
    data: (gd.data || []).map((t) => ({type: t.type, name: t.name, x: t.x, y: t.y, z: t.z, text: t.text})),
    title: gd.layout && gd.layout.title ? (gd.layout.title.text || gd.layout.title) : null,
    drawn: gd.querySelectorAll('svg.main-svg').length > 0,
  })));
}"""

JS_FIGURE_CHANGED = """([sel, before]) => {
  const view = document.querySelector(sel);
  if (!view) return false;
  const plots = Array.from(view.querySelectorAll('.js-plotly-plot'));
  if (!plots.length || !plots.every((gd) => gd.querySelector('svg.main-svg'))) return false;
  const now = JSON.stringify(plots.map((gd) => ({
    data: (gd.data || []).map((t) => ({type: t.type, name: t.name, x: t.x, y: t.y, z: t.z, text: t.text})),
    title: gd.layout && gd.layout.title ? (gd.layout.title.text || gd.layout.title) : null,
    drawn: true,
  })));
  return now !== before;
}"""


# ---------------------------------------------------------------------------------------------------------------------
# fixture: one notebook opened and run in JupyterLab (shared by the tests of that notebook)
# ---------------------------------------------------------------------------------------------------------------------
def _shutdown_sessions(lab_server, path: str) -> None:
    """Stop the kernel of ``path`` (the server keeps kernels alive when a page closes)."""
    try:
        for s in lab_server.api("sessions") or []:
            if s.get("path") == path:
                lab_server.api(f"sessions/{s['id']}", method="DELETE", timeout=30.0)
    except (OSError, urllib.error.URLError, ValueError):
        pass


@pytest.fixture(scope="module", params=NOTEBOOKS, ids=lambda p: Path(p).stem)
def executed(request, browser, lab_server, output_dir):
    path = request.param
    if not (lab_server.root_dir / path).is_file():
        pytest.fail(f"{path} does not exist under {lab_server.root_dir}", pytrace=False)
    stem = Path(path).stem
    page = browser.new_page()
    console_errors: list[str] = []
    page_errors: list[str] = []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: page_errors.append(str(e)))
    t0 = time.time()
    try:
        page.goto(lab_server.url(f"lab/tree/{path}"), wait_until="domcontentloaded")
        try:
            page.wait_for_function(JS_KERNEL_READY, arg=path, timeout=KERNEL_READY_TIMEOUT_MS, polling=500)
        except Exception as exc:  # noqa: BLE001
            page.screenshot(path=str(output_dir / f"{stem}_not_ready.png"))
            pytest.fail(f"{path}: JupyterLab / the mplmm kernel was not ready within "
                        f"{KERNEL_READY_TIMEOUT_MS / 1000:.0f} s ({exc}); server log:\n{lab_server.log_tail()}",
                        pytrace=False)
        t_ready = time.time() - t0
        page.evaluate(JS_RUN_ALL)
        try:
            page.wait_for_function(JS_RUN_FINISHED, timeout=RUN_ALL_TIMEOUT_MS, polling=1000)
        except Exception as exc:  # noqa: BLE001
            page.screenshot(path=str(output_dir / f"{stem}_timeout.png"))
            pytest.fail(f"{path}: 'Run All Cells' did not finish within {RUN_ALL_TIMEOUT_MS / 1000:.0f} s ({exc})",
                        pytrace=False)
        t_run = time.time() - t0 - t_ready
        try:
            page.wait_for_function(JS_SETTLED, arg=WIDGET_MIME, timeout=RENDER_TIMEOUT_MS, polling=500)
        except Exception:  # noqa: BLE001 - the tests below say what did not render
            pass
        report = page.evaluate(JS_COLLECT, [WIDGET_MIME, PLOTLY_MIME])
        first_plot = page.locator(".jp-Notebook .js-plotly-plot").first
        if first_plot.count():
            first_plot.evaluate("(e) => e.closest('.jp-Cell').scrollIntoView({block: 'start'})")
            page.wait_for_timeout(300)
        page.screenshot(path=str(output_dir / f"{stem}.png"))
        (output_dir / f"{stem}.json").write_text(json.dumps(
            {"path": path, "kernel_ready_s": round(t_ready, 1), "run_all_s": round(t_run, 1), "report": report,
             "console_errors": console_errors[:20]}, indent=1, default=str))
        yield {"page": page, "path": path, "stem": stem, "report": report, "run": page.evaluate("window.__mplmmRun"),
               "ready_s": t_ready, "run_s": t_run, "console_errors": console_errors, "page_errors": page_errors,
               "output_dir": output_dir}
    finally:
        page.close()
        _shutdown_sessions(lab_server, path)


# ---------------------------------------------------------------------------------------------------------------------
# tests
# ---------------------------------------------------------------------------------------------------------------------
def test_all_cells_ran_without_errors(executed):
    rep, path = executed["report"], executed["path"]
    assert rep["cells"], f"{path}: no code cells found in JupyterLab"
    errors = [f"cell {c['index']} ({c['source'].splitlines()[0] if c['source'] else ''!r}): {e}"
              for c in rep["cells"] for e in c["errors"]]
    assert not errors, f"{path}: error outputs:\n" + "\n".join(errors)
    tracebacks = [f"cell {c['index']}: {s[-600:]}" for c in rep["cells"] for s in c["stderr"] if "Traceback" in s]
    assert not tracebacks, f"{path}: tracebacks on stderr:\n" + "\n".join(tracebacks)
    not_run = [c["index"] for c in rep["cells"] if c["executionCount"] is None and c["source"].strip()]
    assert not not_run, f"{path}: cells without an execution count after 'Run All Cells': {not_run}"
    assert executed["run"] and executed["run"].get("ok"), f"{path}: run-all reported {executed['run']}"
    assert not executed["page_errors"], f"{path}: uncaught JavaScript errors: {executed['page_errors'][:5]}"


def test_plotly_figures_drawn(executed):
    rep, path = executed["report"], executed["path"]
    plots = rep["plots"]
    assert rep["nPlotly"] + sum(1 for p in plots if p["inWidget"]) >= 1, f"{path}: shows no plotly figure"
    standalone = [p for p in plots if not p["inWidget"]]
    assert len(standalone) == rep["nPlotly"], \
        f"{path}: {rep['nPlotly']} plotly outputs in the notebook, {len(standalone)} plotly divs in the page"
    stale = [f"cell {c['index']}: notebook output has traces [{f['model']}], the page shows [{f['drawn']}]"
             for c in rep["cells"] for f in c["figures"] if f["drawn"] != f["model"]]
    assert not stale, (f"{path}: the drawn plotly figure differs from the cell's output (a display update that "
                       f"JupyterLab never drew?):\n" + "\n".join(stale))
    blank = [i for i, p in enumerate(plots) if p["svg"] == 0 or (p["data"] > 0 and p["traces"] == 0)]
    assert not blank, f"{path}: plotly figures not drawn (no svg.main-svg / no traces): {blank} of {plots}"
    assert all(p["width"] > 50 for p in plots), f"{path}: a plotly figure has no width: {plots}"


def test_widget_panels_rendered(executed):
    rep, path = executed["report"], executed["path"]
    assert rep["loading"] == 0, f"{path}: {rep['loading']} widget(s) still show 'Loading widget…'"
    assert not rep["widgetErrors"], f"{path}: widget errors in the page: {rep['widgetErrors']}"
    assert not rep["fallback"], f"{path}: widgets shown as text (no widget manager?): {rep['fallback']}"
    assert rep["nWidget"] >= 1, (
        f"{path}: displays no ipywidgets panel; the notebooks must end with one, e.g. "
        f"`from mplmm_widgets import build_missing_explorer_panel; panel = build_missing_explorer_panel(model, ds); "
        f"panel.widget`")
    assert rep["views"] >= rep["nWidget"], \
        f"{path}: {rep['nWidget']} widget outputs in the notebook but only {rep['views']} widget views rendered"
    assert any(rep["controls"]), f"{path}: no widget view holds a control (slider / dropdown / toggle)"


def _controls(page, sel: str) -> list[tuple[str, object]]:
    """(description, action) for the controls of one panel: sliders first (moved by keyboard), then dropdowns,
    toggle buttons and toggle-button groups."""
    out: list[tuple[str, object]] = []
    for i in range(page.locator(f"{sel} .widget-slider").count()):
        slider = page.locator(f"{sel} .widget-slider").nth(i)
        handle = slider.locator(".noUi-handle").first
        if not handle.count() or slider.locator("[disabled]").count() or \
                handle.get_attribute("aria-disabled") == "true":
            continue
        label = slider.locator(".widget-label").first.inner_text() if slider.locator(".widget-label").count() else ""

        def move(handle=handle):
            before = handle.get_attribute("aria-valuenow")
            handle.focus()
            handle.press("ArrowRight")
            if handle.get_attribute("aria-valuenow") == before:  # at its maximum
                handle.press("ArrowLeft")

        out.append((f"slider {label!r}", move))
    for i in range(page.locator(f"{sel} .widget-dropdown select").count()):
        select = page.locator(f"{sel} .widget-dropdown select").nth(i)
        n = select.locator("option").count()
        if n < 2 or select.is_disabled():
            continue
        current = select.evaluate("(s) => s.selectedIndex")

        def pick(select=select, n=n, current=current):
            select.select_option(index=(current + 1) % n)

        out.append((f"dropdown #{i}", pick))
    for i in range(page.locator(f"{sel} .widget-toggle-button").count()):
        button = page.locator(f"{sel} .widget-toggle-button").nth(i)
        if not button.is_disabled():
            out.append((f"toggle {button.inner_text().strip()!r}", button.click))
    for i in range(page.locator(f"{sel} .widget-toggle-buttons button:not(.mod-active)").count()):
        button = page.locator(f"{sel} .widget-toggle-buttons button:not(.mod-active)").nth(i)
        if not button.is_disabled():
            out.append((f"toggle-buttons {button.inner_text().strip()!r}", button.click))
    return out


def test_widget_control_updates_figure(executed):
    page, path, stem = executed["page"], executed["path"], executed["stem"]
    n_panels = page.evaluate(JS_MARK_PANELS)
    if executed["report"]["nWidget"] == 0:
        pytest.fail(f"{path}: no widget panel to interact with (see test_widget_panels_rendered)", pytrace=False)
    assert n_panels >= 1, f"{path}: no widget view with a control"
    checked, notes = 0, []
    for k in range(n_panels):
        sel = f'[data-mplmm-panel="{k}"]'
        before = page.evaluate(JS_FINGERPRINT, sel)
        if before is None:
            notes.append(f"panel {k}: no plotly figure inside")
            continue
        changed = None
        for desc, act in _controls(page, sel)[:4]:
            act()
            try:
                page.wait_for_function(JS_FIGURE_CHANGED, arg=[sel, before], timeout=CONTROL_TIMEOUT_MS,
                                       polling=250)
                changed = desc
                break
            except Exception:  # noqa: BLE001 - this control did not change the figure; try the next one
                notes.append(f"panel {k}: {desc} did not change the figure")
                before = page.evaluate(JS_FINGERPRINT, sel) or before
        assert changed, f"{path}: moving the controls of widget panel {k} never updated its figure: {notes}"
        message = page.locator(sel).inner_text()
        assert "\u26a0" not in message, f"{path}: panel {k} shows an error after {changed}: {message[:500]}"
        notes.append(f"panel {k}: {changed} updated the figure")
        checked += 1
        if k == 0:
            page.locator(sel).evaluate("(e) => e.closest('.jp-Cell').scrollIntoView({block: 'start'})")
            page.wait_for_timeout(500)
            page.screenshot(path=str(executed["output_dir"] / f"{stem}_widget_panel.png"))
    (executed["output_dir"] / f"{stem}_interaction.txt").write_text("\n".join(notes) + "\n")
    assert checked >= 1, f"{path}: no widget panel with a plotly figure: {notes}"
    report = page.evaluate(JS_COLLECT, [WIDGET_MIME, PLOTLY_MIME])
    errors = [e for c in report["cells"] for e in c["errors"]]
    assert not errors and not report["widgetErrors"], f"{path}: errors after the interaction: {errors}"
