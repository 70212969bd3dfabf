"""The report's look, shared by every figure: sizes, colours, the matplotlib rc style, and
rendering a figure to PNG.

Figures are built on ``matplotlib.figure.Figure`` directly (no pyplot state), so they render
with the Agg canvas and never open a window. Colours are shared across figures: the same class
has the same colour everywhere, and the label-efficiency arms keep theirs.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import matplotlib as mpl
from matplotlib.figure import Figure

from selfsight.files import write_atomic

HALF, WIDE = 6.0, 12.0  # inches: figures are drawn at the size a half or full-width card shows
ACCENT = "#2563eb"  # this backbone
TEAL = "#0d9488"
GRAY = "#6b7280"  # baselines, scratch, references
MATCH = "#16a34a"
MISMATCH = "#dc2626"
ARM_COLOURS = {"pretrained": ACCENT, "linear": TEAL, "scratch": GRAY}
ARM_LABELS = {"pretrained": "fine-tuned from this backbone", "linear": "linear probe",
              "scratch": "trained from scratch",
              "pretrained_distilled": "this backbone + distilled on unlabelled images",
              "scratch_distilled": "scratch + distilled on unlabelled images"}
STYLE = {
    "font.size": 11, "axes.titlesize": 12.5, "axes.titleweight": "bold",
    "axes.labelsize": 11, "axes.spines.top": False, "axes.spines.right": False,
    "axes.grid": True, "grid.color": "#e5e7eb", "grid.linewidth": 0.8, "axes.axisbelow": True,
    "axes.edgecolor": "#9ca3af", "legend.frameon": False, "legend.fontsize": 10,
    "xtick.color": "#374151", "ytick.color": "#374151", "axes.labelcolor": "#111827",
    "font.family": "DejaVu Sans", "figure.dpi": 100, "savefig.dpi": 160,
}
# PNG pixels per CSS pixel: the page shows a figure at 100 CSS px per inch (sharp on 1.6x
# screens), so fonts appear at their point size.
PIXEL_RATIO = STYLE["savefig.dpi"] / 100


def class_colours(n: int) -> list[Any]:
    """One colour per class, the same in every figure (tab10, tab20, then turbo)."""
    if n <= 10:
        return list(mpl.colormaps["tab10"].colors[:n])
    if n <= 20:
        return list(mpl.colormaps["tab20"].colors[:n])
    return [mpl.colormaps["turbo"](i / max(n - 1, 1)) for i in range(n)]


def new_figure(width: float, height: float) -> Figure:
    """An empty figure of ``width`` x ``height`` inches, laid out by matplotlib's constrained
    layout."""
    return Figure(figsize=(width, height), layout="constrained")


def png_bytes(fig: Figure) -> bytes:
    """Render ``fig`` to PNG bytes (Agg) with the report's style."""
    buffer = io.BytesIO()
    with mpl.rc_context(STYLE):
        fig.savefig(buffer, format="png", facecolor="white")
    return buffer.getvalue()


def save_png(fig: Figure, path: str | Path) -> bytes:
    """Write ``fig`` to ``path`` as PNG and return the bytes (for embedding)."""
    data = png_bytes(fig)
    write_atomic(path, lambda f: f.write(data))
    return data


def styled(build: Any) -> Any:
    """Build a figure inside the report's rc style (fonts and ticks are read at build time)."""
    def wrapper(*args: Any, **kwargs: Any) -> Figure:
        with mpl.rc_context(STYLE):
            return build(*args, **kwargs)

    wrapper.__name__, wrapper.__doc__ = build.__name__, build.__doc__
    return wrapper
