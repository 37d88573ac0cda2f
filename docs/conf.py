"""Sphinx configuration of the mplmm documentation (``make docs``; offline, warnings are errors)."""
from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))   # nblink: the notebooks/ folder rendered in place
sys.path.insert(0, str(HERE.parent))     # the package of this checkout, for autodoc

project = "mplmm"
author = "mplmm contributors"
copyright = "mplmm contributors"
release = "0.1.0"

extensions = [
    "myst_nb",                 # MyST Markdown pages and notebooks (includes myst_parser)
    "sphinx.ext.autodoc",      # API reference from the docstrings (:func:, :class:, :mod: roles resolve natively)
]

root_doc = "index"
exclude_patterns = [
    "_build",
    "_ext",
    "results/*.md",            # tables written by scripts/results_tables.py, included by results.md
    "_generated",              # pages generated from the code (python -m mplmm.vocabulary), included by others
]

# MyST: anchors for headings down to level 4, so that links such as predict.md#absence-is-data resolve
myst_heading_anchors = 4
myst_enable_extensions = ["colon_fence"]

# MyST-NB: notebooks are committed without outputs and are never executed by the docs build
nb_execution_mode = "off"
nb_custom_formats = {".nblink": "nblink.read"}
nb_ipywidgets_js: dict = {}   # never the CDN scripts MyST-NB would add for notebooks that hold widget state

autodoc_default_options = {"members": True, "show-inheritance": True, "ignore-module-all": True}
autodoc_member_order = "bysource"
autodoc_typehints = "signature"

html_theme = "furo"
html_title = "mplmm"
html_static_path: list[str] = []
html_show_sourcelink = False


def setup(app):
    from nblink import outdated

    app.connect("env-get-outdated", outdated)
