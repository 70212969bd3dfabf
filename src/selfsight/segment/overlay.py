"""Instance overlays: each mask tinted in its own colour with a solid outline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib import colormaps
from PIL import Image
from scipy import ndimage

from selfsight.files import write_atomic


def draw_instances(image: np.ndarray, masks: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """(H, W[, C]) uint8 image and (K, H, W) bool masks -> (H, W, 3) uint8 picture."""
    rgb = np.repeat(image[..., None], 3, -1) if image.ndim == 2 else image[..., :3]
    if rgb.shape[-1] == 1:
        rgb = np.repeat(rgb, 3, -1)
    out = rgb.astype(np.float64)
    colours = colormaps["tab10"](np.arange(len(masks)) % 10)[:, :3] * 255
    for mask, colour in zip(masks, colours):
        out[mask] = (1 - alpha) * out[mask] + alpha * colour
        outline = mask & ~ndimage.binary_erosion(mask)
        out[outline] = colour
    return out.round().astype(np.uint8)


def save_panel(path: str | Path, columns: list[list[np.ndarray]], scale: int = 2) -> Path:
    """Save rows of same-sized pictures side by side (one row per image, one column per view:
    e.g. ground truth, pseudo-masks, segmenter), each enlarged ``scale`` times, 2-px gaps."""
    path = Path(path)
    h, w = columns[0][0].shape[:2]
    gap = 2
    rows, cols = len(columns[0]), len(columns)
    sheet = np.full((rows * (h + gap) - gap, cols * (w + gap) - gap, 3), 255, np.uint8)
    for c, column in enumerate(columns):
        for r, picture in enumerate(column):
            sheet[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = picture
    panel = Image.fromarray(sheet).resize((sheet.shape[1] * scale, sheet.shape[0] * scale),
                                          Image.NEAREST)
    write_atomic(path, lambda f: panel.save(f, "PNG"))
    return path
