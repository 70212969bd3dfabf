"""MaskCut pseudo-masks for a batch of images from a selfsight backbone (Wang et al., 2023).

Patch features -> normalised cuts on the patch grid (``ncut.maskcut``) -> masks upsampled to the
image and snapped to its edges (``refine.upsample_masks``). A mask's score is its rank: MaskCut's
first cut is the most salient object, so earlier masks score higher (1, 1/2, 1/3, ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from selfsight.backbones import Backbone
from selfsight.segment.ncut import MaskCutConfig, maskcut
from selfsight.segment.patch_features import extract_patch_features
from selfsight.segment.refine import upsample_masks


@dataclass
class PseudoMaskConfig:
    size: int | None = None  # side the images are resized to for features (None: backbone's)
    kind: str = "auto"  # patch features: auto (ViT keys, else tokens/map), keys, tokens
    maskcut: MaskCutConfig = field(default_factory=MaskCutConfig)
    refine: bool = True
    radius: int = 4  # guided-filter radius, px of the image
    eps: float = 1e-2


def pseudo_masks(backbone: Backbone, images: np.ndarray, config: PseudoMaskConfig | None = None,
                 batch_size: int = 64, device: str | torch.device | None = None,
                 progress: bool = True) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """uint8 (N, H, W[, C]) images -> per image (K, H, W) bool disjoint masks and (K,) scores."""
    config = config or PseudoMaskConfig()
    masks, scores = [], []
    for start in tqdm(range(0, len(images), batch_size), desc="maskcut", unit="batch",
                      disable=not progress):
        batch = images[start:start + batch_size]
        features = extract_patch_features(backbone, batch, config.size, config.kind,
                                          batch_size, device, progress=False)
        for image, patch_masks in zip(batch, maskcut(features, config.maskcut)):
            pixel = upsample_masks(patch_masks, image.shape[:2], image, config.refine,
                                   config.radius, config.eps)
            keep = pixel.any(axis=(1, 2))  # refinement may empty a sliver
            masks.append(pixel[keep])
            scores.append(1.0 / np.arange(1, len(pixel) + 1)[keep])
    return masks, scores
