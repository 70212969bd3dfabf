"""An inspection-like anomaly set from real photographs, with exact defect masks.

Large "part" images are cut from the two photographs that ship with scikit-learn
(``sklearn.datasets.load_sample_images``: china.jpg and flower.jpg, 427x640): each is scaled up
to cover the part's size, flipped at random, turned by a few degrees, brightened or darkened a
little and cropped (all seeded). Some test parts carry one small local defect:

- ``scratch``: a thin (1-3 px), gently curved line, darker or brighter than the part;
- ``spot``: a dark blemish, a disc of 10-14 px with a soft edge;
- ``crack``: a thin dark line that wanders and branches;
- ``missing``: an irregular patch replaced by a flat background colour;
- ``stain``: a translucent tinted blob.

Each defect covers 0.02-1% of the image (``AREA``). As in :mod:`selfsight.data.defects`, a
defect pixel is one whose value moved by at least ``min_change`` levels in some channel; pixels
a defect would move less are left as they were, so the mask is exactly the set of changed
pixels. The folder follows MVTec AD's layout (Bergmann et al., 2021), which anomalib reads::

    root/train/good/000.png  root/test/good/000.png  root/test/<kind>/000.png
    root/ground_truth/<kind>/000_mask.png   (255 = defect pixel)   root/manifest.json
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from selfsight.data.defects import _grid
from selfsight.errors import UserError

INSPECTION_KINDS = ("scratch", "spot", "crack", "missing", "stain")
AREA = (0.0002, 0.01)  # defect area as a fraction of the image, inclusive
_SPLITS = {"train": 0, "test_good": 1, "test_defect": 2, "defect": 3}  # seed streams


def sample_photos() -> list[np.ndarray]:
    """scikit-learn's sample photographs, (427, 640, 3) uint8 each (china, flower)."""
    from sklearn.datasets import load_sample_images

    return [np.asarray(image, dtype=np.uint8) for image in load_sample_images().images]


# ---------------------------------------------------------------------------------------------
# Parts: crops of the photographs


def make_part(photo: np.ndarray, size: tuple[int, int], rng: np.random.Generator,
              max_angle: float = 4.0, brightness: float = 0.1) -> np.ndarray:
    """One (H, W, 3) uint8 part of ``size`` = (height, width) cut from ``photo``: scaled to
    cover it with 5-30% to spare, maybe flipped, turned by up to ``max_angle`` degrees,
    brightness times 1 +- ``brightness``; the crop never reaches the turned photo's corners."""
    height, width = size
    ph, pw = photo.shape[:2]
    scale = max(height / ph, width / pw) * rng.uniform(1.05, 1.3)
    sh, sw = max(height, round(ph * scale)), max(width, round(pw * scale))
    image = Image.fromarray(photo).resize((sw, sh), Image.Resampling.BICUBIC)
    if rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    angle = float(rng.uniform(-max_angle, max_angle))
    turned = image.rotate(angle, resample=Image.Resampling.BILINEAR)
    valid = np.asarray(Image.new("L", (sw, sh), 255).rotate(angle)) == 255  # inside the photo
    for _ in range(100):
        top, left = int(rng.integers(0, sh - height + 1)), int(rng.integers(0, sw - width + 1))
        if valid[top:top + height, left:left + width].all():
            break
    else:  # a large turn on a tight fit: no turn
        turned, top, left = image, (sh - height) // 2, (sw - width) // 2
    crop = np.asarray(turned, dtype=np.float64)[top:top + height, left:left + width]
    crop = crop * rng.uniform(1 - brightness, 1 + brightness)
    return np.clip(np.rint(crop), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# Defects: each maker returns (region (H, W) bool, new values (H, W, 3) float) for one image


def _centre(h: int, w: int, rng: np.random.Generator, margin: float = 0.08) -> np.ndarray:
    """A point (y, x) at least ``margin`` of each side away from the edges."""
    return np.array([rng.uniform(margin * h, (1 - margin) * h),
                     rng.uniform(margin * w, (1 - margin) * w)])


def _target_area(h: int, w: int, rng: np.random.Generator, low: float, high: float) -> float:
    return float(rng.uniform(low, high) * h * w)


def _stroke(h: int, w: int, paths: list[np.ndarray], width: float) -> np.ndarray:
    """Pixels within ``width / 2`` of any of the polylines in ``paths`` ((K, 2) points y, x)."""
    region = np.zeros((h, w), dtype=bool)
    pad = width / 2 + 1
    for path in paths:
        y0, x0 = np.floor(path.min(axis=0) - pad).astype(int).clip(0)
        y1, x1 = np.ceil(path.max(axis=0) + pad).astype(int) + 1
        y1, x1 = min(y1, h), min(x1, w)
        if y0 >= y1 or x0 >= x1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float64)
        best = np.full(yy.shape, np.inf)
        for a, b in itertools.pairwise(path):
            d = b - a
            t = np.clip(((yy - a[0]) * d[0] + (xx - a[1]) * d[1]) / max(d @ d, 1e-12), 0, 1)
            best = np.minimum(best, np.hypot(yy - a[0] - t * d[0], xx - a[1] - t * d[1]))
        region[y0:y1, x0:x1] |= best <= width / 2
    return region


def _darker_or_brighter(image: np.ndarray, region: np.ndarray, rng: np.random.Generator,
                        strength: float) -> np.ndarray:
    """Darker where the region is bright on average, else brighter (or, by chance, darker)."""
    bright = image[region].mean() > 110 if region.any() else True
    if bright or rng.random() < 0.5:
        return image * (1 - strength)
    return 255 - (255 - image) * (1 - strength)


def _scratch(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    h, w = image.shape[:2]
    width = rng.uniform(1.0, 3.0)
    length = _target_area(h, w, rng, 0.0004, 0.004) / width
    length = min(length, 0.7 * min(h, w))
    start, angle = _centre(h, w, rng, 0.15), rng.uniform(0, np.pi)
    direction = np.array([np.sin(angle), np.cos(angle)])
    normal = np.array([-direction[1], direction[0]])
    t = np.linspace(-0.5, 0.5, 24)[:, None]
    bend = rng.uniform(-0.08, 0.08) * length * (1 - 4 * t ** 2)  # a gentle arc
    path = start + t * length * direction + bend * normal
    region = _stroke(h, w, [path], width)
    return region, _darker_or_brighter(image, region, rng, 0.6)


def _spot(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A dark disc of 10-14 px (at least as large as the smallest allowed area), soft edge."""
    h, w = image.shape[:2]
    diameter = max(rng.uniform(10.0, 14.0), 2 * np.sqrt(AREA[0] * h * w / np.pi) + 1)
    cy, cx = _centre(h, w, rng)
    yy, xx = _grid(h, w)
    distance = np.hypot(yy - cy, xx - cx)
    alpha = np.clip((diameter / 2 + 1.5 - distance) / 3.0, 0, 1)[..., None]  # 3-px soft edge
    colour = np.array([35.0, 28.0, 20.0]) * rng.uniform(0.6, 1.4)
    strength = rng.uniform(0.75, 0.95)
    return alpha[..., 0] > 0, image * (1 - strength * alpha) + colour * strength * alpha


def _crack(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A wandering dark line, 1-2 px wide, with 1-3 branches off it."""
    h, w = image.shape[:2]
    width = rng.uniform(1.0, 2.0)
    total = min(_target_area(h, w, rng, 0.0006, 0.004) / width, 1.2 * min(h, w))
    main_length = total * rng.uniform(0.55, 0.75)

    def walk(start: np.ndarray, heading: float, length: float) -> np.ndarray:
        steps = max(3, int(length / 6))
        turns = heading + np.cumsum(rng.normal(0, 0.35, steps))
        moves = (length / steps) * np.stack([np.sin(turns), np.cos(turns)], axis=1)
        return np.vstack([start, start + np.cumsum(moves, axis=0)])

    heading = rng.uniform(0, 2 * np.pi)
    trunk = walk(_centre(h, w, rng, 0.2), heading, main_length)
    paths = [trunk]
    branches = int(rng.integers(1, 4))
    for _ in range(branches):
        at = trunk[int(rng.integers(1, len(trunk) - 1))]
        side = heading + rng.choice([-1, 1]) * rng.uniform(0.4, 1.1)
        paths.append(walk(at, side, (total - main_length) / branches))
    region = _stroke(h, w, paths, width)
    return region, image * rng.uniform(0.15, 0.4)


def _blob(h: int, w: int, rng: np.random.Generator, area: float) -> np.ndarray:
    """An irregular filled polygon of about ``area`` px around a random point."""
    radius = np.sqrt(area / np.pi)
    cy, cx = _centre(h, w, rng, 0.1)
    angles = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(7, 13))))
    radii = radius * rng.uniform(0.7, 1.3, len(angles))
    points = [(cx + r * np.cos(a), cy + r * np.sin(a)) for a, r in zip(angles, radii)]
    canvas = Image.new("L", (w, h), 0)
    ImageDraw.Draw(canvas).polygon(points, fill=255)
    return np.asarray(canvas) > 0


def _missing(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A patch gone: a flat background colour (dark or light, whichever differs more)."""
    h, w = image.shape[:2]
    region = _blob(h, w, rng, _target_area(h, w, rng, 0.001, 0.006))
    mean = image[region].mean() if region.any() else 128.0
    level = rng.uniform(15, 45) if mean > 110 else rng.uniform(200, 235)
    return region, np.full_like(image, level)


def _stain(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A translucent tinted blob (rust, oil, ink, ...) with a soft edge."""
    h, w = image.shape[:2]
    region = _blob(h, w, rng, _target_area(h, w, rng, 0.001, 0.006))
    blurred = Image.fromarray((region * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(2))
    soft = np.asarray(blurred, dtype=np.float64)[..., None] / 255  # (H, W, 1)
    tints = np.array([[170, 90, 20], [40, 60, 160], [60, 140, 40], [150, 30, 110]], float)
    tint = tints[int(rng.integers(len(tints)))]
    alpha = rng.uniform(0.45, 0.65) * soft
    return soft[..., 0] > 0, image * (1 - alpha) + tint * alpha


MAKERS = {"scratch": _scratch, "spot": _spot, "crack": _crack, "missing": _missing,
          "stain": _stain}


def add_inspection_defect(image: np.ndarray, kind: str, rng: np.random.Generator,
                          min_change: int = 12, tries: int = 50,
                          ) -> tuple[np.ndarray, np.ndarray]:
    """One defect of ``kind`` on an (H, W, 3) uint8 image -> (defective image, mask (H, W)
    bool). The mask is exactly the pixels that changed, at least ``min_change`` levels in some
    channel; a defect outside ``AREA`` of the image is redrawn (up to ``tries`` times)."""
    if kind not in MAKERS:
        raise UserError(f"unknown defect kind {kind!r}; valid: {list(MAKERS)}")
    h, w = image.shape[:2]
    low, high = AREA[0] * h * w, AREA[1] * h * w
    base = image.astype(np.float64)
    for _ in range(tries):
        region, value = MAKERS[kind](base, rng)
        new = np.clip(np.rint(value), 0, 255)
        mask = region & (np.abs(new - base).max(axis=-1) >= min_change)
        if low <= mask.sum() <= high:
            out = image.copy()
            out[mask] = new[mask].astype(np.uint8)
            return out, mask
    raise UserError(f"could not draw a {kind} defect covering {AREA[0]:.2%}-{AREA[1]:.0%} of a "
                    f"{h}x{w} image; use a larger size")


# ---------------------------------------------------------------------------------------------
# The folder


def _write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, compress_level=1)


def make_inspection_set(root: str | Path, n_train: int = 20, n_good_test: int = 6,
                        n_defect_test: int = 12, size: tuple[int, int] = (768, 768),
                        seed: int = 0, kinds: tuple[str, ...] = INSPECTION_KINDS,
                        photos: list[np.ndarray] | None = None) -> dict[str, Any]:
    """Write an MVTec-AD-style folder under ``root`` and return its manifest (also written to
    ``root/manifest.json``): parts of ``size`` = (height, width) cut from ``photos`` (default:
    scikit-learn's two sample photographs, taken in turn); ``n_defect_test`` test parts with
    one defect each, kinds in turn. Each image has its own seed stream (seed, split, index), so
    asking for fewer images gives the first ones of a larger set."""
    unknown = [k for k in kinds if k not in MAKERS]
    if unknown or not kinds:
        raise UserError(f"unknown defect kinds {unknown}; valid: {list(MAKERS)}")
    height, width = int(size[0]), int(size[1])
    photos = sample_photos() if photos is None else photos
    root = Path(root)

    def part(split: str, i: int) -> np.ndarray:
        rng = np.random.default_rng([seed, _SPLITS[split], i])
        return make_part(photos[i % len(photos)], (height, width), rng)

    manifest: dict[str, Any] = {"size": [height, width], "seed": seed, "kinds": list(kinds),
                                "area_range": list(AREA), "train": [], "test": []}
    for i in range(n_train):
        name = f"train/good/{i:03d}.png"
        _write_png(root / name, part("train", i))
        manifest["train"].append(name)
    for i in range(n_good_test):
        name = f"test/good/{i:03d}.png"
        _write_png(root / name, part("test_good", i))
        manifest["test"].append({"file": name, "kind": "good", "mask": None, "area": 0.0})
    counts = dict.fromkeys(kinds, 0)
    for i in range(n_defect_test):
        kind = kinds[i % len(kinds)]
        good = part("test_defect", i)
        bad, mask = add_inspection_defect(good, kind,
                                          np.random.default_rng([seed, _SPLITS["defect"], i]))
        name = f"test/{kind}/{counts[kind]:03d}.png"
        mask_name = f"ground_truth/{kind}/{counts[kind]:03d}_mask.png"
        counts[kind] += 1
        _write_png(root / name, bad)
        _write_png(root / mask_name, mask.astype(np.uint8) * 255)
        manifest["test"].append({"file": name, "kind": kind, "mask": mask_name,
                                 "area": round(float(mask.mean()), 6)})
    (root / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def defect_free_part(manifest: dict[str, Any], index: int,
                     photos: list[np.ndarray] | None = None) -> np.ndarray:
    """The part the ``index``-th defective test image was drawn on, before its defect."""
    photos = sample_photos() if photos is None else photos
    height, width = manifest["size"]
    rng = np.random.default_rng([manifest["seed"], _SPLITS["test_defect"], index])
    return make_part(photos[index % len(photos)], (height, width), rng)
