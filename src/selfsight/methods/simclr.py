"""SimCLR (Chen et al., 2020): in-batch contrastive learning with NT-Xent over 2N views."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from selfsight.errors import UserError
from selfsight.losses import nt_xent
from selfsight.methods.base import Method, MethodConfig
from selfsight.methods.registry import register_method
from selfsight.nn.heads import mlp
from selfsight.views.ops import four_rotations, random_rotations


@dataclass
class SimCLRConfig(MethodConfig):
    temperature: float = 0.2  # 0.5 in the paper at batch 256-512; 0.1-0.2 learns faster here
    lr: float = 1.0  # LARS, per 256 images: measured better than 0.3 at a 10-minute CPU budget
    proj_hidden_dim: int = 2048
    proj_dim: int = 128
    proj_layers: int = 2
    decoupled: bool = False  # DCL (Yeh et al., 2022): no positive in the denominator
    # CSI (Tack et al., 2020): each 90-degree rotation of an image is a new instance, so rotated
    # copies become negatives ("distribution-shifting" views) for one-class / anomaly use.
    shifted_rotations: bool = False
    # CSI's second loss: a linear head classifies each view's 90-degree rotation, weighted by
    # this (0: off). Without shifted_rotations each image is turned by a random k (both views
    # alike), so the features keep orientation, which one-class detection needs.
    rotation_weight: float = 0.0

    def __post_init__(self) -> None:  # checked when options are parsed, before any data loads
        super().__post_init__()
        if self.rotation_weight < 0:
            raise UserError(f"simclr: rotation_weight must be >= 0, got {self.rotation_weight}")


@register_method
class SimCLR(Method):
    name = "simclr"
    description = "SimCLR (Chen et al., 2020): two views, NT-Xent over the 2N-view batch"
    Config = SimCLRConfig

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cfg = self.config
        self.projector = mlp(self.backbone.dim, cfg.proj_hidden_dim, cfg.proj_dim, cfg.proj_layers)
        self.rotation_head = nn.Linear(self.backbone.dim, 4) if cfg.rotation_weight > 0 else None

    def compute_loss(self, views: list[torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        cfg, pair, turns = self.config, views[:2], None
        if cfg.shifted_rotations:  # (n, C, H, W) -> (4n, C, H, W): 0, 90, 180, 270
            first, turns = four_rotations(pair[0])
            pair = [first, four_rotations(pair[1])[0]]
        elif self.rotation_head is not None:
            pair, turns = random_rotations(pair, self.step_generator(stream=1))
        h1, h2 = (self.backbone(v) for v in pair)  # (n, D) each
        per_image = nt_xent(self.projector(h1), self.projector(h2), cfg.temperature,
                            per_image=True, decoupled=cfg.decoupled)
        self.sample_losses = per_image[:len(views[0])].detach()  # the unrotated images
        loss, logs = per_image.mean(), {}
        if self.rotation_head is not None:
            logits = self.rotation_head(torch.cat([h1, h2])).float()  # (2n, 4)
            rotation_loss = F.cross_entropy(logits, turns.repeat(2))
            loss = loss + cfg.rotation_weight * rotation_loss
            logs = {"rotation_loss": float(rotation_loss.detach())}
        return loss, logs
