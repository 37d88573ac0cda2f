"""Interactive ipywidgets panels of the workbench (thin wiring over :mod:`mplmm.interpret` and :mod:`mplmm.plots`).

``build_*_panel(...)`` returns a :class:`~mplmm_widgets.panels.Panel` with ``.controls`` (dict of widgets), ``.figure``
(a ``go.FigureWidget`` when anywidget is installed), ``.message`` and ``.widget`` (the box to display).
"""
from .panels import (Panel, build_attention_panel, build_attribution_panel, build_missing_explorer_panel,
                     build_run_explorer_panel, make_figure, replace_figure)

__all__ = ["Panel", "build_attention_panel", "build_attribution_panel", "build_missing_explorer_panel",
           "build_run_explorer_panel", "make_figure", "replace_figure"]
