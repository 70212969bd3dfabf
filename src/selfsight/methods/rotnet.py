"""RotNet (Gidaris, Singh & Komodakis, 2018): predict which of four 90-degree rotations turned
an image. Cheap (one view, a 4-way classifier) and orientation-aware, which makes it a strong
representation for one-class anomaly detection (Golan & El-Yaniv 2018; Sohn et al. 2021)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F

from selfsight.methods.base import Method, MethodConfig
from selfsight.methods.registry import register_method
from selfsight.nn.heads import mlp
from selfsight.views import MultiViewConfig
from selfsight.views.ops import four_rotations


@dataclass
class RotNetConfig(MethodConfig):
    optimizer: str = "sgd"  # the paper: SGD, momentum 0.9, weight decay 5e-4, lr 0.1
    lr: float = 0.1
    weight_decay: float = 5e-4
    head_hidden_dim: int = 512
    head_layers: int = 2  # an MLP head, as Sohn et al. (2021), keeps the backbone general


@register_method
class RotNet(Method):
    name = "rotnet"
    description = "RotNet (Gidaris et al., 2018): classify the 90-degree rotation of each image"
    Config = RotNetConfig

    @classmethod
    def default_views(cls, size: int) -> MultiViewConfig:
        from selfsight.views.presets import simclr_view

        # One mild view: large crops keep the object's orientation cues.
        return MultiViewConfig(views=[replace(simclr_view(size), scale=(0.5, 1.0))])

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cfg = self.config
        self.classifier = mlp(self.backbone.dim, cfg.head_hidden_dim, 4, cfg.head_layers)

    def compute_loss(self, views: list[torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        turned, labels = four_rotations(views[0])
        logits = self.classifier(self.backbone(turned)).float()  # (4B, 4)
        per_view = F.cross_entropy(logits, labels, reduction="none")
        self.sample_losses = per_view.view(4, -1).mean(0).detach()  # per image
        accuracy = (logits.argmax(1) == labels).float().mean()
        return per_view.mean(), {"rotation_accuracy": float(accuracy)}
