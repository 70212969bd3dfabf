"""Signals drawn as the tiles the image mosaics frame: each series a small line plot, one colour
per channel, so the cluster gallery, retrieval rows and near-duplicate pairs show series where
they show images. Tiles are drawn when a figure asks for them, not for every series loaded."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from selfsight.reports.style import class_colours
from selfsight.signals.data import SignalSet

TILE_HEIGHT, TILE_WIDTH = 56, 112  # px: as wide as the mosaics' image tiles, half as tall
DPI = 100


def series_tile(series: np.ndarray, height: int = TILE_HEIGHT,
                width: int = TILE_WIDTH) -> np.ndarray:
    """(C, L) series -> (height, width, 3) uint8: its channels as lines on white, each channel
    in its colour, the y range fitted to the series."""
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_axes((0.02, 0.06, 0.96, 0.88))
    steps = np.arange(series.shape[1])
    for channel, colour in zip(series, class_colours(len(series)), strict=True):
        ax.plot(steps, channel, color=colour, linewidth=0.9)
    ax.set_xlim(0, max(1, series.shape[1] - 1))
    ax.set_axis_off()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


class SeriesTiles:
    """(N, C, L) series seen as an (N, H, W, 3) uint8 array of tiles, drawn on indexing: an
    integer gives one tile, an array of integers a stack of them."""

    def __init__(self, signals: np.ndarray) -> None:
        self.signals = signals

    def __len__(self) -> int:
        return len(self.signals)

    def __getitem__(self, index: Any) -> np.ndarray:
        if np.ndim(index) == 0:
            return series_tile(self.signals[int(index)])
        return np.stack([series_tile(self.signals[int(i)]) for i in np.asarray(index)])


@dataclass
class DrawnSignals:
    """A SignalSet shaped like the ImageSet the report's figures read: ``images`` are the
    series' tiles."""

    signals: SignalSet

    def __len__(self) -> int:
        return len(self.signals)

    @property
    def images(self) -> SeriesTiles:
        return SeriesTiles(self.signals.signals)

    @property
    def classes(self) -> list[str] | None:
        return self.signals.classes
