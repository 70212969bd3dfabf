"""Multi-object scenes of Fashion-MNIST items with exact instance masks, in COCO format.

A benchmark for unsupervised instance segmentation that we can run on a CPU: several items per
scene at random scale, position and brightness on a textured background, with same-category
instances placed side by side, touching or partly overlapping (the case where category features
alone cannot tell instances apart). An item's pixels are those of its resized image brighter than
``FOREGROUND``; items are pasted in order, later ones over earlier ones, so every instance mask is
exactly the set of scene pixels that show that item. Train scenes use train items only, test
scenes test items only.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from selfsight.data.defects import FOREGROUND
from selfsight.data.fashion_mnist import load_fashion_mnist
from selfsight.errors import MissingInput


@dataclass
class SceneConfig:
    size: int = 96
    items: tuple[int, int] = (2, 5)  # items per scene, inclusive
    item_size: tuple[int, int] = (22, 44)  # side of the resized 28-px item, px
    neighbour_prob: float = 0.6  # chance an item is a same-category neighbour of an earlier one
    # A neighbour's overlap with the item beside it, as a fraction of its side (<= 0: a gap).
    neighbour_overlap: tuple[float, float] = (-0.1, 0.35)
    brightness: tuple[float, float] = (0.55, 1.0)
    background: tuple[int, int] = (0, 70)  # grey-level range of the background texture
    min_visible: float = 0.6  # every item keeps at least this fraction of its pixels visible
    tries: int = 30  # placements tried per item before it is left out


@dataclass
class Scene:
    """One scene; ``masks[k]`` is the visible part of item ``k`` (disjoint, in paste order)."""

    image: np.ndarray  # (S, S) uint8
    masks: np.ndarray  # (K, S, S) bool
    categories: np.ndarray  # (K,) Fashion-MNIST class of each instance
    sources: np.ndarray  # (K,) index of each item in its Fashion-MNIST split
    boxes: np.ndarray  # (K, 3) top, left, side of each resized item
    amodal: np.ndarray = field(repr=False)  # (K, S, S) bool: each item's pixels, before occlusion
    layers: np.ndarray = field(repr=False)  # (K, S, S) uint8: each item alone, before occlusion
    background: np.ndarray = field(repr=False)  # (S, S) uint8


def textured_background(size: int, rng: np.random.Generator, levels: tuple[int, int]) -> np.ndarray:
    """Smooth noise plus stripes of a random orientation and period, scaled into ``levels``."""
    coarse = rng.random((rng.integers(3, 9),) * 2)
    noise = np.asarray(Image.fromarray((coarse * 255).astype(np.uint8)).resize(
        (size, size), Image.BICUBIC), dtype=np.float64) / 255
    yy, xx = np.mgrid[0:size, 0:size]
    angle, period = rng.uniform(0, np.pi), rng.uniform(4, 16)
    stripes = 0.5 + 0.5 * np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period)
    mix = rng.uniform(0, 1)
    texture = mix * noise + (1 - mix) * stripes
    low = rng.uniform(levels[0], (levels[0] + levels[1]) / 2)
    high = rng.uniform(low, levels[1])
    return np.round(low + (high - low) * texture).astype(np.uint8)


def _item_layer(item: np.ndarray, side: int, brightness: float) -> tuple[np.ndarray, np.ndarray]:
    """The resized item's (side, side) pixels after brightness and its foreground mask."""
    resized = np.asarray(Image.fromarray(item).resize((side, side), Image.BILINEAR))
    mask = resized > FOREGROUND
    return np.round(resized * brightness).astype(np.uint8), mask


def _neighbour_position(box: tuple[int, int, int], side: int, size: int, overlap: float,
                        rng: np.random.Generator) -> tuple[int, int]:
    """Top-left corner beside ``box`` (y, x, side) on a random side, ``overlap`` of ``side`` in."""
    y, x, other = box
    shift = round(side * overlap)
    along = rng.integers(-side // 3, other - 2 * side // 3 + 1)
    direction = rng.integers(4)
    if direction == 0:
        pos = (y + along, x + other - shift)  # right
    elif direction == 1:
        pos = (y + along, x - side + shift)  # left
    elif direction == 2:
        pos = (y + other - shift, x + along)  # below
    else:
        pos = (y - side + shift, x + along)  # above
    return int(np.clip(pos[0], 0, size - side)), int(np.clip(pos[1], 0, size - side))


def render_scene(images: np.ndarray, labels: np.ndarray, rng: np.random.Generator,
                 config: SceneConfig | None = None) -> Scene:
    """One scene from a pool of (N, 28, 28) uint8 items and their labels."""
    config = config or SceneConfig()
    size = config.size
    background = textured_background(size, rng, config.background)
    by_class = {int(c): np.flatnonzero(labels == c) for c in np.unique(labels)}
    full_masks: list[np.ndarray] = []
    layers: list[np.ndarray] = []
    boxes: list[tuple[int, int, int]] = []
    categories: list[int] = []
    sources: list[int] = []
    for _ in range(rng.integers(config.items[0], config.items[1] + 1)):
        neighbour = bool(boxes) and rng.random() < config.neighbour_prob
        anchor = int(rng.integers(len(boxes))) if neighbour else -1
        pool = by_class[categories[anchor]] if neighbour else np.arange(len(images))
        source = int(rng.choice(pool))
        for _ in range(config.tries):
            side = int(rng.integers(config.item_size[0], config.item_size[1] + 1))
            if neighbour:
                overlap = rng.uniform(*config.neighbour_overlap)
                y, x = _neighbour_position(boxes[anchor], side, size, overlap, rng)
            else:
                y, x = (int(v) for v in rng.integers(0, size - side + 1, 2))
            pixels, mask = _item_layer(images[source], side, rng.uniform(*config.brightness))
            layer = np.zeros((size, size), np.uint8)
            full = np.zeros((size, size), bool)
            layer[y:y + side, x:x + side] = pixels
            full[y:y + side, x:x + side] = mask
            if full.any() and _all_visible_enough([*full_masks, full], config.min_visible):
                full_masks.append(full)
                layers.append(layer)
                boxes.append((y, x, side))
                categories.append(int(labels[source]))
                sources.append(source)
                break
    image = background.copy()
    for layer, full in zip(layers, full_masks):
        image[full] = layer[full]
    amodal = np.array(full_masks, bool).reshape(-1, size, size)
    return Scene(image, _visible_masks(amodal), np.array(categories, np.int64),
                 np.array(sources, np.int64), np.array(boxes, np.int64).reshape(-1, 3), amodal,
                 np.array(layers, np.uint8).reshape(-1, size, size), background)


def _visible_masks(full: np.ndarray) -> np.ndarray:
    """Each mask minus every mask pasted after it."""
    visible = full.copy()
    covered = np.zeros(full.shape[1:], bool)
    for k in range(len(full) - 1, -1, -1):
        visible[k] &= ~covered
        covered |= full[k]
    return visible


def _all_visible_enough(full: list[np.ndarray], fraction: float) -> bool:
    visible = _visible_masks(np.array(full))
    return all(v.sum() >= fraction * f.sum() for v, f in zip(visible, full))


def make_scenes(n: int, split: str = "train", seed: int = 0, config: SceneConfig | None = None,
                root: str | Path | None = None) -> list[Scene]:
    """``n`` scenes from the Fashion-MNIST ``split`` items (train scenes never see test items)."""
    config = config or SceneConfig()
    items = load_fashion_mnist(split, root)
    images, labels = items.images[..., 0], np.asarray(items.labels)
    rng = np.random.default_rng([seed, 0 if split == "train" else 1])
    return [render_scene(images, labels, rng, config) for _ in range(n)]


def write_coco(scenes: list[Scene], directory: str | Path,
               config: SceneConfig | None = None) -> Path:
    """``directory/images/NNNNNN.png`` plus ``directory/annotations.json`` (COCO, one
    class-agnostic category "object"; RLE masks; each instance's Fashion-MNIST class kept as
    ``fashion_class``). Returns the annotation file."""
    from pycocotools import mask as mask_utils

    directory = Path(directory)
    (directory / "images").mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for image_id, scene in enumerate(scenes, start=1):
        name = f"images/{image_id:06d}.png"
        Image.fromarray(scene.image).save(directory / name)
        h, w = scene.image.shape
        images.append({"id": image_id, "file_name": name, "height": h, "width": w})
        for mask, category in zip(scene.masks, scene.categories):
            rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
            rle["counts"] = rle["counts"].decode("ascii")
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": 1,
                "segmentation": rle, "area": float(mask.sum()),
                "bbox": [float(v) for v in mask_utils.toBbox(rle)], "iscrowd": 0,
                "fashion_class": int(category),
            })
    coco = {"info": {"description": "selfsight Fashion-MNIST scenes",
                     "config": asdict(config) if config else None},
            "images": images, "annotations": annotations,
            "categories": [{"id": 1, "name": "object"}]}
    path = directory / "annotations.json"
    path.write_text(json.dumps(coco))
    return path


def read_coco(directory: str | Path) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """Images (N, H, W) uint8, per-image instance masks (K, H, W) bool and Fashion-MNIST
    classes (K,), in image-id order, from a folder written by :func:`write_coco`."""
    from pycocotools import mask as mask_utils

    directory = Path(directory)
    path = directory / "annotations.json"
    if not path.is_file():
        raise MissingInput(f"{path} not found: write scenes with selfsight.data.scenes")
    coco = json.loads(path.read_text())
    entries = sorted(coco["images"], key=lambda e: e["id"])
    per_image: dict[int, list[dict]] = {e["id"]: [] for e in entries}
    for ann in coco["annotations"]:
        per_image[ann["image_id"]].append(ann)
    images, masks, classes = [], [], []
    for entry in entries:
        images.append(np.asarray(Image.open(directory / entry["file_name"]).convert("L")))
        anns = per_image[entry["id"]]
        shape = (len(anns), entry["height"], entry["width"])
        masks.append(np.array([mask_utils.decode(a["segmentation"]) for a in anns],
                              bool).reshape(shape))
        classes.append(np.array([a.get("fashion_class", -1) for a in anns], np.int64))
    return np.stack(images), masks, classes
