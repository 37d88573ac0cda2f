"""Offline HTML reports of executed notebooks, and the files they share.

A page gets plotly.js exactly once, in its ``<head>``: from the grid's ``_static/`` folder by a relative path (the
default for batch runs, together with the report stylesheet: a report is ~0.05 MB plus its figures instead of
~5 MB), or embedded with everything else (``standalone``: one file to send by e-mail). Never from a CDN. A figure
stored only as the plotly mime bundle (how batch runs store them, see
:func:`mplmm.workbench.notebook.setup_notebook`) is drawn from it; copies of plotly.js inside a notebook's outputs (a
notebook run interactively) are left out of the report.
"""
from __future__ import annotations

import hashlib
import html
import os
import re
from pathlib import Path
from typing import Optional, Union

from .. import runs
from ..notebook import PLOTLY_MIME

PathLike = Union[str, os.PathLike]

_OFFLINE_TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js_requirejs -%}{{ resources.mplmm_plotlyjs }}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{% block jupyter_widgets %}{% endblock jupyter_widgets %}
"""
_PLOTLY_CONFIG = "<script>window.PlotlyConfig = {MathJaxConfig: 'local'};</script>"
# a <script> whose body is the plotly.js bundle (it starts with its licence banner "/**\n* plotly.js vX.Y.Z")
_EMBEDDED_PLOTLYJS = re.compile(r"<script\b[^>]*>\s*/\*+[\s*]*plotly\.js v\d.*?</script>", re.S)
_STYLE = re.compile(r"<style\b[^>]*>(.*?)</style>", re.S)


def _rel(target: Path, page: PathLike) -> str:
    return html.escape(Path(os.path.relpath(target.resolve(), Path(page).resolve().parent)).as_posix())


def shared_static(output_root: PathLike) -> Path:
    """The grid's ``_static/`` folder, with ``plotly.min.js`` copied from the installed plotly when missing or
    different."""
    from ...plots import plotlyjs_source

    src, dst = plotlyjs_source(), Path(output_root) / runs.STATIC_DIR / runs.PLOTLYJS
    if not (dst.is_file() and dst.stat().st_size == src.stat().st_size and dst.read_bytes() == src.read_bytes()):
        runs.copy_file(src, dst)
    return dst.parent


def plotlyjs_tag(page: PathLike, static: Optional[PathLike] = None) -> str:
    """The ``<head>`` HTML that gives ``page`` plotly.js: a relative ``<script src>`` to ``static/plotly.min.js``,
    or (``None``) the library embedded."""
    if static is None:
        from plotly.offline import get_plotlyjs

        return f"{_PLOTLY_CONFIG}\n<script type=\"text/javascript\">{get_plotlyjs()}</script>"
    src = _rel(Path(static) / runs.PLOTLYJS, page)
    return f"{_PLOTLY_CONFIG}\n<script type=\"text/javascript\" src=\"{src}\"></script>"


def strip_plotlyjs(text: str) -> str:
    """``text`` without embedded copies of the plotly.js library (figures and everything else kept)."""
    return _EMBEDDED_PLOTLYJS.sub("", text) if "plotly.js v" in text else text


def _share_head_css(page_html: str, page: PathLike, static: Path) -> str:
    """Move the ``<style>`` blocks of the page's ``<head>`` (the template's stylesheet, the same in every report)
    into ``static/report-<hash>.css`` and link it instead."""
    end = page_html.find("</head>")
    head = page_html[:max(end, 0)]
    css = "\n".join(m.group(1) for m in _STYLE.finditer(head))
    if not css:
        return page_html
    sheet = static / f"report-{hashlib.sha1(css.encode()).hexdigest()[:12]}.css"
    if not sheet.is_file():
        runs.write_text(sheet, css)
    link = f'<link rel="stylesheet" type="text/css" href="{_rel(sheet, page)}">'
    first = _STYLE.search(head)
    head = head[:first.start()] + link + _STYLE.sub("", head[first.end():])
    return head + page_html[end:]


def _figure_html(figure: dict, div_id: str) -> str:
    """A plotly mime bundle as HTML: a div and its ``Plotly.newPlot`` call (plotly.js comes from the page)."""
    import plotly.io as pio

    fig = {"data": figure.get("data", []), "layout": figure.get("layout", {})}
    return pio.to_html(fig, config=figure.get("config"), include_plotlyjs=False, full_html=False, div_id=div_id,
                       default_width="100%", default_height=525, validate=False)


def export_html(notebook: PathLike, html_path: PathLike, no_input: bool = False, failure: Optional[str] = None,
                static: Optional[PathLike] = None) -> Path:
    """Export an executed notebook to an HTML report that loads nothing from the network; returns its path.

    Uses the JupyterLab template without its CDN scripts (require.js, MathJax, mermaid, widget manager). ``static``:
    the grid's ``_static/`` folder (:func:`shared_static`) whose ``plotly.min.js`` and stylesheet the report loads by
    relative paths; ``None`` (default) embeds both: a standalone file. ``no_input`` hides code cells and prompts.
    ``failure`` (the run's error) is shown in a banner above the first cell: a failed run's report says so.
    """
    import jinja2
    import nbformat
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="lab", template_file="mplmm_offline.html.j2",
                            extra_loaders=[jinja2.DictLoader({"mplmm_offline.html.j2": _OFFLINE_TEMPLATE})],
                            exclude_input=no_input, exclude_input_prompt=no_input, exclude_output_prompt=no_input)
    nb = nbformat.read(str(notebook), as_version=4)
    nb.metadata.pop("widgets", None)
    for i, cell in enumerate(nb.cells):
        for j, output in enumerate(cell.get("outputs", [])):
            data = output.get("data", {})
            if isinstance(data.get("text/html"), str):
                data["text/html"] = strip_plotlyjs(data["text/html"])
            elif isinstance(data.get(PLOTLY_MIME), dict):
                data["text/html"] = _figure_html(data[PLOTLY_MIME], f"figure-{i}-{j}")
    if failure:
        nb.cells.insert(0, nbformat.v4.new_markdown_cell(
            f"<div style=\"border:2px solid #c62828;background:#fdecea;padding:8px 12px\"><b>This run FAILED</b>: "
            f"{html.escape(failure)}<br>Outputs below stop where it failed; see <code>{runs.STATUS}</code> and "
            f"<code>{runs.LOG}</code> beside this report.</div>"))
    body, _ = exporter.from_notebook_node(nb, resources={"mplmm_plotlyjs": plotlyjs_tag(html_path, static)})
    if static is not None:
        body = _share_head_css(body, html_path, Path(static))
    return runs.write_text(html_path, body)
