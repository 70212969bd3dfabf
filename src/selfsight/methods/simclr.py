"""SimCLR (Chen et al., 2020): in-batch contrastive learning with NT-Xent over 2N views."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from selfsight.losses import nt_xent
from selfsight.methods.base import Method, MethodConfig
from selfsight.methods.registry import register_method
from selfsight.nn.heads import mlp
from selfsight.views.ops import four_rotations


@dataclass
class SimCLRConfig(MethodConfig):
    temperature: float = 0.2  # 0.5 in the paper at batch 256-512; 0.1-0.2 learns faster here
    lr: float = 1.0  # LARS, per 256 images: measured better than 0.3 at a 10-minute CPU budget
    proj_hidden_dim: int = 2048
    proj_dim: int = 128
    proj_layers: int = 2
    # CSI (Tack et al., 2020): each 90-degree rotation of an image is a new instance, so rotated
    # copies become negatives ("distribution-shifting" views) for one-class / anomaly use.
    shifted_rotations: bool = False


@register_method
class SimCLR(Method):
    name = "simclr"
    description = "SimCLR (Chen et al., 2020): two views, NT-Xent over the 2N-view batch"
    Config = SimCLRConfig

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cfg = self.config
        self.projector = mlp(self.backbone.dim, cfg.proj_hidden_dim, cfg.proj_dim, cfg.proj_layers)

    def compute_loss(self, views: list[torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        pair = views[:2]
        if self.config.shifted_rotations:  # (n, C, H, W) -> (4n, C, H, W): 0, 90, 180, 270
            pair = [four_rotations(v)[0] for v in pair]
        z1, z2 = (self.projector(self.backbone(v)) for v in pair)  # (n, proj_dim) each
        per_image = nt_xent(z1, z2, self.config.temperature, per_image=True)
        self.sample_losses = per_image[:len(views[0])].detach()  # the unrotated images
        return per_image.mean(), {}
