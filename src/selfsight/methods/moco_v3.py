"""MoCo v3 (Chen, Xie, He, 2021): a momentum encoder gives the keys, a predictor on the online
branch gives the queries, symmetric InfoNCE with the other images of the global batch as
negatives."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from selfsight.backbones import BackboneConfig
from selfsight.losses import infonce
from selfsight.methods.base import Method, MethodConfig
from selfsight.methods.registry import register_method
from selfsight.nn.ema import frozen_copy
from selfsight.nn.heads import mlp


@dataclass
class MoCoV3Config(MethodConfig):
    temperature: float = 0.2
    lr: float = 0.6  # LARS, per 256 images (the ResNet recipe of the reference code)
    ema_momentum: float = 0.99  # cosine to 1.0
    proj_hidden_dim: int = 4096
    proj_dim: int = 256
    pred_hidden_dim: int = 4096


@register_method
class MoCoV3(Method):
    name = "mocov3"
    description = "MoCo v3 (Chen et al., 2021): momentum keys, predicted queries, InfoNCE"
    Config = MoCoV3Config

    @classmethod
    def family_config(cls, backbone: BackboneConfig) -> MoCoV3Config:
        if backbone.is_vit:  # the reference ViT recipe: AdamW, lr 1.5e-4 per 256, wd 0.1
            return cls.Config(optimizer="adamw", lr=1.5e-4, weight_decay=0.1)
        return cls.Config()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cfg = self.config
        # 3-layer projector and 2-layer predictor, BN after every layer (last one affine-free).
        self.projector = mlp(self.backbone.dim, cfg.proj_hidden_dim, cfg.proj_dim, 3,
                             last_batch_norm=True)
        self.predictor = mlp(cfg.proj_dim, cfg.pred_hidden_dim, cfg.proj_dim, 2,
                             last_batch_norm=True)
        self.momentum_backbone = frozen_copy(self.backbone)
        self.momentum_projector = frozen_copy(self.projector)

    def ema_pairs(self) -> list:
        return [(self.backbone, self.momentum_backbone),
                (self.projector, self.momentum_projector)]

    def compute_loss(self, views: list[torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        q1, q2 = (self.predictor(self.projector(self.backbone(v))) for v in views[:2])
        with torch.no_grad():
            k1, k2 = (self.momentum_projector(self.momentum_backbone(v)) for v in views[:2])
        t = self.config.temperature
        return infonce(q1, k2, t) + infonce(q2, k1, t), {}
