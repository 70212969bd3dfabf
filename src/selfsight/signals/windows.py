"""Long recordings as overlapping windows of a backbone's trained length, and per-window values
stitched back to one value per time step: the 1-D counterpart of the image tiles in
:mod:`selfsight.anomaly.tiles`, whose start offsets it shares."""

from __future__ import annotations

import numpy as np

from selfsight.anomaly.tiles import tile_starts


def window_starts(steps: int, window: int, overlap: float) -> list[int]:
    """Start offsets of windows of ``window`` steps covering ``steps`` (the last one ends at the
    series' end); a series no longer than a window is one window of its own length."""
    return tile_starts(steps, window, overlap)


def cut_windows(series: np.ndarray, window: int, overlap: float
                ) -> tuple[list[int], np.ndarray]:
    """(starts, (n, C, w)) windows of one (C, T) series, w = min(window, T)."""
    width = min(window, series.shape[1])
    starts = window_starts(series.shape[1], width, overlap)
    return starts, np.stack([series[:, s:s + width] for s in starts])


def centrality(width: int) -> np.ndarray:
    """(width,) distance of each step to its window's nearer edge, in steps (0.5 at the edges):
    the weight of a window's value at that step when windows overlap."""
    steps = np.arange(width)
    return np.minimum(steps + 0.5, width - 0.5 - steps)


def stitch_windows(values: np.ndarray, starts: list[int], steps: int) -> np.ndarray:
    """(n, w) per-window values -> (steps,): where windows overlap, their mean weighted by how
    central the step lies in each. A convolution's zero padding makes features at a window's
    edge unlike the same step seen mid-window (the image tiles measured edge cells as 62 % of
    tile maxima), so a step is taken mostly from the windows it lies well inside."""
    width = values.shape[1]
    weight = centrality(width)
    total = np.zeros(steps, np.float64)
    norm = np.zeros(steps, np.float64)
    for value, start in zip(values, starts, strict=True):
        total[start:start + width] += weight * value
        norm[start:start + width] += weight
    return (total / np.maximum(norm, 1e-12)).astype(np.float32)
