"""Report figures (matplotlib, Agg): one function per figure, plain arrays and dicts in.

Figures are built on ``matplotlib.figure.Figure`` directly (no pyplot state), so they render
with the Agg canvas and never open a window. Colours are shared across figures: the same class
has the same colour everywhere, and the label-efficiency arms keep theirs.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib as mpl
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

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
    Path(path).write_bytes(data)
    return data


def _styled(build: Any) -> Any:
    """Build a figure inside the report's rc style (fonts and ticks are read at build time)."""
    def wrapper(*args: Any, **kwargs: Any) -> Figure:
        with mpl.rc_context(STYLE):
            return build(*args, **kwargs)

    wrapper.__name__, wrapper.__doc__ = build.__name__, build.__doc__
    return wrapper


# --- embedding map -------------------------------------------------------------------------


def tsne_2d(features: np.ndarray, seed: int = 0) -> np.ndarray:
    """t-SNE (van der Maaten & Hinton, 2008) of (N, D) features to (N, 2), cosine metric."""
    from sklearn.manifold import TSNE

    x = np.asarray(features, dtype=np.float32)
    perplexity = float(min(30.0, max(2.0, (len(x) - 1) / 3)))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", metric="cosine",
                random_state=seed).fit_transform(x)


def spread_sample(labels: np.ndarray, limit: int, seed: int = 0) -> np.ndarray:
    """Up to ``limit`` sorted row indices, drawn at random (every row when there are fewer)."""
    if len(labels) <= limit:
        return np.arange(len(labels))
    return np.sort(np.random.default_rng(seed).choice(len(labels), limit, replace=False))


@_styled
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


# --- retrieval -----------------------------------------------------------------------------


def nearest_neighbours(features: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray,
                                                                                np.ndarray]:
    """The ``k`` most cosine-similar rows of ``features`` for each query row, the query itself
    left out: (Q, k) indices and (Q, k) similarities, most similar first."""
    x = np.asarray(features, dtype=np.float32)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    sims = x[queries] @ x.T  # (Q, N)
    sims[np.arange(len(queries)), queries] = -np.inf
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]  # (Q, k)
    return order, np.take_along_axis(sims, order, axis=1)


def pick_queries(labels: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """``n`` random query rows, one per class first (so the grid shows different classes)."""
    rng = np.random.default_rng(seed)
    present = rng.permutation(np.unique(labels))
    picks = [int(rng.choice(np.flatnonzero(labels == c))) for c in present[:n]]
    rest = np.setdiff1d(np.arange(len(labels)), picks)
    extra = rng.choice(rest, size=min(n - len(picks), len(rest)), replace=False)
    return np.array([*picks, *extra.tolist()], dtype=np.int64)


def _rgb(image: np.ndarray, scale: int) -> np.ndarray:
    """(H, W, C) uint8 -> (H*scale, W*scale, 3) uint8, nearest-neighbour enlarged."""
    rgb = np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image[..., :3]
    return rgb.repeat(scale, axis=0).repeat(scale, axis=1)


def image_mosaic(rows: Sequence[Sequence[np.ndarray]], borders: Sequence[Sequence[str]],
                 gap_after: int | None = None, tile: int = 112, border: int = 6,
                 gap: int = 10, row_gap: int = 34,
                 ) -> tuple[np.ndarray, list[float], list[float], int]:
    """Tiles in a grid on white, each framed in its colour: one image for one ``imshow`` (fast
    to draw, unlike an axes per tile). Returns the canvas, the tiles' centre x and y and their
    height (px)."""
    h, w = rows[0][0].shape[:2]
    scale = max(1, tile // max(h, w))
    th, tw = h * scale + 2 * border, w * scale + 2 * border
    n_cols = max(len(r) for r in rows)
    extra = 2 * gap if gap_after is not None else 0
    xs = [c * (tw + gap) + (extra if gap_after is not None and c > gap_after else 0)
          for c in range(n_cols)]
    ys = [r * (th + row_gap) for r in range(len(rows))]
    canvas = np.full((ys[-1] + th, xs[-1] + tw, 3), 255, np.uint8)
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            colour = (np.array(mpl.colors.to_rgb(borders[r][c])) * 255).astype(np.uint8)
            canvas[ys[r]:ys[r] + th, xs[c]:xs[c] + tw] = colour
            canvas[ys[r] + border:ys[r] + th - border,
                   xs[c] + border:xs[c] + tw - border] = _rgb(image, scale)
    return canvas, [x + tw / 2 for x in xs], [y + th / 2 for y in ys], th


def _mosaic_axes(fig: Figure, canvas: np.ndarray) -> Any:
    ax = fig.add_subplot()
    ax.imshow(canvas, interpolation="nearest")
    ax.set_axis_off()
    return ax


@_styled
def retrieval_grid(images: np.ndarray, labels: np.ndarray, classes: Sequence[str],
                   queries: np.ndarray, neighbours: np.ndarray,
                   similarities: np.ndarray) -> Figure:
    """Each row: a query test image, then its nearest test neighbours; green frame when the
    neighbour's label matches the query's, red otherwise."""
    rows = [[images[q], *images[neighbours[r]]] for r, q in enumerate(queries)]
    borders = [["#111827", *[MATCH if labels[j] == labels[q] else MISMATCH
                             for j in neighbours[r]]] for r, q in enumerate(queries)]
    canvas, xs, ys, height = image_mosaic(rows, borders, gap_after=0)
    fig = new_figure(WIDE, WIDE * canvas.shape[0] / canvas.shape[1] * 0.86 + 0.5)
    ax = _mosaic_axes(fig, canvas)
    for r, q in enumerate(queries):
        ax.text(xs[0] - 70, ys[r], classes[labels[q]], ha="right", va="center", fontsize=10.5)
        for c in range(neighbours.shape[1]):
            ax.text(xs[c + 1], ys[r] + height / 2 + 3, f"{similarities[r, c]:.2f}", ha="center",
                    va="top", fontsize=9, color="#374151")
    ax.text(xs[0], -14, "query", ha="center", va="bottom", fontsize=10.5, fontweight="bold")
    for c in range(neighbours.shape[1]):
        ax.text(xs[c + 1], -14, f"#{c + 1}", ha="center", va="bottom", fontsize=10,
                color="#374151")
    ax.set_xlim(-200, canvas.shape[1])
    ax.set_ylim(canvas.shape[0] + 30, -60)
    return fig


@_styled
def duplicate_pairs(test_images: np.ndarray, train_images: np.ndarray,
                    pairs: Sequence[Sequence[float]],
                    names: tuple[str, str] = ("test", "train")) -> Figure:
    """Near-duplicate examples: each column a test image above the training image it nearly
    repeats (or, with other ``names``, any image above its near copy), with their cosine
    similarity."""
    rows = [[test_images[int(p[0])] for p in pairs], [train_images[int(p[1])] for p in pairs]]
    canvas, xs, ys, _ = image_mosaic(rows, [[GRAY] * len(pairs)] * 2, row_gap=12)
    fig = new_figure(min(WIDE, 1.25 * len(pairs) + 1.0), 3.0)
    ax = _mosaic_axes(fig, canvas)
    for c, (_, _, sim) in enumerate(pairs):
        ax.text(xs[c], -12, f"{sim:.3f}", ha="center", va="bottom", fontsize=10)
    for r, name in enumerate(names):
        ax.text(-14, ys[r], name, ha="right", va="center", fontsize=10.5)
    ax.set_xlim(-90, canvas.shape[1])
    ax.set_ylim(canvas.shape[0], -50)
    return fig


@_styled
def cluster_gallery(images: np.ndarray, clusters: Sequence[dict[str, Any]]) -> Figure:
    """Each row a cluster: its most typical images (nearest its centre), framed in the cluster's
    colour of the embedding map, with its size."""
    colours = class_colours(len(clusters))
    rows = [[images[i] for i in c["typical"]] for c in clusters]
    borders = [[colours[c["cluster"]]] * len(row) for c, row in zip(clusters, rows)]
    canvas, xs, ys, _ = image_mosaic(rows, borders, row_gap=14)
    fig = new_figure(WIDE, WIDE * canvas.shape[0] / canvas.shape[1] * 0.8 + 0.3)
    ax = _mosaic_axes(fig, canvas)
    total = sum(c["size"] for c in clusters)
    for r, c in enumerate(clusters):
        ax.text(xs[0] - 80, ys[r], f"cluster {c['cluster']}\n{c['size']:,} images "
                f"({100 * c['size'] / total:.0f}%)", ha="right", va="center", fontsize=10.5)
    ax.set_xlim(-260, canvas.shape[1])
    return fig


@_styled
def numbered_images(images: np.ndarray, rows: Sequence[int], columns: int = 10) -> Figure:
    """Images in reading order, each numbered above (1 = first)."""
    tiles = [images[r] for r in rows]
    grid = [tiles[i:i + columns] for i in range(0, len(tiles), columns)]
    canvas, xs, ys, height = image_mosaic(grid, [[GRAY] * len(g) for g in grid], row_gap=30)
    fig = new_figure(WIDE, WIDE * canvas.shape[0] / canvas.shape[1] * 0.9 + 0.3)
    ax = _mosaic_axes(fig, canvas)
    for i in range(len(tiles)):
        ax.text(xs[i % columns], ys[i // columns] - height / 2 - 4, f"{i + 1}", ha="center",
                va="bottom", fontsize=10, color="#374151")
    ax.set_ylim(canvas.shape[0], -30)
    return fig


@_styled
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


@_styled
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


@_styled
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


@_styled
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


@_styled
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


@_styled
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


@_styled
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


@_styled
def instances(examples: np.ndarray, counts: Sequence[int]) -> Figure:
    """Overlay examples from ``selfsight segment`` (one row, each instance in its own colour)
    above a histogram of how many instances each image got."""
    fig = new_figure(WIDE, WIDE * examples.shape[0] / examples.shape[1] + 2.6)
    top, bottom = fig.subplots(2, 1, height_ratios=[examples.shape[0] / examples.shape[1] * 6, 1])
    top.imshow(examples, interpolation="nearest")
    top.set_axis_off()
    top.set_title("Instances found, first images of the folder")
    most = max(counts, default=0)
    bottom.hist(counts, bins=np.arange(most + 2) - 0.5, color=ACCENT, rwidth=0.85)
    bottom.set_xticks(range(most + 1))
    bottom.yaxis.get_major_locator().set_params(integer=True)
    bottom.set_xlabel("instances per image")
    bottom.set_ylabel("images")
    return fig
