"""Patch features for anomaly detection: PatchCore-style locally aware features (Roth et al., 2022).

Intermediate levels of the backbone (CNN stage maps or ViT blocks as grids), each averaged over a
small neighbourhood, resized to the finest level's grid and stacked along channels; plus the
pooled, L2-normalised image feature of PROTOCOL.md.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from selfsight.backbones import Backbone
from selfsight.device import autocast
from selfsight.eval.extract import preprocess


def default_levels(backbone: Backbone) -> list[int]:
    """The two middle levels (PatchCore's layer2 + layer3 of a 4-stage ResNet): mid-level
    features are local enough to localise, and less tied to the pretraining task than the last."""
    n = len(backbone.level_dims())
    middle = n // 2
    return [middle, min(middle + 1, n - 1)] if n > 1 else [0]


def _input(batch: np.ndarray, backbone: Backbone, image_size: int,
           device: torch.device) -> torch.Tensor:
    """uint8 (B, H, W, C) -> normalised float (B, C, S, S) at ``image_size``."""
    x = torch.from_numpy(np.array(batch)).permute(0, 3, 1, 2).to(device)  # (B, C, H, W)
    return preprocess(x, backbone, image_size).contiguous(
        memory_format=torch.channels_last)  # (B, C, S, S)


NEIGHBOURHOOD_MIN_GRID = 14  # the auto rule's smallest grid side for PatchCore's 3x3 average


def stack_levels(levels: list[torch.Tensor], neighbourhood: int | None) -> torch.Tensor:
    """Average each (B, C_l, h_l, w_l) over ``neighbourhood`` x ``neighbourhood`` patches, resize to
    the largest grid and concatenate: -> (B, sum C_l, h, w).

    ``neighbourhood=None`` uses PatchCore's 3 on levels with at least 14 patches a side and 1
    (no averaging) on coarser ones, where 3x3 patches would cover a fifth of the image: at 28 px
    (7x7 grid) averaging cut the pixel AUROC of local defects from 0.86 to 0.77 here.
    """
    size = max((t.shape[-2], t.shape[-1]) for t in levels)
    out = []
    for t in levels:
        t = t.float()
        p = neighbourhood
        if p is None:
            p = 3 if min(t.shape[-2:]) >= NEIGHBOURHOOD_MIN_GRID else 1
        if p > 1:
            t = F.avg_pool2d(t, p, stride=1, padding=p // 2,
                             count_include_pad=False)  # (B, C_l, h_l, w_l)
        if t.shape[-2:] != size:
            t = F.interpolate(t, size=size, mode="bilinear", align_corners=False)  # (B, C_l, h, w)
        out.append(t)
    return torch.cat(out, dim=1)  # (B, C, h, w)


@torch.no_grad()
def iter_features(backbone: Backbone, images: np.ndarray, levels: list[int], image_size: int,
                  neighbourhood: int | None = None, batch_size: int = 256,
                  device: torch.device | None = None,
                  ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (pooled (B, D) L2-normalised, patches (B, h, w, C)) float32 tensors on ``device``."""
    device = device or next(backbone.parameters()).device
    backbone.eval().to(device)
    for start in range(0, len(images), batch_size):
        x = _input(images[start:start + batch_size], backbone, image_size, device)
        with autocast(device):
            out = backbone.features(x, levels=levels)
        pooled = F.normalize(out["pooled"].float(), dim=1)  # (B, D)
        patches = stack_levels(out["levels"], neighbourhood)  # (B, C, h, w)
        yield pooled, patches.permute(0, 2, 3, 1).contiguous()  # (B, D), (B, h, w, C)
