"""Anomaly detection at the images' own resolution: files read whole (not squashed to the
backbone's square input), square tiles that cover an image of any shape, per-tile patch-score
maps stitched back to the image's size.

A defect of d px on a W-px photo shrinks to d * S / W px when the whole photo is resized to the
backbone's S-px input: a 12-px blemish on a 768-px photo becomes 1 px at S = 64 and vanishes.
Tiles of ``tile`` px resized to S shrink it only by tile / S.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from selfsight.data import ImageSet
from selfsight.data.decode import open_image
from selfsight.data.scan import scan_entries
from selfsight.errors import MissingInput, UserError
from selfsight.file_names import display_name

MAX_SIDE = 4096  # a short side above this is scaled down to it before tiling
MAX_PIXELS = 2 * Image.MAX_IMAGE_PIXELS  # PIL's own decompression-bomb limit (~179 MP)
AUTO_SHRINK = 2  # auto: tile when the whole image would be shrunk more than 2x


def auto_tile(short_sides: Sequence[int], image_size: int) -> int:
    """The tile (px of the original) for ``tile="auto"``: 0 (whole image) when the median short
    side is at most ``AUTO_SHRINK`` x the backbone's input, else ``AUTO_SHRINK`` x the input.

    Resizing a 2S-px tile to the S-px input halves a defect: a 10-14 px blemish stays 5-7 px,
    about one cell of the stride-4..8 patch grid the middle levels give, so it still moves a
    patch feature; a larger tile shrinks it below a cell, a smaller one multiplies the tiles
    (and the bank and the kNN cost) by 4 for each halving."""
    if not short_sides:
        return 0
    side = float(np.median(short_sides))
    return 0 if side <= AUTO_SHRINK * image_size else AUTO_SHRINK * image_size


def scaled_size(height: int, width: int, max_side: int = MAX_SIDE) -> tuple[int, int]:
    """(H, W) after scaling an image whose short side exceeds ``max_side`` down to it."""
    short = min(height, width)
    if short <= max_side:
        return height, width
    return max(1, round(height * max_side / short)), max(1, round(width * max_side / short))


def tile_starts(length: int, tile: int, overlap: float) -> list[int]:
    """Start offsets of tiles of ``tile`` px along ``length`` px, ``overlap`` of a tile shared
    by neighbours; the last tile ends at the edge, so the tiles cover every pixel."""
    if length <= tile:
        return [0]
    stride = max(1, round(tile * (1 - overlap)))
    n = math.ceil((length - tile) / stride) + 1
    return sorted({min(i * stride, length - tile) for i in range(n)})


def tile_boxes(height: int, width: int, tile: int,
               overlap: float) -> tuple[int, list[tuple[int, int]]]:
    """(side, [(y, x), ...]): square tiles of ``side`` = min(tile, H, W) px covering an
    (H, W) image, row by row; square, so a tile keeps the image's aspect ratio when resized."""
    side = max(1, min(tile, height, width))
    return side, [(y, x) for y in tile_starts(height, side, overlap)
                  for x in tile_starts(width, side, overlap)]


def tile_margin(side: int) -> int:
    """Reflection padding added around an image before tiling, in px: 1/8 of a tile (2 cells of
    a stride-4 grid), so the image's own border lies inside a tile, not on a tile's edge."""
    return side // 8


def pad_image(image: np.ndarray, margin: int) -> np.ndarray:
    """(H, W, C) -> (H + 2m, W + 2m, C), mirrored at the border."""
    if margin <= 0:
        return image
    return np.pad(image, ((margin, margin), (margin, margin), (0, 0)), mode="reflect")


def stitch(tile_maps: np.ndarray, boxes: list[tuple[int, int]], side: int, height: int,
           width: int) -> np.ndarray:
    """(T, side, side) per-tile maps -> (H, W): each pixel from the tile it lies most centrally
    in. Patch features on a tile's edge see the convolutions' zero padding and score high on
    normal images (62 % of tile maxima fell on the outer ring of cells, 23 % of the cells, in
    the 768-px photo test); where tiles overlap, a neighbour's central cells are used instead."""
    centre = np.minimum(np.arange(side) + 0.5, side - 0.5 - np.arange(side))  # (side,)
    window = np.minimum(centre[:, None], centre[None, :])  # (side, side) distance to the edge
    best = np.full((height, width), -1.0, np.float32)
    out = np.zeros((height, width), np.float32)
    for m, (y, x) in zip(tile_maps, boxes, strict=True):
        here = window > best[y:y + side, x:x + side]
        out[y:y + side, x:x + side][here] = m[here]
        best[y:y + side, x:x + side][here] = window[here]
    return out


@dataclass
class FullImages:
    """Images at their own resolution, read one at a time: files under folders, or arrays."""

    names: list[str]
    sizes: list[tuple[int, int]]  # (H, W) each, after the MAX_SIDE scaling
    channels: int
    paths: list[Path] | None = None
    arrays: list[np.ndarray] | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)
    max_side: int = MAX_SIDE

    def __len__(self) -> int:
        return len(self.names)

    def read(self, i: int) -> np.ndarray:
        """(H, W, C) uint8 of image ``i``."""
        if self.arrays is not None:
            return self.arrays[i]
        assert self.paths is not None
        try:
            img = open_image(self.paths[i], self.channels, draft=self.max_side)
        except Exception as error:  # PIL raises many kinds: one line naming the file
            raise UserError(f"{display_name(self.names[i])}: cannot be decoded "
                            f"({type(error).__name__}: {error})") from None
        h, w = scaled_size(img.height, img.width, self.max_side)
        if (h, w) != (img.height, img.width):
            img = img.resize((w, h), Image.BILINEAR, reducing_gap=3.0)
        return np.asarray(img, dtype=np.uint8).reshape(h, w, self.channels)

    def subset(self, index: Sequence[int]) -> FullImages:
        pick = list(index)
        return FullImages([self.names[i] for i in pick], [self.sizes[i] for i in pick],
                          self.channels,
                          None if self.paths is None else [self.paths[i] for i in pick],
                          None if self.arrays is None else [self.arrays[i] for i in pick],
                          [], self.max_side)

    def __iter__(self) -> Iterator[np.ndarray]:
        return (self.read(i) for i in range(len(self)))


def _header_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as img:
        width, height = img.size
    if width * height > MAX_PIXELS:
        raise UserError(f"{display_name(str(path))}: {width}x{height} px is too large to read "
                        f"(limit {MAX_PIXELS / 1e6:.0f} megapixels); downscale it first")
    return height, width


def _folder_files(root: Path) -> tuple[list[Path], list[tuple[str, str]]]:
    scan = scan_entries(root)
    return [root / rel for rel in scan.files], [(str(root / r), why) for r, why in scan.skipped]


def full_images(data: Any, channels: int, every: bool, max_side: int = MAX_SIDE) -> FullImages:
    """``data`` at its own resolution: a folder (a pre-split one: its train/ only, or with
    ``every`` train/ then test/, as ``load_images`` / ``load_every_image`` read it), an
    (N, H, W, C) array, a list of (H, W, C) arrays, or an ImageSet. Unreadable files are
    skipped with their reason; one larger than PIL's decompression-bomb limit is refused."""
    if isinstance(data, ImageSet):
        data = data.images
    if isinstance(data, (str, os.PathLike)):
        root = Path(data).expanduser()
        if not root.is_dir():
            raise MissingInput(f"image folder {root} not found (or not a directory)")
        roots = [root]
        if (root / "train").is_dir() and (root / "test").is_dir():
            roots = [root / "train", root / "test"] if every else [root / "train"]
        paths, sizes, skipped = [], [], []
        for r in roots:
            files, passed = _folder_files(r)
            skipped += passed
            for path in files:
                try:
                    height, width = _header_size(path)
                except UserError:
                    raise
                except Exception as error:  # PIL raises many kinds; skip the file, not the run
                    skipped.append((str(path), display_name(f"{type(error).__name__}: {error}")))
                    continue
                paths.append(path)
                sizes.append(scaled_size(height, width, max_side))
        if not paths:
            raise UserError(f"none of the images in {root} could be read: {skipped[:3]}")
        return FullImages([str(p) for p in paths], sizes, channels, paths=paths,
                          skipped=sorted(skipped), max_side=max_side)
    arrays = [np.asarray(a) for a in data]
    arrays = [a[..., None] if a.ndim == 2 else a for a in arrays]
    if any(a.ndim != 3 or a.dtype != np.uint8 for a in arrays):
        raise UserError("images must be (H, W, C) uint8 arrays")
    if channels == 3:
        arrays = [np.repeat(a, 3, axis=-1) if a.shape[-1] == 1 else a for a in arrays]
    elif channels == 1:
        arrays = [a.mean(axis=-1, keepdims=True).round().astype(np.uint8) if a.shape[-1] == 3
                  else a for a in arrays]
    return FullImages([f"array/{i}" for i in range(len(arrays))],
                      [a.shape[:2] for a in arrays], channels, arrays=arrays, max_side=max_side)

