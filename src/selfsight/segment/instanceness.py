"""Instance-ness of patch features: does feature similarity tell one object from its twin?

On scenes with ground-truth instances, every pair of patches in one image whose patches lie
inside objects (or in the background) is scored by cosine similarity. Two AUROCs:

- ``same_category``: pairs within one instance against pairs from two different instances *of
  the same category*, the case where category features do not help (two sneakers side by side);
- ``background``: pairs within one instance against instance-background pairs.

A patch belongs to an instance when at least ``purity`` of its pixels do, to the background when
at most ``1 - purity`` of its pixels belong to any instance; mixed patches are left out.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

BACKGROUND = -1
MIXED = -2


def patch_labels(masks: np.ndarray, grid: tuple[int, int], purity: float = 0.75) -> np.ndarray:
    """(K, H, W) bool instance masks -> (h, w) int: instance index, BACKGROUND or MIXED."""
    h, w = grid
    if len(masks) == 0:
        return np.full(grid, BACKGROUND)
    cover = F.adaptive_avg_pool2d(torch.from_numpy(masks).float()[None], (h, w))[0].numpy()
    labels = np.full(grid, MIXED)
    best = cover.argmax(0)
    labels[cover.max(0) >= purity] = best[cover.max(0) >= purity]
    labels[cover.sum(0) <= 1 - purity] = BACKGROUND
    return labels


def _pair_scores(features: torch.Tensor, labels: np.ndarray, categories: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cosine similarities of (same instance, other instance of the same category,
    instance-background) patch pairs of one image."""
    flat = labels.reshape(-1)
    f = F.normalize(features.flatten(1).T.float(), dim=1)  # (h*w, D)
    sim = (f @ f.T).numpy()
    upper = np.triu(np.ones_like(sim, dtype=bool), k=1)
    inst = flat >= 0
    cat = np.where(inst, categories[np.maximum(flat, 0)] if len(categories) else -1, -1)
    same = inst[:, None] & (flat[:, None] == flat[None, :]) & upper
    twin = (inst[:, None] & inst[None, :] & (flat[:, None] != flat[None, :])
            & (cat[:, None] == cat[None, :]) & upper)
    background = inst[:, None] & (flat == BACKGROUND)[None, :]
    return sim[same], sim[twin], sim[background]


def instanceness(features: torch.Tensor, masks: list[np.ndarray], categories: list[np.ndarray],
                 purity: float = 0.75) -> dict[str, float]:
    """Pooled AUROCs over all images. ``features`` (N, D, h, w); ``masks[i]`` (K_i, H, W) bool;
    ``categories[i]`` (K_i,) the class of each instance. Also returns the pair counts."""
    per_image = [_pair_scores(feats, patch_labels(m, tuple(feats.shape[-2:]), purity),
                              np.asarray(c)) for feats, m, c in zip(features, masks, categories)]
    same_all, twin_all, back_all = (np.concatenate(x) for x in zip(*per_image))

    def auroc(positive: np.ndarray, negative: np.ndarray) -> float:
        if not len(positive) or not len(negative):
            return float("nan")
        y = np.r_[np.ones(len(positive)), np.zeros(len(negative))]
        return float(roc_auc_score(y, np.r_[positive, negative]))

    return {"same_category": auroc(same_all, twin_all),
            "background": auroc(same_all, back_all),
            "pairs_same_instance": len(same_all), "pairs_same_category": len(twin_all),
            "pairs_background": len(back_all)}
