"""Anomaly-detection metrics: image and pixel AUROC (scikit-learn) and the per-region overlap
(PRO) of the MVTec AD paper (Bergmann et al., 2021), integrated up to a false-positive rate."""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from sklearn.metrics import roc_auc_score


def image_auroc(anomalous: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve of image scores (N,) against image labels (N,) (1 = anomalous)."""
    return float(roc_auc_score(np.asarray(anomalous).astype(bool), np.asarray(scores)))


def pixel_auroc(masks: np.ndarray, maps: np.ndarray) -> float:
    """AUROC over every pixel of (N, H, W) maps against (N, H, W) ground-truth masks."""
    return float(roc_auc_score(np.asarray(masks).astype(bool).ravel(), np.asarray(maps).ravel()))


def pro_curve(masks: np.ndarray, maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, PRO) at every threshold of ``maps``, from high thresholds to low.

    A region is a connected component (8-connected) of a ground-truth mask. At a threshold t,
    a region's overlap is the fraction of its pixels with map >= t, PRO is the mean overlap over
    all regions of all images, and FPR is the fraction of normal pixels (mask 0, in every image)
    with map >= t. Lowering t past one pixel's value adds 1/(regions * region size) to PRO if
    the pixel belongs to a region and 1/(normal pixels) to FPR if not, so sorting all pixels by
    value and summing these steps gives the whole curve exactly.
    """
    masks = np.asarray(masks).astype(bool)
    maps = np.asarray(maps, dtype=np.float64)
    if masks.shape != maps.shape:
        raise ValueError(f"masks {masks.shape} and maps {maps.shape} differ in shape")
    regions = np.zeros(masks.shape, dtype=np.int64)
    count = 0
    for i, mask in enumerate(masks):
        labelled, n = ndimage.label(mask, structure=np.ones((3, 3)))
        regions[i] = np.where(labelled > 0, labelled + count, 0)
        count += n
    normal = int((~masks).sum())
    if count == 0 or normal == 0:
        raise ValueError("PRO needs at least one anomalous region and one normal pixel")
    sizes = np.bincount(regions.ravel(), minlength=count + 1)  # sizes[0]: normal pixels
    flat_regions, values = regions.ravel(), maps.ravel()
    pro_step = np.where(flat_regions > 0, 1.0 / (count * sizes[flat_regions]), 0.0)
    fpr_step = np.where(flat_regions == 0, 1.0 / normal, 0.0)
    order = np.argsort(-values, kind="stable")
    fpr, pro = np.cumsum(fpr_step[order]), np.cumsum(pro_step[order])
    # Tied values pass the threshold together: keep the last point of each run of equal values.
    sorted_values = values[order]
    last = np.r_[sorted_values[1:] != sorted_values[:-1], True]
    return np.r_[0.0, fpr[last]], np.r_[0.0, pro[last]]


def pro_auc(masks: np.ndarray, maps: np.ndarray, max_fpr: float = 0.3) -> float:
    """Area under the PRO curve for FPR in [0, ``max_fpr``], divided by ``max_fpr`` (so 1 is
    perfect), with the curve linearly interpolated at ``max_fpr``."""
    fpr, pro = pro_curve(masks, maps)
    i = int(np.searchsorted(fpr, max_fpr, side="right")) - 1  # last point with fpr <= max_fpr
    end = pro[i]
    if i + 1 < len(fpr):  # interpolate towards the first point past max_fpr
        end += (pro[i + 1] - pro[i]) * (max_fpr - fpr[i]) / (fpr[i + 1] - fpr[i])
    x, y = np.r_[fpr[:i + 1], max_fpr], np.r_[pro[:i + 1], end]
    return float(np.trapezoid(y, x) / max_fpr)
