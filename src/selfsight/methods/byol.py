"""BYOL (Grill et al., 2020): an online network predicts an EMA target network's projection of
another view; no negatives."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from selfsight.backbones import BackboneConfig
from selfsight.losses import negative_cosine
from selfsight.methods.base import Method, MethodConfig
from selfsight.methods.registry import register_method
from selfsight.nn.ema import frozen_copy
from selfsight.nn.heads import mlp
from selfsight.views import MultiViewConfig


@dataclass
class BYOLConfig(MethodConfig):
    lr: float = 0.2  # LARS, per 256 images (paper: 0.2)
    weight_decay: float = 1.5e-6
    ema_momentum: float = 0.99  # paper 0.996 over 1000 epochs; 0.99 suits short runs
    proj_hidden_dim: int = 4096
    proj_dim: int = 256


@register_method
class BYOL(Method):
    name = "byol"
    description = "BYOL (Grill et al., 2020): predict an EMA target's projection, no negatives"
    Config = BYOLConfig

    @classmethod
    def family_config(cls, backbone: BackboneConfig) -> BYOLConfig:
        if backbone.is_vit:  # AdamW, lr 1.5e-4 per 256, wd 0.1: MoCo v3's ViT recipe
            return cls.Config(optimizer="adamw", lr=1.5e-4, weight_decay=0.1)
        return cls.Config()

    @classmethod
    def default_views(cls, size: int) -> MultiViewConfig:
        from selfsight.views.presets import byol_views

        return byol_views(size)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cfg = self.config
        self.projector = mlp(self.backbone.dim, cfg.proj_hidden_dim, cfg.proj_dim, 2)
        self.predictor = mlp(cfg.proj_dim, cfg.proj_hidden_dim, cfg.proj_dim, 2)
        self.target_backbone = frozen_copy(self.backbone)
        self.target_projector = frozen_copy(self.projector)

    def ema_pairs(self) -> list:
        return [(self.backbone, self.target_backbone), (self.projector, self.target_projector)]

    def compute_loss(self, views: list[torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        p1, p2 = (self.predictor(self.projector(self.backbone(v))) for v in views[:2])
        with torch.no_grad():
            z1, z2 = (self.target_projector(self.target_backbone(v)) for v in views[:2])
        return negative_cosine(p1, z2) + negative_cosine(p2, z1), {}
