"""Intersection over union of instance masks: MaskCut's repeat filter and the segmenter's
self-training merge both ask how much masks overlap, and answer it here."""

from __future__ import annotations

import numpy as np


def mask_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(Ka, H, W) x (Kb, H, W) bool -> (Ka, Kb) IoU; 0 where both masks are empty.

    One pair is ``mask_iou(a[None], b[None])[0, 0]``. Counted in float64, so every pixel count
    is exact and the ratio is the same as dividing the integer counts.
    """
    fa = a.reshape(len(a), -1).astype(np.float64)
    fb = b.reshape(len(b), -1).astype(np.float64)
    inter = fa @ fb.T
    union = fa.sum(1)[:, None] + fb.sum(1)[None, :] - inter
    return inter / np.maximum(union, 1.0)
