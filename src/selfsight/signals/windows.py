"""Long recordings as overlapping windows of a backbone's trained length, and per-window values
stitched back to one value per time step: the 1-D counterpart of the image tiles in
:mod:`selfsight.anomaly.tiles`, whose start offsets it shares. ``pretrain`` trains on, and
``embed`` / ``explore`` embed, a few long recordings as the same windows
(:func:`cut_recordings`): ``pretrain`` decides (:func:`is_long`) and the backbone records it
(``BackboneConfig.windows``), so every later verb cuts what the run was trained on."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from selfsight.anomaly.tiles import tile_starts
from selfsight.signals.data import SignalSet, fit_length

WINDOW_OVERLAP = 0.75  # neighbours share 3/4: many windows from one recording, each new
# window a shift of a quarter, which the views' random crops blur further


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


def window_stride(window: int, overlap: float) -> int:
    """Steps from one window's start to the next's (the last window may lie closer)."""
    return max(1, round(window * (1 - overlap)))


def is_long(count: int, steps: int, window: int, few: int) -> bool:
    """Whether ``count`` series of ``steps`` are a few long recordings (fewer than ``few``, each
    at least two windows long), taken as windows rather than whole or cropped."""
    return count < few and steps >= 2 * window


def as_trained(signals: SignalSet, window: int, windows: bool, why: str = "") -> SignalSet:
    """``signals`` as a backbone trained at ``window`` steps takes them: cut into its windows
    when it trained on windows (:func:`cut_recordings`), else cropped or padded to ``window``;
    what was done is the last of ``notes`` (nothing added when nothing changed)."""
    if windows:
        return cut_recordings(signals, window, why=why)
    if signals.length == window:
        return signals
    fitted = np.stack([fit_length(series, window) for series in signals.signals])
    note = (f"{signals.length:,} steps {'cropped' if signals.length > window else 'padded'} to "
            f"{window}" + (f" ({why})" if why else ""))
    return replace(signals, signals=fitted, notes=[*signals.notes, note])


def cut_recordings(signals: SignalSet, window: int, overlap: float = WINDOW_OVERLAP,
                   why: str = "") -> SignalSet:
    """Every series of ``signals`` as overlapping windows of ``window`` steps (the last one
    ending at the series' end; a shorter series padded to one window), each window keeping its
    series' label and named ``SERIES@START``; what was done is the last of ``notes``."""
    cuts = [cut_windows(fit_length(series, max(window, series.shape[1])), window, overlap)
            for series in signals.signals]
    labels = None if signals.labels is None else np.repeat(
        signals.labels, [len(pieces) for _, pieces in cuts])
    rows = [f"{name}@{start}" for name, (starts, _) in zip(signals.row_names(), cuts,
                                                            strict=True) for start in starts]
    count = len(signals)
    note = (f"{count:,} recording{'s' * (count != 1)} of {signals.length:,} steps cut into "
            f"{len(rows):,} windows of {window} steps, stride {window_stride(window, overlap)}"
            + (f" ({why})" if why else ""))
    return SignalSet(np.concatenate([pieces for _, pieces in cuts]), labels, signals.classes,
                     signals.name, signals.skipped, [*signals.notes, note], rows=rows)
