"""VICReg (Bardes, Ponce, LeCun, 2022): invariance between two views' embeddings, with variance
and covariance terms that keep the embedding from collapsing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from selfsight.losses import vicreg
from selfsight.methods.base import Method, MethodConfig
from selfsight.methods.registry import register_method
from selfsight.nn.heads import mlp


@dataclass
class VICRegConfig(MethodConfig):
    lr: float = 0.2  # LARS, per 256 images (paper: base lr 0.2)
    weight_decay: float = 1e-6
    invariance: float = 25.0  # lambda
    variance: float = 25.0  # mu
    covariance: float = 1.0  # nu
    proj_hidden_dim: int = 8192
    proj_dim: int = 8192


@register_method
class VICReg(Method):
    name = "vicreg"
    description = "VICReg (Bardes et al., 2022): variance-invariance-covariance regularisation"
    Config = VICRegConfig

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cfg = self.config
        self.projector = mlp(self.backbone.dim, cfg.proj_hidden_dim, cfg.proj_dim, 3)

    def compute_loss(self, views: list[torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        z1, z2 = (self.projector(self.backbone(v)) for v in views[:2])
        cfg = self.config
        return vicreg(z1, z2, cfg.invariance, cfg.variance, cfg.covariance)
