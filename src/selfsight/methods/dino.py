"""DINO (Caron et al., 2021): self-distillation with no labels. A student matches the centred,
sharpened output of an EMA teacher; the teacher sees only the global crops, the student all."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from selfsight.backbones import BackboneConfig
from selfsight.losses import DINOLoss
from selfsight.methods.base import Method, MethodConfig
from selfsight.methods.registry import register_method
from selfsight.nn.ema import frozen_copy
from selfsight.nn.heads import DINOHead
from selfsight.recipes import view_recipe
from selfsight.views import MultiViewConfig


@dataclass
class DINOConfig(MethodConfig):
    lr: float = 0.3  # LARS, per 256 images (CNN backbones; ViTs: AdamW 5e-4 as in the paper)
    weight_decay: float = 1e-5
    ema_momentum: float = 0.996  # cosine to 1.0
    out_dim: int = 65536
    hidden_dim: int = 2048
    bottleneck_dim: int = 256
    student_temp: float = 0.1
    teacher_temp: float = 0.07
    warmup_teacher_temp: float = 0.04  # linear warm-up to teacher_temp ...
    teacher_temp_warmup: float = 0.3  # ... over this fraction of training (30 epochs of 100)
    center_momentum: float = 0.9
    freeze_last_layer: float = 1.0  # epochs with the prototypes frozen
    head_batch_norm: bool = False  # batch norm in the head's MLP (lightly's ResNet recipe)


@register_method
class DINO(Method):
    name = "dino"
    description = "DINO (Caron et al., 2021): self-distillation, EMA teacher, multi-crop"
    Config = DINOConfig

    @classmethod
    def family_config(cls, backbone: BackboneConfig) -> DINOConfig:
        if backbone.is_vit:  # the paper's ViT recipe
            return cls.Config(optimizer="adamw", lr=5e-4, weight_decay=0.04, weight_decay_end=0.4)
        # CNNs: batch norm in the head MLP (measured: kNN 0.775 against 0.700 without, 600 s).
        return cls.Config(head_batch_norm=True)

    @classmethod
    def default_views(cls, size: int, vit: bool = False) -> MultiViewConfig:
        from selfsight.views.presets import multicrop_views

        return multicrop_views(size, **view_recipe("dino", size, vit=vit))

    @classmethod
    def views_for(cls, backbone: BackboneConfig, size: int | None = None) -> MultiViewConfig:
        return cls.default_views(size or backbone.image_size, vit=backbone.is_vit)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cfg = self.config
        self.head = DINOHead(self.backbone.dim, cfg.out_dim, cfg.hidden_dim, cfg.bottleneck_dim,
                             batch_norm=cfg.head_batch_norm)
        self.teacher_backbone = frozen_copy(self.backbone)
        self.teacher_head = frozen_copy(self.head)
        self.criterion = DINOLoss(cfg.out_dim, cfg.student_temp, cfg.center_momentum)

    def ema_pairs(self) -> list:
        return [(self.backbone, self.teacher_backbone), (self.head, self.teacher_head)]

    @property
    def teacher_temp(self) -> float:
        cfg = self.config
        ramp = min(self.progress / cfg.teacher_temp_warmup, 1.0) if cfg.teacher_temp_warmup else 1
        return cfg.warmup_teacher_temp + ramp * (cfg.teacher_temp - cfg.warmup_teacher_temp)

    def compute_loss(self, views: list[torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        global_views = torch.cat(views[:2])
        with torch.no_grad():
            teacher = self.teacher_head(self.teacher_backbone(global_views)).chunk(2)
        student = list(self.head(self.backbone(global_views)).chunk(2))
        if len(views) > 2:  # the local crops share a size: one batched forward
            student += self.head(self.backbone(torch.cat(views[2:]))).chunk(len(views) - 2)
        loss = self.criterion(student, list(teacher), self.teacher_temp)
        return loss, {"teacher_temp": self.teacher_temp}

    def on_after_backward(self) -> None:
        """The prototypes stay fixed during the first epoch(s): it stabilises the start."""
        steps_per_epoch = max(self.trainer.num_training_batches, 1)
        if self.global_step < self.config.freeze_last_layer * steps_per_epoch:
            for p in self.head.last_layer.parameters():
                p.grad = None
