"""Frozen features for evaluation: pooled backbone output, L2-normalised (PROTOCOL.md)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from selfsight.backbones import Backbone
from selfsight.device import autocast, current_precision
from selfsight.errors import UserError
from selfsight.signals.names import is_signal_backbone


def preprocess(images: torch.Tensor, backbone: Backbone, size: int | None = None) -> torch.Tensor:
    """uint8 (B, C, H, W) -> the float input the backbone was trained on: resized to ``size``
    (default: its image size) and normalised with its statistics. No augmentation.

    A signal backbone takes raw float signals (B, C, 1, L) as they are: it standardises them
    itself with the statistics it saved (:mod:`selfsight.signals.backbones`)."""
    cfg = backbone.config
    if is_signal_backbone(cfg.name):
        return images.float()
    size = size or cfg.image_size
    x = images.float().div_(255)
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True,
                          align_corners=False)
    mean = x.new_tensor(cfg.mean).view(1, -1, 1, 1)
    std = x.new_tensor(cfg.std).view(1, -1, 1, 1)
    return (x - mean) / std


@torch.no_grad()
def extract_features(
    backbone: Backbone,
    images: np.ndarray,
    batch_size: int = 512,
    device: str | torch.device | None = None,
    normalize: bool = True,
    progress: bool = True,
) -> torch.Tensor:
    """(N, H, W, C) uint8 (or, for a signal backbone, the float signals of
    ``SignalSet.images``, (N, 1, L, C)) -> (N, D) float32 features on the CPU. A NaN or inf is a
    UserError: every score computed from them (kNN, probes, clusters, an embedding file) would
    be meaningless without a word."""
    device = torch.device(device or next(backbone.parameters()).device)
    was_training = backbone.training
    backbone.eval().to(device)
    chunks = []
    starts = range(0, len(images), batch_size)
    try:
        for start in tqdm(starts, desc="features", disable=not progress, unit="batch"):
            batch = torch.from_numpy(np.array(images[start:start + batch_size]))  # writable copy
            x = preprocess(batch.permute(0, 3, 1, 2).to(device), backbone)
            x = x.contiguous(memory_format=torch.channels_last)
            with autocast(device):
                feats = backbone(x).float()  # (B, D)
            if not torch.isfinite(feats).all():
                raise non_finite_features(backbone, device, start, start + len(batch) - 1)
            chunks.append(F.normalize(feats, dim=1) if normalize else feats)
    finally:
        backbone.train(was_training)
    return torch.cat(chunks).cpu()


def non_finite_features(backbone: Backbone, device: torch.device, first: int,
                        last: int) -> UserError:
    precision = current_precision(device).name
    # Below 32 bits, activations overflow sooner; in 32 bits it takes huge weights (a diverged
    # run; NaN weights are refused when a backbone is loaded).
    advice = "; try --precision 32-true" if precision != "32-true" else ""
    rows = "series" if is_signal_backbone(backbone.config.name) else "images"
    return UserError(f"the {backbone.config.name} backbone gives non-finite features (NaN/inf) "
                     f"for {rows} {first} to {last} at {precision} precision: its activations "
                     f"overflow{advice}")
