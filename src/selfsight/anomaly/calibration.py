"""What the held-out normal images say: score scales, and a decision threshold only when
enough of them back it (an empirical 0.99 quantile of two scores is just their maximum)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Calibration:
    """Statistics of the held-out normal images: score scales and the decision thresholds."""

    patch_mean: float = 0.0
    patch_std: float = 1.0
    pooled_mean: float = 0.0
    pooled_std: float = 1.0
    threshold: float | None = None  # on the configured image score; None: too few held out
    pixel_threshold: float | None = None  # on anomaly-map values; None likewise
    val_images: int = 0
    more_images: int = 0  # normal images to add before a threshold is proposed (0: enough)
    info: dict[str, Any] = field(default_factory=dict)


MIN_THRESHOLD_IMAGES = 10


def threshold_needs(quantile: float) -> int:
    """Held-out normal images a ``quantile`` threshold needs: max(10, ceil(1 / (1 - q))).

    Below 1 / (1 - q) images the empirical q-quantile is (close to) the largest held-out score,
    whose false-positive rate is about 1 / (n + 1), not 1 - q: the 0.99 quantile of 2 images is
    the larger of 2 draws and flags a third of normal images. 10 is the floor for any q, so a
    single unlucky image cannot set the threshold."""
    if quantile >= 1:
        return MIN_THRESHOLD_IMAGES
    return max(MIN_THRESHOLD_IMAGES, math.ceil(round(1 / (1 - quantile), 6)))


def held_out_count(n: int, val_fraction: float) -> int:
    """Normal images held out of the bank when fitting on ``n``."""
    return min(n - 1, max(1, round(val_fraction * n)))


def more_normal_images(n: int, quantile: float, val_fraction: float) -> int:
    """Normal images to add to ``n`` before enough are held out for a ``quantile`` threshold."""
    need, extra = threshold_needs(quantile), 0
    while held_out_count(n + extra, val_fraction) < need:
        extra += 1
    return extra


def threshold_rule(quantile: float, val_fraction: float, cal: Calibration) -> str:
    """The threshold's provenance, or why there is none and what would give one."""
    q = quantile
    if cal.threshold is not None:
        return f"{q} quantile of {cal.val_images} held-out normal images' scores"
    need = threshold_needs(q)
    return (f"no threshold: {cal.more_images} more normal images needed (the {q} quantile needs "
            f">= {need} held-out normal images, {cal.val_images} held out at val_fraction "
            f"{val_fraction}; --set quantile=0.9 needs {threshold_needs(0.9)})")


def combined_score(patch: np.ndarray, pooled: np.ndarray, cal: Calibration) -> np.ndarray:
    """Patch and pooled scores, each standardised on the held-out normal images, summed."""
    return (patch - cal.patch_mean) / cal.patch_std + (pooled - cal.pooled_mean) / cal.pooled_std
