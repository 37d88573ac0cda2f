"""Tiny helpers shared by the workbench notebooks (``notebooks/*.ipynb``).

Conventions every notebook follows:

* a markdown title cell, then ONE code cell tagged ``parameters`` holding only type-annotated literals with a
  ``# comment`` each (papermill documents them with ``papermill --help-notebook``; a comment must not contain ``=``,
  or papermill silently drops that parameter); values derived from parameters go in the NEXT cell;
* a setup cell calling :func:`setup_notebook` (plotly renderer that survives the HTML export, plotly.js embedded once
  or, under the batch runner, left to the report; pandas precision, seeds, quiet warnings);
* figures are plain ``plotly.graph_objects.Figure`` shown with :func:`show` (a ``FigureWidget`` does not survive the
  offline HTML report); live plots use ``show(fig, live=True)`` and ``handle.update(new_fig)``;
* results go to ``output_dir/metrics.json`` through one helper, :func:`record` (schema in :mod:`mplmm.metrics_file`);
  a notebook holds no assertions: ``tests/test_notebooks.py`` checks what it recorded (the ``store_metadata``
  pattern of the recommenders repository).
"""
from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Any, Optional, Union

DEFAULT_RENDERER = "plotly_mimetype+notebook"
#: environment variable choosing where plotly.js comes from: "embed" (default: once, in the setup cell's output) or
#: "external" (nowhere: figures are stored only as the plotly mime bundle; set by the batch runner, whose reports
#: draw them with one shared plotly.js)
PLOTLYJS_ENV = "MPLMM_PLOTLYJS"
PLOTLYJS_MODES = ("embed", "external")
PLOTLY_MIME = "application/vnd.plotly.v1+json"


def setup_notebook(seed: Optional[int] = None, renderer: str = DEFAULT_RENDERER,
                   plotlyjs: Optional[str] = None) -> None:
    """Prepare a notebook kernel: plotly renderer, pandas display precision 4, seeds, quiet warnings.

    ``renderer`` is overridden by the environment variable ``PLOTLY_RENDERER`` when set. The default,
    ``plotly_mimetype+notebook``, gives JupyterLab its native plot (the plotly mime bundle, which needs no plotly.js
    in the notebook) and the HTML export an interactive copy (``notebook_connected`` would fetch plotly.js from a
    CDN). ``plotlyjs`` (default: ``$MPLMM_PLOTLYJS``, else ``"embed"``): ``"embed"`` puts plotly.js once into this
    cell's output, so a plain nbconvert export works offline; ``"external"`` (set by the batch runner) drops the
    ``notebook`` part: figures are stored once, as the mime bundle, with no plotly.js (~4.7 MB less per notebook),
    and the runner's report draws them with one shared plotly.js (:func:`mplmm.workbench.batch.export_html`).
    """
    import pandas as pd
    import plotly.io as pio

    mode = plotlyjs or os.environ.get(PLOTLYJS_ENV) or "embed"
    if mode not in PLOTLYJS_MODES:
        raise ValueError(f"plotlyjs / ${PLOTLYJS_ENV}: expected one of {PLOTLYJS_MODES}, got {mode!r}")
    _register_offline_notebook_renderer()
    wanted = os.environ.get("PLOTLY_RENDERER") or renderer
    if mode == "external":
        wanted = "+".join(r for r in wanted.split("+") if r != "notebook") or "plotly_mimetype"
    renderers = pio.renderers
    if renderers.default != wanted or getattr(renderers, "_to_activate", None):
        renderers.default = wanted  # (re)queues activation: plotly.js is embedded on the first figure shown
        if in_ipython():
            # embed plotly.js HERE, in the setup cell's output, not in the first figure's cell: a live plot clears
            # its cell's outputs on every update and would take plotly.js (and every later figure) with it
            from plotly.io._base_renderers import MimetypeRenderer

            renderers._activate_pending_renderers(cls=MimetypeRenderer)
    else:  # already active under that name: swap instances without embedding plotly.js a second time
        renderers._default_renderers = [renderers[name] for name in wanted.split("+")]
    pd.options.display.precision = 4
    pd.options.display.max_columns = 50
    pd.options.display.width = 160
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    if seed is not None:
        from ..utils import seed_everything

        seed_everything(int(seed))


_MATHJAX_CDN = re.compile(r'<script[^>]*src="https?://[^"]*mathjax[^"]*"[^>]*>\s*</script>', re.I)


def _register_offline_notebook_renderer() -> None:
    """Replace plotly's ``notebook`` renderer by one whose figure HTML loads no MathJax from a CDN.

    plotly's ``notebook`` renderer embeds plotly.js once (on first use) but adds a ``<script src=https://…mathjax…>``
    to every figure; reports must work offline, so that tag is dropped (LaTeX in plot labels is not rendered).
    """
    import plotly.io as pio

    try:
        from plotly.io._base_renderers import NotebookRenderer
    except ImportError:  # pragma: no cover - plotly internals moved; keep plotly's own renderer
        return
    current = pio.renderers["notebook"]
    if getattr(current, "_mplmm_offline", False):
        return

    class OfflineNotebookRenderer(NotebookRenderer):
        _mplmm_offline = True

        def to_mimebundle(self, fig_dict):
            bundle = super().to_mimebundle(fig_dict)
            bundle["text/html"] = _MATHJAX_CDN.sub("", bundle["text/html"])
            return bundle

    renderer = OfflineNotebookRenderer()
    for attr in ("config", "auto_play", "post_script", "animation_opts"):
        setattr(renderer, attr, getattr(current, attr, getattr(renderer, attr)))
    pio.renderers["notebook"] = renderer


def write_metrics(path: Union[str, os.PathLike], metrics: dict[str, Any]) -> Path:
    """Write ``metrics`` to ``path`` (a run folder or its ``metrics.json``) through
    :func:`mplmm.metrics_file.write_metrics`: checked against the schema, stamped with its version, written
    atomically (NumPy values converted)."""
    from ..metrics_file import write_metrics as write

    return write(path, metrics)


def _recordable(value: Any) -> Any:
    """DataFrames become lists of records, Series dicts; everything else as it is (the writer converts NumPy)."""
    import pandas as pd

    if isinstance(value, pd.DataFrame):
        return value.to_dict("records")
    if isinstance(value, pd.Series):
        return value.to_dict()
    if isinstance(value, dict):
        return {k: _recordable(v) for k, v in value.items()}
    return value


def record(output_dir: Union[str, os.PathLike], **results: Any) -> dict[str, Any]:
    """What a notebook found, in one place: ``results`` (DataFrames as lists of records) go to
    ``output_dir/metrics.json`` through :func:`write_metrics`; the tests read them from there (a notebook holds no
    assertions of its own). Returns the recorded dict."""
    recorded = {k: _recordable(v) for k, v in results.items()}
    write_metrics(Path(output_dir) / "metrics.json", recorded)
    return recorded


def show(fig: Any, live: bool = False):
    """Display a figure as a plain ``go.Figure`` (a ``FigureWidget`` is converted).

    With ``live=True`` returns a handle: ``handle.update(new_fig)`` replaces the shown figure (works headless under
    papermill; only the last version is stored in the notebook). The update clears the cell's outputs and displays
    the new figure, so give a live figure a cell of its own: JupyterLab's plotly renderer does not redraw a figure
    whose display is updated in place, a new output it does draw.
    """
    from IPython.display import display

    display(_plain(fig))
    return _LiveHandle() if live else None


def _plain(fig: Any):
    import plotly.graph_objects as go

    return go.Figure(fig) if isinstance(fig, go.FigureWidget) else fig


class _LiveHandle:
    """``update(fig)`` replaces the cell's output by ``fig`` (``clear_output(wait=True)``: no flicker)."""

    def update(self, fig: Any) -> None:
        from IPython.display import clear_output, display

        clear_output(wait=True)
        display(_plain(fig))


def in_ipython() -> bool:
    """True inside an IPython kernel or shell (where ``display`` reaches a front end)."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return False
    return get_ipython() is not None


_SEED_PART = re.compile(r"(^|__)seed=[^_]*(?=__|$)")


def _config_labels(model: str, configs: list[dict]) -> list[str]:
    """``"<model> (key=value, ...)"`` per checkpoint of one model: the model keys whose values differ among these
    checkpoints and that this one sets away from the model's default (``"<model>"`` when it keeps every default)."""
    from ..models import config_defaults

    try:
        defaults = config_defaults(model)
    except Exception:  # noqa: BLE001 - an unregistered model name: no defaults to compare with
        defaults = {}
    keys = sorted({k for c in configs for k in c if len({repr(x.get(k)) for x in configs}) > 1})
    labels = []
    for cfg in configs:
        parts = [f"{k}={cfg.get(k)}" for k in keys if k not in defaults or cfg.get(k) != defaults[k]]
        labels.append(f"{model} ({', '.join(parts)})" if parts else model)
    return labels


def find_checkpoints(patterns: Union[str, os.PathLike, list]) -> "pd.DataFrame":
    """Expand checkpoint paths/globs into a table ``path, run, model, seed, epochs, train_seconds, method`` (one row
    per checkpoint).

    ``seed`` is the training seed (``train_config.seed``); ``epochs`` and ``train_seconds`` are what training cost
    over the whole pipeline, a prompt method's backbone pre-training included (None for checkpoints written before
    that was recorded). ``method`` is the model name, unless one model name
    comes from differently named run folders (ignoring ``seed=…`` parts, as in batch runs
    ``tune__model=mplmm__seed=0``). Then, when those checkpoints differ in their model configuration (e.g. an
    ablation), it is ``"<model> (key=value, ...)"`` naming the keys set away from the default (the plain model name
    for the one that keeps the defaults); otherwise ``"<model> (<folder label>)"``, so those runs are not pooled.
    """
    import glob

    import pandas as pd

    from ..checkpoint import CheckpointError, read_checkpoint

    if isinstance(patterns, (str, os.PathLike)):
        patterns = [patterns]
    paths: list[Path] = []
    for pat in patterns:
        pat = str(pat)
        hits = sorted(glob.glob(pat, recursive=True)) if glob.has_magic(pat) else [pat]
        if not hits:
            raise CheckpointError(f"{pat}: no checkpoint matches this pattern")
        paths += [Path(h) for h in hits if Path(h) not in paths]
    rows, configs = [], []
    for path in paths:
        ckpt = read_checkpoint(path)
        folder = path.resolve().parent.name
        label = _SEED_PART.sub("", folder).strip("_") or folder
        compute = ckpt.get("compute") or {}
        rows.append({"path": str(path), "run": folder, "model": ckpt["model_name"],
                     "seed": int((ckpt.get("train_config") or {}).get("seed", 0)), "label": label,
                     "epochs": compute.get("total_epochs"), "train_seconds": compute.get("total_seconds")})
        configs.append(dict(ckpt.get("model_config") or {}))
    table = pd.DataFrame(rows, columns=["path", "run", "model", "seed", "label", "epochs", "train_seconds"])
    table["method"] = table["model"]
    for model, rows_of in table.groupby("model").groups.items():
        idx = list(rows_of)
        if table.loc[idx, "label"].nunique() < 2:
            continue
        folders = list(table.loc[idx, "label"])
        by_config = _config_labels(str(model), [configs[i] for i in idx])
        # config labels only when they tell the folders apart exactly (one label per folder, one folder per label)
        pairs = set(zip(folders, by_config))
        same = len(pairs) == len(set(folders)) == len(set(by_config))
        table.loc[idx, "method"] = by_config if same else [f"{model} ({lab})" for lab in folders]
    return table.drop(columns="label")
