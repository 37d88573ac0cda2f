"""Shared colours: one stable colour per method or curve."""
from __future__ import annotations

from plotly.colors import qualitative

PALETTE: tuple[str, ...] = tuple(qualitative.Plotly)


def color_for(i: int) -> str:
    """The ``i``-th palette colour (cycles)."""
    return PALETTE[i % len(PALETTE)]


def rgba(hex_color: str, alpha: float) -> str:
    """``"#636efa"`` → ``"rgba(99,110,250,alpha)"`` (for translucent bands)."""
    h = hex_color.lstrip("#")
    r, g, b = (int(h[k:k + 2], 16) for k in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"
