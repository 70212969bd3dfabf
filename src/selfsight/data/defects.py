"""Synthetic local defects on real images, with exact pixel masks, for anomaly benchmarks.

Four kinds, drawn on the item (pixels brighter than the background), in the spirit of the defect
types of MVTec AD (Bergmann et al., 2021): a thin scratch, a punched hole, a stain, and a missing
part cut off one side of the item. A defect pixel is one whose value changed by at least
``min_change`` grey levels; pixels a defect would change less are left as they were, so the mask
is exactly the set of changed pixels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from selfsight.errors import UserError

DEFECT_KINDS = ("scratch", "hole", "stain", "missing")
FOREGROUND = 30  # grey level above which a pixel belongs to the item (Fashion-MNIST: black bg)


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    return np.mgrid[0:h, 0:w].astype(np.float64)


def _on_item(gray: np.ndarray, rng: np.random.Generator) -> tuple[float, float]:
    ys, xs = np.nonzero(gray > FOREGROUND)
    if len(ys) == 0:
        return gray.shape[0] / 2, gray.shape[1] / 2
    i = rng.integers(len(ys))
    return float(ys[i]), float(xs[i])


def _scratch(gray: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A straight 1-2 px line through a point on the item, inverted in brightness."""
    h, w = gray.shape
    cy, cx = _on_item(gray, rng)
    angle = rng.uniform(0, np.pi)
    length, width = rng.uniform(0.3, 0.6) * max(h, w), rng.uniform(0.5, 1.0)
    yy, xx = _grid(h, w)
    along = (yy - cy) * np.sin(angle) + (xx - cx) * np.cos(angle)
    across = -(yy - cy) * np.cos(angle) + (xx - cx) * np.sin(angle)
    region = (np.abs(along) <= length / 2) & (np.abs(across) <= width) & (gray > FOREGROUND)
    return region, np.where(gray > 127, gray * 0.2, 255 - (255 - gray) * 0.2)


def _hole(gray: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A round hole through the item: background shows through."""
    h, w = gray.shape
    cy, cx = _on_item(gray, rng)
    radius = rng.uniform(0.07, 0.13) * max(h, w)
    yy, xx = _grid(h, w)
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2, np.zeros_like(gray)


def _stain(gray: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """An elliptical blot of a fixed grey blended over the item."""
    h, w = gray.shape
    cy, cx = _on_item(gray, rng)
    ry, rx = rng.uniform(0.08, 0.18, size=2) * max(h, w)
    yy, xx = _grid(h, w)
    region = (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1) & (gray > FOREGROUND)
    colour = 255.0 if region.any() and gray[region].mean() < 110 else 40.0
    return region, 0.3 * gray + 0.7 * colour


def _missing(gray: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """10-25% of the item cut off along a straight edge in a random direction."""
    h, w = gray.shape
    item = gray > FOREGROUND
    yy, xx = _grid(h, w)
    angle = rng.uniform(0, 2 * np.pi)
    along = yy * np.sin(angle) + xx * np.cos(angle)
    if not item.any():
        return item, gray
    cut = np.quantile(along[item], 1 - rng.uniform(0.10, 0.25))
    return item & (along >= cut), np.zeros_like(gray)


MAKERS = {"scratch": _scratch, "hole": _hole, "stain": _stain, "missing": _missing}


def add_defects(images: np.ndarray, kinds: tuple[str, ...] = DEFECT_KINDS, seed: int = 0,
                min_change: int = 40, min_area: int = 4,
                ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """One random local defect per image: (N, H, W, C) uint8 -> (defective images (N, H, W, C),
    masks (N, H, W) bool, kind of each). Kinds cycle in order; positions and sizes are seeded.
    A defect that changes fewer than ``min_area`` pixels is redrawn (up to 20 times)."""
    unknown = [k for k in kinds if k not in MAKERS]
    if unknown:
        raise UserError(f"unknown defect kinds {unknown}; valid: {list(MAKERS)}")
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4:
        raise UserError(f"add_defects needs uint8 (N, H, W, C) images, got {images.dtype} "
                        f"{images.shape}")
    rng = np.random.default_rng(seed)
    out, masks, names = images.copy(), np.zeros(images.shape[:3], dtype=bool), []
    for i, image in enumerate(images):
        kind = kinds[i % len(kinds)]
        gray = image.astype(np.float64).mean(axis=-1)  # (H, W)
        for _ in range(20):
            region, value = MAKERS[kind](gray, rng)  # (H, W) bool, (H, W) new grey values
            new = np.clip(np.rint(value), 0, 255)
            mask = region & (np.abs(new - gray) >= min_change)
            if mask.sum() >= min_area:
                break
        # Every channel moves by the same amount as the grey level (kept in range), so colour
        # images get a defect of the same shape; a 1-channel image gets ``new`` exactly.
        shifted = image.astype(np.float64) + (new - gray)[..., None]
        out[i][mask] = np.clip(np.rint(shifted[mask]), 0, 255).astype(np.uint8)
        masks[i] = mask
        names.append(kind)
    return out, masks, names


def _save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.squeeze(-1) if array.shape[-1] == 1 else array).save(path)


def write_defect_folder(root: str | Path, train_good: np.ndarray, test_good: np.ndarray,
                        test_items: np.ndarray, kinds: tuple[str, ...] = DEFECT_KINDS,
                        seed: int = 0) -> Path:
    """An MVTec-AD-style folder: ``train/good``, ``test/good``, ``test/defect`` (``test_items``
    with defects added) and ``ground_truth/defect/NAME_mask.png`` (255 = defect pixel)."""
    root = Path(root)
    defective, masks, names = add_defects(test_items, kinds, seed)
    for i, img in enumerate(train_good):
        _save(root / "train" / "good" / f"{i:05d}.png", img)
    for i, img in enumerate(test_good):
        _save(root / "test" / "good" / f"{i:05d}.png", img)
    for i, (img, mask, kind) in enumerate(zip(defective, masks, names)):
        _save(root / "test" / "defect" / f"{i:05d}_{kind}.png", img)
        _save(root / "ground_truth" / "defect" / f"{i:05d}_{kind}_mask.png",
              (mask * 255).astype(np.uint8)[..., None])
    return root
