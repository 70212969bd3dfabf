"""The picture ``anomaly score`` writes for signals, the counterpart of the image overlays: for
each of the highest-scoring recordings, its channels over time with its per-step anomaly score
beneath on the same time axis, the threshold as a line and the steps above it shaded. A long
recording is drawn whole, then its highest-scoring windows zoomed in the rows left over.

Scores come from PatchCore on per-step features (Roth et al., 2022, "Towards total recall in
industrial anomaly detection"; :mod:`selfsight.signals.anomaly`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from selfsight.file_names import display_name
from selfsight.reports.style import (
    ACCENT,
    GRAY,
    MISMATCH,
    WIDE,
    class_colours,
    new_figure,
    save_png,
    styled,
)

HANDFUL = 6  # rows of one picture at most
ROW_HEIGHT = 2.7  # inches per row: the channels over twice the height of the score beneath
COLUMNS = 1500  # a curve longer than this is drawn as each column's min-max envelope, so a
# one-step spike in a recording of 100,000 steps stays visible at the picture's width
LONG = 8  # a recording of at least this many windows also gets its top windows zoomed
ZOOM = 2  # a zoomed window spans this many windows, centred on its peak: the peak in context


@dataclass
class Row:
    """One row of the picture: steps ``first``..``first + len(score)`` of one recording."""

    title: str
    series: np.ndarray  # (C, T)
    score: np.ndarray  # (T,)
    first: int = 0


def top_rows(series: Sequence[np.ndarray], scores: Sequence[np.ndarray], names: Sequence[str],
             window: int, count: int = HANDFUL) -> list[Row]:
    """The ``count`` rows of the picture: the highest-scoring recordings whole, then, while
    rows are left, the highest-scoring windows (each ``ZOOM`` windows wide around its peak, not
    overlapping another) of those at least ``LONG`` windows long."""
    order = np.argsort([-float(s.max()) for s in scores], kind="stable")[:count]
    rows = [Row(display_name(names[i]), series[i], scores[i]) for i in order]
    width = ZOOM * window
    peaks = [(float(scores[i][start:start + width].max()), k, int(i), start)
             for k, i in enumerate(order) if len(scores[i]) >= LONG * window
             for start in peak_windows(scores[i], width, count - len(rows))]
    for _, _, i, start in sorted(peaks, reverse=True)[:count - len(rows)]:
        stop = start + width
        rows.append(Row(f"{display_name(names[i])}, steps {start:,}..{stop - 1:,}",
                        series[i][:, start:stop], scores[i][start:stop], start))
    return rows


def peak_windows(score: np.ndarray, width: int, count: int) -> list[int]:
    """Starts of up to ``count`` non-overlapping spans of ``width`` steps, each centred on the
    highest step score whose span overlaps none before it (moved inside the recording at its
    ends)."""
    centred = np.clip(np.arange(len(score)) - width // 2, 0, len(score) - width)
    free = np.ones(len(score), bool)
    starts: list[int] = []
    while len(starts) < count and free.any():
        start = int(centred[np.flatnonzero(free)[np.argmax(score[free])]])
        starts.append(start)
        free &= np.abs(centred - start) >= width
    return starts


def threshold_spans(flags: np.ndarray, gap: int = 1) -> list[tuple[int, int]]:
    """[start, stop) of each run of True in ``flags``, runs less than ``gap`` apart merged."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], flags.astype(np.int8), [0]])))
    spans: list[tuple[int, int]] = []
    for start, stop in zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True):
        if spans and start - spans[-1][1] < gap:
            spans[-1] = (spans[-1][0], stop)
        else:
            spans.append((start, stop))
    return spans


def _curve(ax: Axes, values: np.ndarray, first: int, colour: object, width: float,
           label: str | None = None) -> None:
    """``values`` over steps ``first``.., as a line, or as each of ``COLUMNS`` columns' min-max
    envelope when longer (every extreme kept)."""
    if len(values) <= COLUMNS:
        ax.plot(np.arange(first, first + len(values)), values, color=colour, linewidth=width,
                label=label)
        return
    edges = np.linspace(0, len(values), COLUMNS + 1).astype(int)[:-1]
    ax.fill_between(first + edges, np.minimum.reduceat(values, edges),
                    np.maximum.reduceat(values, edges), color=colour, linewidth=width / 2,
                    edgecolor=colour, step="post", label=label)


@styled
def signal_anomaly_figure(rows: Sequence[Row], threshold: float | None,
                          vmax: float | None = None) -> Figure:
    """Each row: the channels (one colour each) above the step score (same time axis), the
    threshold dashed and the steps at or above it shaded in both. Score axes share 0..``vmax``
    (default: the largest score drawn, or the threshold if higher) so rows compare."""
    top = max([float(r.score.max()) for r in rows] + [threshold or 0.0])
    vmax = vmax if vmax is not None else top
    fig = new_figure(WIDE, ROW_HEIGHT * len(rows))
    axes = fig.subplots(2 * len(rows), 1, gridspec_kw={"height_ratios": [2, 1] * len(rows)},
                        squeeze=False)[:, 0]
    for row, signal_ax, score_ax in zip(rows, axes[::2], axes[1::2], strict=True):
        score_ax.sharex(signal_ax)
        channels = len(row.series)
        for c, (values, colour) in enumerate(zip(row.series, class_colours(channels),
                                                 strict=True)):
            _curve(signal_ax, values, row.first, colour, 0.9, f"channel {c + 1}")
        if 1 < channels <= 10 and row is rows[0]:  # once, above the data, right of the title
            signal_ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncols=channels,
                             fontsize=8, handlelength=1.2, borderaxespad=0.2)
        peak = int(row.score.argmax())
        signal_ax.set_title(f"{row.title}: score {row.score[peak]:.3f} at step "
                            f"{row.first + peak:,}", loc="left", fontsize=10, parse_math=False)
        signal_ax.tick_params(labelbottom=False)
        _curve(score_ax, row.score, row.first, ACCENT, 1.2)  # drawn over the threshold
        span = vmax or 1.0  # a margin below 0, so low scores stay off the axis line
        score_ax.set_ylim(min(0.0, float(row.score.min())) - 0.06 * span, 1.05 * span)
        score_ax.set_ylabel("score", fontsize=9)
        if threshold is not None:
            score_ax.axhline(threshold, color=MISMATCH, linestyle="--", linewidth=1.0,
                             zorder=1.5)
            gap = max(1, len(row.score) // COLUMNS)
            for start, stop in threshold_spans(row.score >= threshold, gap):
                for ax in (signal_ax, score_ax):
                    ax.axvspan(row.first + start - 0.5, row.first + stop - 0.5,
                               color=MISMATCH, alpha=0.15, linewidth=0)
        score_ax.set_xlim(row.first, row.first + max(1, len(row.score) - 1))
    axes[-1].set_xlabel("time step")
    rule = ("no threshold (too little normal data held out to set one)" if threshold is None
            else f"threshold {threshold:.3f} dashed, steps at or above it shaded")
    fig.suptitle(f"Highest anomaly scores per time step; {rule}", fontsize=11, color=GRAY)
    return fig


def save_signal_anomaly(path: str | Path, rows: Sequence[Row], threshold: float | None,
                        vmax: float | None = None) -> Path:
    """Write :func:`signal_anomaly_figure` as a PNG at ``path``."""
    save_png(signal_anomaly_figure(rows, threshold, vmax), path)
    return Path(path)
