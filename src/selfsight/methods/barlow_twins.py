"""Barlow Twins (Zbontar et al., 2021): make the cross-correlation of two views' embeddings the
identity (invariance on the diagonal, redundancy reduction off it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from selfsight.losses import barlow_twins
from selfsight.methods.base import Method, MethodConfig
from selfsight.methods.registry import register_method
from selfsight.nn.heads import mlp


@dataclass
class BarlowTwinsConfig(MethodConfig):
    lr: float = 0.2  # LARS, per 256 images (paper: 0.2 for weights)
    weight_decay: float = 1.5e-6
    lambd: float = 0.0051  # off-diagonal weight
    proj_hidden_dim: int = 8192
    proj_dim: int = 8192


@register_method
class BarlowTwins(Method):
    name = "barlowtwins"
    description = "Barlow Twins (Zbontar et al., 2021): cross-correlation of two views -> identity"
    Config = BarlowTwinsConfig

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cfg = self.config
        self.projector = mlp(self.backbone.dim, cfg.proj_hidden_dim, cfg.proj_dim, 3)

    def compute_loss(self, views: list[torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        z1, z2 = (self.projector(self.backbone(v)) for v in views[:2])
        return barlow_twins(z1, z2, self.config.lambd), {}
