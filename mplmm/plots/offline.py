"""plotly.js for offline pages (batch reports, the index, ``explain.html``): the bundle of the installed plotly."""
from __future__ import annotations

from pathlib import Path


def plotlyjs_source() -> Path:
    """The ``plotly.min.js`` of the installed plotly package."""
    import plotly

    return Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"
