"""Report charts (matplotlib, Agg): curves, heatmaps, bars and scatter maps, one function per
figure, plain arrays and dicts in."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib as mpl
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from selfsight.reports.style import (
    ACCENT,
    ARM_COLOURS,
    ARM_LABELS,
    GRAY,
    HALF,
    TEAL,
    WIDE,
    class_colours,
    new_figure,
    styled,
)

# --- embedding map and clusters ------------------------------------------------------------


@styled
def embedding_map(points: np.ndarray, labels: np.ndarray, classes: Sequence[str],
                  title: str | None = None) -> Figure:
    """(N, 2) embedded points coloured by label (a class, or a cluster), with a legend of their
    names."""
    fig = new_figure(HALF, 6.6)
    ax = fig.add_subplot()
    colours = class_colours(len(classes))
    for c, name in enumerate(classes):
        mask = labels == c
        if mask.any():
            ax.scatter(points[mask, 0], points[mask, 1], s=7, color=colours[c], alpha=0.75,
                       linewidths=0, label=name, rasterized=True)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    for side in ("left", "bottom"):
        ax.spines[side].set_visible(False)
    ax.set_title(title or f"t-SNE of {len(points):,} test features, coloured by true class")
    fig.legend(loc="outside lower center", ncols=min(5, max(1, len(classes))), markerscale=3.5,
               handletextpad=0.2, columnspacing=0.9, fontsize=9.5)
    return fig


@styled
def silhouette_curve(scores: dict[int, float], chosen: int) -> Figure:
    """Mean silhouette of the k-means partition against the number of clusters, the choice
    marked."""
    ks = sorted(scores)
    fig = new_figure(HALF, 4.2)
    ax = fig.add_subplot()
    ax.plot(ks, [scores[k] for k in ks], marker="o", lw=2, ms=5, color=ACCENT)
    if chosen in scores:
        ax.scatter([chosen], [scores[chosen]], s=160, facecolors="none", edgecolors="#ea580c",
                   linewidths=2, zorder=3, label=f"chosen: {chosen} clusters")
        ax.legend(loc="best")
    ax.set_xticks(ks if len(ks) <= 20 else ks[::2])
    ax.set_xlabel("number of clusters k")
    ax.set_ylabel("mean silhouette")
    ax.set_title("How well separated the clusters are")
    return fig


# --- training ------------------------------------------------------------------------------


@styled
def training_curves(records: Sequence[dict[str, Any]]) -> Figure:
    """Loss (and online kNN where logged) against wall-clock minutes and images seen."""
    loss = [r for r in records if "loss" in r and "online_knn" not in r] or \
        [r for r in records if "loss" in r]
    knn = [r for r in records if "online_knn" in r]
    rows = 2 if knn else 1
    fig = new_figure(WIDE, 3.3 * rows + 0.4)
    axes = fig.subplots(rows, 2, squeeze=False, sharex="col")
    xs = (("elapsed", 1 / 60, "wall clock (minutes of training)"),
          ("images_seen", 1e-3, "images seen (thousands)"))
    for col, (key, scale, xlabel) in enumerate(xs):
        ax = axes[0, col]
        x = np.array([r[key] for r in loss], dtype=float) * scale
        y = np.array([r["loss"] for r in loss], dtype=float)
        ax.plot(x, y, color=ACCENT, lw=1.8)
        ax.set_ylabel("training loss")
        ax.set_title(f"loss vs {'wall clock' if col == 0 else 'images seen'}")
        if knn:
            ax = axes[1, col]
            kx = np.array([r[key] for r in knn], dtype=float) * scale
            ky = np.array([r["online_knn"] for r in knn], dtype=float)
            ax.plot(kx, ky, color=TEAL, lw=1.8, marker="o", ms=5)
            ax.annotate(f"{ky[-1]:.3f}", (kx[-1], ky[-1]), textcoords="offset points",
                        xytext=(-4, 8), ha="right", fontsize=10, color=TEAL)
            ax.set_ylabel("online kNN top-1")
            ax.set_title(f"online kNN vs {'wall clock' if col == 0 else 'images seen'}")
        axes[rows - 1, col].set_xlabel(xlabel)
    return fig


# --- labels --------------------------------------------------------------------------------


@styled
def label_efficiency_curve(result: dict[str, Any]) -> Figure:
    """Accuracy against the fraction of labels (log x), mean ± std over seeds for each arm, the
    scratch-at-100% line, and the savings factor in the title."""
    keys = [str(f) for f in result["fractions"]]  # the JSON's keys are str(fraction)
    fractions = [float(f) for f in result["fractions"]]
    fig = new_figure(HALF, 4.6 if len(result["mean"]) <= 3 else 5.4)
    ax = fig.add_subplot()
    for arm, means in result["mean"].items():
        mean = np.array([means.get(k, np.nan) for k in keys], dtype=float)
        std = np.array([result.get("std", {}).get(arm, {}).get(k, 0.0) for k in keys],
                       dtype=float)
        distilled = arm.endswith("_distilled")  # drawn dashed in its arm's colour
        colour = ARM_COLOURS.get(arm.removesuffix("_distilled"), TEAL)
        ax.plot(fractions, mean, marker="s" if distilled else "o", lw=2, ms=6, color=colour,
                ls="--" if distilled else "-", label=ARM_LABELS.get(arm, arm))
        ax.fill_between(fractions, mean - std, mean + std, color=colour, alpha=0.15, lw=0)
        if len(fractions) == 1:  # a band one point wide is invisible: draw the spread as a bar
            ax.errorbar(fractions, mean, yerr=std, color=colour, capsize=4, lw=1.5)
    most = int(np.argmax(fractions))  # the scratch reference: all labels, or the most run
    full = result["mean"].get("scratch", {}).get(keys[most])
    if full is not None:
        ax.axhline(full, color=GRAY, ls="--", lw=1.2)
        ax.annotate(f"scratch with {100 * fractions[most]:g}% labels: {full:.3f}",
                    (fractions[0], full),
                    textcoords="offset points", xytext=(2, 5), fontsize=9.5, color=GRAY,
                    bbox={"fc": "white", "ec": "none", "alpha": 0.85, "pad": 1})  # over curves
    ax.set_xscale("log")
    ax.set_xticks(fractions, [f"{100 * f:g}%" for f in fractions])
    ax.minorticks_off()
    ax.set_xlabel("fraction of training labels used")
    ax.set_ylabel("test top-1")
    factor = result.get("savings_factor")
    up_to = "up to " if result.get("savings_upper_bound") else ""
    ax.set_title(f"Same accuracy with {up_to}{factor:.3g}\u00d7 fewer labels" if factor
                 else "Accuracy against labels used")
    # Distilled arms too, or one fraction (every point in one column): legend under the axes.
    if len(result["mean"]) > 3 or len(fractions) == 1:
        fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncol=2,
                   fontsize=9)
    else:
        ax.legend(loc="lower right")
    return fig


@styled
def confusion_matrix(confusion: np.ndarray, classes: Sequence[str]) -> Figure:
    """Row-normalised confusion matrix (rows: true class, columns: predicted), in percent."""
    counts = np.asarray(confusion, dtype=float)
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    n = len(classes)
    fig = new_figure(max(HALF, 0.5 * n + 1.8), max(5.4, 0.45 * n + 1.8))
    ax = fig.add_subplot()
    im = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ax.grid(False)
    if n <= 25:
        for i in range(n):
            for j in range(n):
                if rates[i, j] >= 0.005:
                    ax.text(j, i, f"{100 * rates[i, j]:.0f}", ha="center", va="center",
                            fontsize=8.5 if n <= 12 else 6.5,
                            color="white" if rates[i, j] > 0.55 else "#1f2937")
    ax.set_xticks(range(n), classes, rotation=40, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title("Confusion (kNN k=20), % of each true class")
    fig.colorbar(im, ax=ax, shrink=0.75, format=lambda v, _: f"{100 * v:.0f}%")
    return fig


@styled
def per_class_accuracy(classes: Sequence[str], accuracy: Sequence[float],
                       test_counts: Sequence[int] | None = None) -> Figure:
    """Horizontal bars of per-class accuracy in class order, with the mean as a dashed line."""
    acc = np.asarray(accuracy, dtype=float)
    n = len(classes)
    fig = new_figure(HALF, max(3.2, 0.4 * n + 1.2))
    ax = fig.add_subplot()
    colours = class_colours(n)
    y = np.arange(n)
    ax.barh(y, acc, color=colours, height=0.68)
    for i, a in enumerate(acc):
        extra = f"  (n={test_counts[i]:,})" if test_counts is not None else ""
        ax.text(min(a, 1.0) + 0.01, i, f"{a:.2f}{extra}", va="center", fontsize=9,
                color="#374151")
    ax.axvline(acc.mean(), color=GRAY, ls="--", lw=1.2)
    ax.set_yticks(y, classes)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.28)
    ax.set_xticks(np.linspace(0, 1, 6))
    ax.set_xlabel("test accuracy (kNN k=20)")
    ax.grid(axis="y", visible=False)
    ax.set_title(f"Accuracy per class (dashed: mean {acc.mean():.3f})")
    return fig


# --- evaluation settings -------------------------------------------------------------------


@styled
def knn_sweep_heatmap(ks: Sequence[int], temperatures: Sequence[float],
                      top1: np.ndarray) -> Figure:
    """kNN top-1 for every (k, temperature) pair; the best cell outlined."""
    acc = np.asarray(top1, dtype=float)
    fig = new_figure(max(HALF, 0.8 * len(temperatures) + 1.8), max(3.6, 0.5 * len(ks) + 1.6))
    ax = fig.add_subplot()
    im = ax.imshow(acc, cmap="viridis", aspect="auto")
    ax.grid(False)
    lo, hi = np.nanmin(acc), np.nanmax(acc)
    for i in range(len(ks)):
        for j in range(len(temperatures)):
            bright = (acc[i, j] - lo) / max(hi - lo, 1e-9) > 0.6
            ax.text(j, i, f"{acc[i, j]:.3f}", ha="center", va="center", fontsize=9.5,
                    color="#111827" if bright else "white")
    best = np.unravel_index(np.nanargmax(acc), acc.shape)
    ax.add_patch(Rectangle((best[1] - 0.5, best[0] - 0.5), 1, 1, fill=False, ec="#f97316",
                           lw=2.5))
    ax.set_xticks(range(len(temperatures)), [f"{t:g}" for t in temperatures])
    ax.set_yticks(range(len(ks)), [str(k) for k in ks])
    ax.set_xlabel("temperature T")
    ax.set_ylabel("neighbours k")
    ax.set_title(f"kNN top-1; best {acc[best]:.3f} at k={ks[best[0]]}, "
                 f"T={temperatures[best[1]]:g}")
    fig.colorbar(im, ax=ax, shrink=0.85)
    return fig


@styled
def robustness_curves(result: dict[str, Any]) -> Figure:
    """Accuracy against corruption severity, one line per corruption, from the clean accuracy."""
    clean = float(result["clean"])
    severities = [0, *[int(s) for s in result["severities"]]]
    fig = new_figure(HALF, 4.6)
    ax = fig.add_subplot()
    markers = "osD^vP*X"
    colours = mpl.colormaps["tab10"].colors
    for i, (name, values) in enumerate(result["corruptions"].items()):
        ax.plot(severities, [clean, *values], marker=markers[i % len(markers)], lw=2, ms=6,
                color=colours[(i + 4) % 10], label=name.replace("_", " "))
    ax.axhline(clean, color=GRAY, ls="--", lw=1.2)
    ax.annotate(f"clean {clean:.3f}", (severities[-1], clean), textcoords="offset points",
                xytext=(0, 5), ha="right", fontsize=9.5, color=GRAY)
    ax.set_xticks(severities, ["clean", *[str(s) for s in severities[1:]]])
    ax.set_xlabel("corruption severity")
    ax.set_ylabel("test top-1")
    ax.set_ylim(bottom=max(0.0, ax.get_ylim()[0]))
    ax.set_title("Accuracy under corruption")
    ax.legend(loc="lower left")
    return fig


