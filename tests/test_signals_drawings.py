"""Drawings and windows for signals: `anomaly score` draws the highest-scoring recording with its
step scores beneath (checked pixel by pixel: the curve spans the axis and peaks at the fault,
the threshold line and the shaded flagged steps sit where the scores say), and `explore` /
`embed` take one long recording as the windows pretrain cut it into, named by start step."""

import csv

import numpy as np
import pytest
from matplotlib.colors import to_rgb
from PIL import Image

import selfsight
from conftest import one_thread
from selfsight.backbones import load_backbone
from selfsight.classify import run_signals
from selfsight.cli import main
from selfsight.device import computing_at
from selfsight.reports.signal_anomaly import (
    HANDFUL,
    ROW_HEIGHT,
    peak_windows,
    signal_anomaly_figure,
    threshold_spans,
    top_rows,
)
from selfsight.reports.style import ACCENT, MISMATCH, STYLE, WIDE, png_bytes
from selfsight.results import SignalAnomalyScores
from selfsight.run_folder import RunFolder
from selfsight.signals.embed import signal_features

STEPS, WINDOW, PERIOD = 1200, 64, 32
FAULT = slice(700, 740)


def recording(steps: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(steps)
    return (np.sin(2 * np.pi * t / PERIOD) + 0.05 * rng.standard_normal(steps)).astype(np.float32)


def window_starts(steps: int, window: int, stride: int) -> list[int]:
    """Slow and obvious: every stride-th start, and one more ending at the series' end."""
    return sorted({*range(0, steps - window + 1, stride), steps - window})


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("signal_drawings")
    np.save(root / "long.npy", recording(STEPS, 0)[None, None])
    with one_thread():  # tiny batches (conftest.one_thread)
        path = selfsight.pretrain(str(root / "long.npy"), out=root / "run", image_size=WINDOW,
                                  max_steps=3, seed=0, precision="32-true", progress=False,
                                  batch_size=32, backbone_options={"channels": (16, 32, 32)})
        yield root, path


def colour_mask(pixels: np.ndarray, colour, tolerance: int = 40) -> np.ndarray:
    target = np.array(to_rgb(colour)) * 255
    return np.abs(pixels.astype(int) - target).max(axis=-1) <= tolerance


def box(ax, height: int) -> tuple[slice, slice]:
    """Pixel rows and columns inside an axes of the saved PNG (rendered at savefig.dpi)."""
    scale = STYLE["savefig.dpi"] / ax.figure.dpi
    extent = ax.get_window_extent()
    x0, x1 = int(extent.x0 * scale) + 3, int(extent.x1 * scale) - 3
    y0, y1 = height - int(extent.y1 * scale) + 3, height - int(extent.y0 * scale) - 3
    return slice(y0, y1), slice(x0, x1)


def test_anomaly_score_draws_the_recording_and_its_scores(run, capsys):
    root, path = run
    np.save(root / "normal.npy", recording(2 * STEPS, 1)[None, None])
    faulty = recording(STEPS, 2)
    faulty[FAULT] += 1.5  # a level shift of 40 steps
    np.save(root / "faulty.npy", faulty[None, None])
    # Half of a long normal recording held out: 18 windows, enough for a 0.9-quantile threshold.
    assert main(["anomaly", "fit", str(path), str(root / "normal.npy"), "--precision", "32-true",
                 "--set", "val_fraction=0.5", "--set", "quantile=0.9"]) == 0
    assert main(["anomaly", "score", str(path / "anomaly"), str(root / "faulty.npy"),
                 "--out", str(root / "scores"), "--precision", "32-true"]) == 0
    assert "top_scores.png" in capsys.readouterr().out
    result = SignalAnomalyScores.load(root / "scores" / "scores.json")
    assert result.threshold is not None and result.picture.endswith("top_scores.png")
    scores = np.load(root / "scores" / "step_scores.npy")[0]
    pixels = np.asarray(Image.open(root / "scores" / "top_scores.png").convert("RGB"))
    # One whole recording of 1200 >= 8 windows, then its top windows zoomed: a handful of rows.
    dpi = STYLE["savefig.dpi"]
    assert pixels.shape == (round(HANDFUL * ROW_HEIGHT * dpi), round(WIDE * dpi), 3)

    # Where each axes lies: the same figure, laid out again.
    rows = top_rows([faulty[None]], [scores], ["faulty-train/0"], WINDOW)
    assert len(rows) == HANDFUL and rows[0].first == 0 and len(rows[0].score) == STEPS
    fig = signal_anomaly_figure(rows, result.threshold)
    png_bytes(fig)  # lays the figure out
    signal_ax, score_ax = fig.axes[0], fig.axes[1]
    height = pixels.shape[0]

    channel = pixels[box(signal_ax, height)]
    assert (~(channel > 235).all(axis=-1)).any(axis=0).mean() > 0.95  # drawn in every column
    ys, xs = box(score_ax, height)
    curve = colour_mask(pixels[ys, xs], ACCENT)
    assert curve.any(axis=0).mean() > 0.95  # the score curve runs the whole time axis
    # Its highest pixel lies over the fault: columns -> steps by the axis' own limits.
    top_rows_of_curve = np.where(curve.any(axis=0), curve.argmax(axis=0), curve.shape[0])
    left, right = score_ax.get_xlim()
    peak_step = left + (top_rows_of_curve.argmin() + 0.5) / curve.shape[1] * (right - left)
    assert FAULT.start - 30 <= peak_step < FAULT.stop + 30
    assert abs(peak_step - scores.argmax()) < 15

    # The threshold: a red dashed line at its height; shaded columns are the flagged steps.
    low, high = score_ax.get_ylim()
    line_row = round((high - result.threshold) / (high - low) * curve.shape[0])
    red = colour_mask(pixels[ys, xs], MISMATCH, tolerance=60)
    near = slice(max(0, line_row - 6), line_row + 7)
    clear = ~curve[near].any(axis=0)  # columns where the curve (drawn over it) is elsewhere
    assert clear.sum() > 20 and red[near][:, clear].any(axis=0).mean() > 0.4  # dashes
    assert red[:max(0, line_row - 6)].mean() < 0.01  # and no red line above it
    step_of_column = left + (np.arange(curve.shape[1]) + 0.5) / curve.shape[1] * (right - left)
    flagged = scores[np.clip(np.round(step_of_column).astype(int), 0, STEPS - 1)] \
        >= result.threshold
    pink = 0.85 + 0.15 * np.array(to_rgb(MISMATCH))  # the shading: red at alpha 0.15 on white
    shade = colour_mask(pixels[box(signal_ax, height)], pink, tolerance=8)
    shaded = shade.mean(axis=0) > 0.3
    assert flagged.any() and not flagged.all()
    assert (shaded == flagged).mean() > 0.95


def test_windows_of_a_long_recording_are_its_peaks_apart():
    rng = np.random.default_rng(0)
    score = rng.random(1000)
    score[[100, 130, 620]] = [5.0, 4.0, 3.0]  # 130 lies within a span of the first peak
    starts = peak_windows(score, 128, 4)
    assert starts[0] == 100 - 64 and starts[1] == 620 - 64
    assert all(abs(a - b) >= 128 for i, a in enumerate(starts) for b in starts[i + 1:])
    flags = rng.random(300) > 0.7
    expected, run_start = [], None  # slow and obvious: walk the flags
    for i, flag in enumerate([*flags, False]):
        if flag and run_start is None:
            run_start = i
        elif not flag and run_start is not None:
            expected.append((run_start, i))
            run_start = None
    assert threshold_spans(flags) == expected
    rows = top_rows([np.zeros((1, 50)), np.zeros((1, 50))], [np.ones(50), np.full(50, 2.0)],
                    ["a", "b"], 64)
    assert [r.title for r in rows] == ["b", "a"]  # short series: whole, highest first


def test_explore_and_embed_take_one_long_recording_as_windows(run, capsys):
    root, path = run
    data = str(root / "long.npy")
    assert main(["explore", str(path), data, "--precision", "32-true", "--no-progress"]) == 0
    starts = window_starts(STEPS, WINDOW, WINDOW // 4)
    said = capsys.readouterr().err
    assert (f"1 recording of {STEPS:,} steps cut into {len(starts)} windows of {WINDOW} steps, "
            f"stride {WINDOW // 4} (as pretrain cut the run's recordings)") in said
    with open(RunFolder(path).evaluation(data, "_clusters.csv")) as f:
        names = [row["file"] for row in csv.DictReader(f)]
    assert names == [f"long-train/0@{s}" for s in starts]

    out = root / "long_embeddings.npy"
    summary = selfsight.embed(path, data, out, progress=False, precision="32-true")
    assert summary.count == len(starts)
    embedded = np.load(out)
    series = np.load(data)[0]
    backbone = load_backbone(path)
    with computing_at("32-true", announce=False):
        expected = signal_features(backbone, np.stack([series[:, s:s + WINDOW]
                                                       for s in starts]))
    assert np.allclose(embedded, expected.numpy(), atol=1e-4)  # row i: the window at starts[i]
    # finetune --distill-epochs distils on the run's own recordings, as windows too
    pile = run_signals(path, backbone.config)
    assert pile.row_names() == [f"long-train/0@{s}" for s in starts]


if __name__ == "__main__":
    pytest.main([__file__])

