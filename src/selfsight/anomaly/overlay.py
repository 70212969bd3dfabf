"""Overlay pictures: the image, its anomaly map as a heat map, and the threshold contour."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from selfsight.file_names import display_name
from selfsight.files import write_atomic

PANEL_MIN, PANEL_MAX = 220, 1200  # px of the longer side of each of the two panels


def save_overlay(path: str | Path, image: np.ndarray, amap: np.ndarray,
                 pixel_threshold: float | None, title: str = "", vmax: float | None = None,
                 mask: np.ndarray | None = None) -> Path:
    """PNG of the image (H, W, C) uint8 beside the image with its map (H, W) as a heat map, the
    contour map == ``pixel_threshold`` in white (none when None) and, if given, the true
    ``mask`` in green. Each panel shows the image at its own size, between 220 and 1200 px on
    its longer side (a larger image is downscaled for the PNG only), so small defects stay
    visible.

    ``title`` is drawn as plain text: any file name in it is shown as
    :func:`selfsight.files.display_name` shows it (undecodable bytes and control characters as
    ``\\xHH``), and ``$`` never starts mathtext, so no name can fail the drawing."""
    path = Path(path)
    shown = image[..., 0] if image.shape[-1] == 1 else image
    cmap = "gray" if image.shape[-1] == 1 else None
    vmax = float(amap.max()) if vmax is None else vmax
    height, width = amap.shape
    panel = min(max(height, width, PANEL_MIN), PANEL_MAX) / max(height, width)  # px per pixel
    fig = Figure(figsize=(max(4.4, (2 * width * panel + 140) / 100),
                          max(2.4, (height * panel + 40) / 100)), dpi=100)
    left, right = fig.subplots(1, 2)
    left.imshow(shown, cmap=cmap, vmin=0, vmax=255)
    right.imshow(shown, cmap=cmap, vmin=0, vmax=255)
    heat = right.imshow(amap, cmap="jet", alpha=0.45, vmin=min(float(amap.min()), vmax), vmax=vmax)
    if pixel_threshold is not None and amap.min() < pixel_threshold < amap.max():
        right.contour(amap, levels=[pixel_threshold], colors="white", linewidths=1.2)
    if mask is not None and mask.any() and not mask.all():
        right.contour(mask.astype(float), levels=[0.5], colors="lime", linewidths=0.8)
    for ax in (left, right):
        ax.set_axis_off()
    fig.colorbar(heat, ax=right, fraction=0.046, pad=0.04)
    if title:
        fig.suptitle(display_name(title), fontsize=8, parse_math=False)
    write_atomic(path, lambda f: fig.savefig(f, format=path.suffix.lstrip(".") or "png"))
    return path
