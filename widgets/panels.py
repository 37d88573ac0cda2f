"""Thin ipywidgets panels over the pure functions of :mod:`mplmm.interpret` and :mod:`mplmm.plots.interpret`.

Every factory returns a :class:`Panel` with

* ``.controls`` — a dict of widgets (drive them in tests by setting ``.value``; callbacks fire without a kernel);
* ``.figure`` — a ``go.FigureWidget`` (needs ``anywidget``) updated in place, or a ``go.Figure`` updated in place and
  re-displayed in an ``Output`` (without anywidget, or with ``figure_widget=False``: executed notebooks then do not
  store the ~5 MB anywidget bundle of a FigureWidget in their widget state);
* ``.message`` — an ``HTML`` widget for status and errors (invalid choices never raise out of a callback);
* ``.widget`` — the ``VBox`` to display (a ``Panel`` also displays itself as the last expression of a cell);
* ``.state`` — the last computed results (DataFrames / dicts), for inspection.

Panels: :func:`build_run_explorer_panel`, :func:`build_missing_explorer_panel`, :func:`build_attention_panel`,
:func:`build_attribution_panel`. Static reports should use the ``go.Figure`` builders directly: widget state does not
survive an offline HTML export.
"""
from __future__ import annotations

import contextlib
import html
import json
from typing import Any, Callable, Iterator, Optional, Sequence

import ipywidgets as W
import plotly.graph_objects as go

from mplmm import interpret as I
from mplmm.checkpoint import check_model_fits
from mplmm.constants import MODALITIES, MODE_NAMES, N_MODES
from mplmm.errors import ConfigError
from mplmm.missing import PROTOCOLS
from mplmm.plots import interpret as PI
from mplmm.workbench import runs
from mplmm.workbench.notebook import in_ipython

_MODE_OPTIONS = [(f"{k}: {MODE_NAMES[k]}", k) for k in range(N_MODES)]


def make_figure(figure_widget: Optional[bool] = None) -> go.Figure:
    """A ``go.FigureWidget`` (``figure_widget`` None: when anywidget is installed; True: required), else a plain
    ``go.Figure``."""
    if figure_widget is False:
        return go.Figure()
    try:
        return go.FigureWidget()
    except ImportError:
        if figure_widget:
            raise
        return go.Figure()


def replace_figure(target: go.Figure, new: go.Figure) -> None:
    """Replace ``target``'s traces and layout by ``new``'s, in place (works for Figure and FigureWidget)."""
    target.data = ()
    target.layout = new.layout
    if new.data:
        target.add_traces(list(new.data))


class Panel:
    """Controls + figure + message, wired by the ``build_*_panel`` factories."""

    def __init__(self, title: str, controls: dict[str, W.Widget], rows: Sequence[Sequence[str]],
                 figure_widget: Optional[bool] = None) -> None:
        self.title = title
        self.controls = controls
        self.figure = make_figure(figure_widget)
        self.message = W.HTML(value="")
        self.state: dict[str, Any] = {}
        self._output: Optional[W.Output] = None
        boxes = [W.HBox([controls[name] for name in row]) for row in rows]
        if isinstance(self.figure, W.DOMWidget):
            view: W.Widget = self.figure
        else:  # no anywidget: show the plain figure in an Output, re-rendered on every update
            self._output = W.Output()
            view = self._output
        self.widget = W.VBox([W.HTML(f"<b>{html.escape(title)}</b>"), *boxes, self.message, view])
        self._busy = False

    # -- helpers used by the factories -----------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        """True while the wired callback or an :meth:`updating` block runs (control changes then call nothing)."""
        return self._busy

    @contextlib.contextmanager
    def updating(self) -> Iterator["Panel"]:
        """Change controls inside the block without calling the wired callback (e.g. new options after a rescan);
        the previous state is restored afterwards."""
        previous, self._busy = self._busy, True
        try:
            yield self
        finally:
            self._busy = previous

    def show_figure(self, fig: go.Figure) -> None:
        replace_figure(self.figure, fig)
        if self._output is not None and in_ipython():
            # Set the Output's outputs directly instead of `with output: display(...)`: under papermill nbclient's
            # output-widget capture once left the cell hanging. Only plotly's own mimetype: the renderer bundle would
            # re-activate the "notebook" renderer and embed plotly.js a second time.
            fig_json = json.loads(self.figure.to_json(validate=False))
            bundle = {"application/vnd.plotly.v1+json": {**fig_json, "config": {"responsive": True}},
                      "text/plain": f"<plotly figure: {len(self.figure.data)} trace(s)>"}
            self._output.outputs = ({"output_type": "display_data", "data": bundle, "metadata": {}},)

    def info(self, text: str) -> None:
        self.message.value = f"<span style='color:#555'>{html.escape(text)}</span>"

    def error(self, text: str) -> None:
        self.message.value = f"<span style='color:#c0392b'><b>⚠ {html.escape(text)}</b></span>"

    def wire(self, callback: Callable[[], None], names: Sequence[str]) -> None:
        """Call ``callback`` when any of the named controls changes value (not re-entrantly)."""

        def handler(_change: Any) -> None:
            if self.busy:
                return
            with self.updating():
                try:
                    callback()
                except Exception as exc:  # noqa: BLE001 - a panel shows errors, it never raises into the front end
                    self.error(f"{type(exc).__name__}: {exc}")

        for name in names:
            self.controls[name].observe(handler, names="value")
        self.refresh = lambda: handler(None)  # type: ignore[method-assign]

    def refresh(self) -> None:  # replaced by :meth:`wire`
        pass

    def _ipython_display_(self) -> None:  # pragma: no cover - needs a front end
        from IPython.display import display

        display(self.widget)


# ----------------------------------------------------------------------------------------------------------------------
# (1) run explorer
# ----------------------------------------------------------------------------------------------------------------------
def _default_metric(table, options: list[str]) -> Optional[str]:
    """``test.<primary metric>`` of the first run that names one, else the first ``test.*`` option."""
    prim = []
    if "primary_metric" in getattr(table, "columns", []):
        prim = [f"test.{p}" for p in table["primary_metric"].dropna() if isinstance(p, str)]
    for cand in prim + [o for o in options if o.startswith("test.")] + options:
        if cand in options:
            return cand
    return None


def _selected_histories(panel: Panel, controls: dict) -> dict:
    """The history of each run chosen in ``controls["runs"]`` (read once, then from ``panel.state["cache"]``)."""
    out = {}
    for name in controls["runs"].value:
        row = panel.state["table"][panel.state["table"]["run"] == name]
        if len(row):
            out[name] = panel.state["cache"].setdefault(name, runs.load_run(row["path"].iloc[0])[0])
    return out


def _scan_runs(panel: Panel, controls: dict, select: Optional[Sequence[str]]) -> list[str]:
    """Find the runs under ``controls["root"]``, offer them (``select`` chosen, else all) and their numeric metrics;
    returns the run names."""
    with panel.updating():
        table = runs.find_runs(controls["root"].value)
        panel.state["table"], panel.state["cache"] = table, {}
        names = list(table["run"]) if len(table) else []
        controls["runs"].options = names
        wanted = [n for n in (select or names) if n in names]
        controls["runs"].value = tuple(wanted)
        metric_opts = [c for c in table.columns
                       if c not in ("run", "path", "has_metrics", "has_history", "model", "primary_metric")
                       and table[c].dtype.kind in "fiu"] if len(table) else []
        controls["metric"].options = metric_opts
        controls["metric"].value = _default_metric(table, metric_opts)
    return names


def build_run_explorer_panel(root: str = "runs", select: Optional[Sequence[str]] = None,
                             figure_widget: Optional[bool] = None) -> Panel:
    """Compare runs under ``root`` (folders with ``metrics.json`` / ``history.csv``): training curves of the
    chosen history column (left) and the chosen metric of ``metrics.json`` per run (right).

    Controls: ``root`` (Text), ``refresh`` (Button), ``runs`` (SelectMultiple), ``curve`` and ``metric`` (Dropdown).
    """
    controls = {
        "root": W.Text(value=str(root), description="root"),
        "refresh": W.Button(description="rescan", icon="refresh"),
        "runs": W.SelectMultiple(options=[], description="runs", rows=6),
        "curve": W.Dropdown(options=["valid_loss"], value="valid_loss", description="curve"),
        "metric": W.Dropdown(options=[], description="metric"),
    }
    panel = Panel("Run explorer", controls, [["root", "refresh"], ["runs"], ["curve", "metric"]], figure_widget)

    def redraw() -> None:
        table = panel.state.get("table")
        if table is None or not len(table):
            panel.show_figure(PI.run_comparison_figure({}, controls["curve"].value))
            return
        hists = _selected_histories(panel, controls)
        cols = sorted({c for h in hists.values() for c in h.columns
                       if c not in ("epoch", "best") and h[c].dtype.kind in "fiu"})
        if cols and list(controls["curve"].options) != cols:
            keep = controls["curve"].value if controls["curve"].value in cols else \
                ("valid_loss" if "valid_loss" in cols else cols[0])
            controls["curve"].options = cols
            controls["curve"].value = keep
        fig = PI.run_comparison_figure(hists, controls["curve"].value, table, controls["metric"].value)
        panel.state["histories"] = hists
        panel.show_figure(fig)
        panel.info(f"{len(table)} run(s) under {controls['root'].value}; {len(hists)} selected")

    def rescan(_btn: Any = None) -> None:
        if not _scan_runs(panel, controls, select):
            panel.error(f"no run folders (metrics.json / history.csv) under {controls['root'].value!r}")
            panel.show_figure(PI.run_comparison_figure({}, controls["curve"].value))
            return
        panel.refresh()

    panel.wire(redraw, ["runs", "curve", "metric"])
    controls["refresh"].on_click(rescan)
    controls["root"].observe(lambda _c: rescan(), names="value")
    rescan()
    return panel


# ----------------------------------------------------------------------------------------------------------------------
# (2) missing-rate / mode explorer
# ----------------------------------------------------------------------------------------------------------------------
def build_missing_explorer_panel(model, ds, split: str = "test", rate: float = 0.0, seed: int = 0,
                                 protocol: str = "modality", figure_widget: Optional[bool] = None) -> Panel:
    """Re-evaluate ``model`` on ``split`` live: a missing-rate slider, a protocol menu and three modality toggles.

    With every toggle on, the seeded masks of the chosen protocol (``protocol``: any of
    :data:`mplmm.missing.PROTOCOLS`, the published ones included: docs/protocols.md) at ``rate`` apply; switching
    modalities off forces every sample into the matching missing mode (the rate slider is then disabled). All three
    off → a message, the last figure stays. Controls: ``rate`` (FloatSlider), ``protocol`` (Dropdown), ``text`` /
    ``audio`` / ``vision`` (ToggleButton, True = present).
    Predictions come from a per-mode cache (``state["modes"]``, at most seven forward passes): under the ``modality``
    and ``entry`` protocols moving the slider runs no forward pass; the frame-level protocols (``frame``, ``block``,
    ``temporal``, ``temporal_block``) run one pass per change (a prediction depends on the kept steps). A model
    trained on data of other dims, task or classes is refused in one line (``CheckpointError``).
    """
    from mplmm.evaluate import ModePredictions

    check_model_fits(model, ds)

    controls: dict[str, W.Widget] = {
        "rate": W.FloatSlider(value=float(rate), min=0.0, max=1.0, step=0.05, description="missing rate",
                              continuous_update=False, readout_format=".2f",
                              style={"description_width": "initial"}),
    }
    if protocol not in PROTOCOLS:
        raise ConfigError(f"missing explorer: protocol must be one of {PROTOCOLS}, got {protocol!r}")
    controls["protocol"] = W.Dropdown(options=list(PROTOCOLS), value=protocol, description="protocol")
    for name in MODALITIES:
        controls[name] = W.ToggleButton(value=True, description=name, icon="check", tooltip=f"{name} present")
    panel = Panel(f"Missing-modality explorer ({split})", controls, [["rate", "protocol"], list(MODALITIES)],
                  figure_widget)
    panel.state["modes"] = ModePredictions(model, ds, split, I.model_device(model))

    def update() -> None:
        flags = tuple(bool(controls[m].value) for m in MODALITIES)
        for m in MODALITIES:
            controls[m].icon = "check" if controls[m].value else "times"
        if not any(flags):
            panel.error("all three modalities switched off: no such missing mode — switch one back on")
            return
        controls["rate"].disabled = not all(flags)
        res = I.evaluate_missing(model, ds, split, controls["rate"].value, flags, seed, controls["protocol"].value,
                                 cache=panel.state["modes"])
        panel.state["result"] = res
        panel.show_figure(PI.missing_explorer_figure(res))
        prim = res["primary_metric"]
        val = res["metrics"].get(prim, float("nan"))
        how = (f"forced mode {res['forced_mode']} ({MODE_NAMES[res['forced_mode']]}), rate ignored"
               if res["forced_mode"] is not None else f"{controls['protocol'].value} rate {controls['rate'].value:.2f}")
        panel.info(f"{how}: {prim} = {val:.4f}, missing entries {res['missing_entry_fraction']:.1%}")

    panel.wire(update, ["rate", "protocol", *MODALITIES])
    panel.refresh()
    return panel


# ----------------------------------------------------------------------------------------------------------------------
# (3) attention viewer
# ----------------------------------------------------------------------------------------------------------------------
def _sync_attention_controls(controls: dict, maps: Any) -> None:
    """Offer the modules, layers and heads of ``maps``, keeping the current choices where they still exist."""
    mods = list(maps.modules)
    if list(controls["module"].options) != mods:
        keep = controls["module"].value if controls["module"].value in mods else mods[-1]
        controls["module"].options = mods
        controls["module"].value = keep
    mod = controls["module"].value
    depth = int(maps.info.loc[mod, "n_layers"])
    if controls["layer"].max != depth - 1:
        last = controls["layer"].value >= controls["layer"].max
        controls["layer"].max = depth - 1
        if last or controls["layer"].value > depth - 1:
            controls["layer"].value = depth - 1
    heads = [("mean", -1)] + [(str(h), h) for h in range(int(maps.info.loc[mod, "heads"]))]
    if list(controls["head"].options) != heads:
        keep = controls["head"].value if controls["head"].value < len(heads) - 1 else -1
        controls["head"].options = heads
        controls["head"].value = keep


def build_attention_panel(model, ds, split: str = "test", n_samples: int = 8, mode: int = 6,
                          module: str = "trans_l_mem", figure_widget: Optional[bool] = None,
                          sample_ids: Optional[Sequence[str]] = None) -> Panel:
    """Browse attention maps: ``sample`` (IntSlider), ``mode``, ``module`` (Dropdown), ``layer`` (IntSlider) and
    ``head`` (Dropdown, -1 = mean over heads). Prompt-token columns are shaded. Maps are computed once per mode for
    the samples ``sample_ids`` of ``split``, else its first ``n_samples``. A model without attention weights gets a
    message, not an error."""
    check_model_fits(model, ds)
    batch = I.get_batch(ds, split, n=n_samples, ids=sample_ids)
    n = int(batch[0].shape[0])
    controls = {
        "sample": W.IntSlider(value=0, min=0, max=max(n - 1, 0), description="sample", continuous_update=False),
        "mode": W.Dropdown(options=_MODE_OPTIONS, value=int(mode), description="mode"),
        "module": W.Dropdown(options=[module], value=module, description="module"),
        "layer": W.IntSlider(value=0, min=0, max=0, description="layer", continuous_update=False),
        "head": W.Dropdown(options=[("mean", -1)], value=-1, description="head"),
    }
    panel = Panel(f"Attention viewer ({split}, {n} samples)", controls,
                  [["sample", "mode"], ["module", "layer", "head"]], figure_widget)
    cache: dict[int, Any] = {}
    panel.state["cache"] = cache

    if not I.supports_attention(model):
        for w in controls.values():
            w.disabled = True
        panel.error(f"model {I.model_name(model)!r} does not expose attention weights (no need_weights): "
                    f"attention maps are available for mult, mult_zero, mult_dropout and mplmm")
        return panel

    def maps_for(k: int):
        if k not in cache:
            cache[k] = I.attention_maps(model, batch, k)
        return cache[k]

    def update() -> None:
        maps = maps_for(int(controls["mode"].value))
        _sync_attention_controls(controls, maps)
        mod, layer, head = controls["module"].value, int(controls["layer"].value), int(controls["head"].value)
        sample = int(controls["sample"].value)
        panel.state.update(maps=maps, module=mod, layer=layer, head=head, sample=sample)
        panel.show_figure(PI.attention_figure(maps, mod, layer=layer, head=None if head < 0 else head,
                                              sample=sample))
        n_p = maps.n_prompt(mod)
        w = maps.map(mod, layer=layer, head=None if head < 0 else head, sample=sample)
        extra = (f"; readout token's share on the {n_p} prompt tokens: {float(w[-1, -n_p:].sum()):.3f}"
                 if n_p else "")
        panel.info(f"sample {batch.ids[sample]!r}: {mod}, layer {layer}/{int(maps.info.loc[mod, 'n_layers']) - 1}, "
                   f"{MODE_NAMES[int(maps.modes[sample])]}{extra}")

    panel.wire(update, list(controls))
    panel.refresh()
    return panel


# ----------------------------------------------------------------------------------------------------------------------
# (4) attribution viewer
# ----------------------------------------------------------------------------------------------------------------------
def build_attribution_panel(model, ds, split: str = "test", n_samples: int = 8, mode: int = 6, method: str = "ig",
                            n_steps: int = 16, internal_batch_size: Optional[int] = None,
                            figure_widget: Optional[bool] = None,
                            sample_ids: Optional[Sequence[str]] = None) -> Panel:
    """Per-time-step relevance of one sample: ``sample`` (IntSlider), ``mode`` (Dropdown), ``method``
    (ToggleButtons: ``ig`` = Integrated Gradients on ``proj_l/a/v``, ``occlusion``). Attributions are computed once
    per (mode, method) for the samples ``sample_ids`` of ``split``, else its first ``n_samples``; a sample lacking a
    modality stays in what it has whatever the mode asks."""
    check_model_fits(model, ds)
    batch = I.get_batch(ds, split, n=n_samples, ids=sample_ids)
    n = int(batch[0].shape[0])
    controls = {
        "sample": W.IntSlider(value=0, min=0, max=max(n - 1, 0), description="sample", continuous_update=False),
        "mode": W.Dropdown(options=_MODE_OPTIONS, value=int(mode), description="mode"),
        "method": W.ToggleButtons(options=list(I.ATTRIBUTION_METHODS), value=method, description="method"),
    }
    panel = Panel(f"Attribution viewer ({split}, {n} samples)", controls, [["sample", "mode"], ["method"]],
                  figure_widget)
    cache: dict[tuple[int, str], dict] = {}
    panel.state["cache"] = cache

    def update() -> None:
        key = (int(controls["mode"].value), str(controls["method"].value))
        if key not in cache:
            cache[key] = I.timestep_attributions(model, batch, key[0], method=key[1], n_steps=n_steps,
                                                 internal_batch_size=internal_batch_size)
        attrs = cache[key]
        sample = int(controls["sample"].value)
        panel.state.update(attributions=attrs, sample=sample, mode=key[0], method=key[1])
        title = f"sample {batch.ids[sample]} — {MODE_NAMES[key[0]]} — {key[1]}"
        panel.show_figure(PI.timestep_bars(attrs, sample=sample, title=title))
        totals = ", ".join(f"{m}: {float(attrs[m][sample].sum()):+.4f}" for m in MODALITIES)
        panel.info(f"total relevance per modality — {totals}")

    panel.wire(update, list(controls))
    panel.refresh()
    return panel


__all__ = ["Panel", "build_attention_panel", "build_attribution_panel", "build_missing_explorer_panel",
           "build_run_explorer_panel", "make_figure", "replace_figure"]
