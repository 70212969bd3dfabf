"""Report figures made of images: tiles framed in colour on one canvas (retrieval rows,
near-duplicate pairs, cluster galleries, numbered picks) and the segmentation examples."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib as mpl
import numpy as np
from matplotlib.figure import Figure

from selfsight.reports.style import (
    ACCENT,
    GRAY,
    MATCH,
    MISMATCH,
    WIDE,
    class_colours,
    new_figure,
    styled,
)


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


@styled
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


@styled
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


@styled
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


@styled
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


@styled
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
