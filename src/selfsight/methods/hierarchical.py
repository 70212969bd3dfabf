"""Hierarchical multi-level contrastive learning (after DetCo, Xie et al., 2021).

selfsight's own method: an NT-Xent loss on two views at several depths of the backbone, each level
with its own projection head, weight and temperature (DetCo and Contrastive Deep Supervision,
Zhang et al., 2022, share one temperature), with level weights that can move from coarse (deep)
to fine (shallow) over training.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from selfsight.errors import UserError
from selfsight.losses import nt_xent
from selfsight.methods.base import Method, MethodConfig
from selfsight.methods.registry import register_method
from selfsight.nn.heads import mlp


@dataclass
class HierarchicalConfig(MethodConfig):
    lr: float = 1.0  # LARS, per 256 images, as SimCLR here
    levels: tuple[int, ...] = (1, 2, 3, 4)  # feature levels (timm feature_info; 0 = stem)
    weights: tuple[float, ...] = (0.1, 0.4, 0.7, 1.0)  # DetCo's per-stage weights
    # Softer contrast where features are less semantic: a shallow level cannot yet separate
    # every image, and a sharp temperature would push it to.
    temperatures: tuple[float, ...] = (0.5, 0.4, 0.3, 0.2)
    # Coarse to fine: the weights move linearly from these to ``weights`` over training (deep,
    # coarse levels first; shallow, fine ones join later). Empty: fixed weights.
    start_weights: tuple[float, ...] = (0.0, 0.0, 0.0, 1.0)
    proj_hidden_dim: int = 2048
    proj_dim: int = 128


@register_method
class Hierarchical(Method):
    name = "hierarchical"
    description = ("Hierarchical multi-level contrastive (selfsight): NT-Xent at several depths, "
                   "per-level weight and temperature, coarse-to-fine schedule")
    Config = HierarchicalConfig

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cfg = self.config
        n = len(cfg.levels)
        if len(cfg.weights) != n or len(cfg.temperatures) != n or \
                len(cfg.start_weights) not in (0, n):
            raise UserError(f"hierarchical: {n} levels need {n} weights, temperatures and "
                            f"(optionally) start_weights; got {cfg}")
        dims = self.backbone.level_dims()
        if max(cfg.levels) >= len(dims):
            raise UserError(f"hierarchical: levels {cfg.levels} beyond the {len(dims)} levels "
                            f"of {self.backbone.config.name}")
        self.heads = nn.ModuleList(mlp(dims[level], cfg.proj_hidden_dim, cfg.proj_dim)
                                   for level in cfg.levels)

    def level_weights(self) -> list[float]:
        cfg = self.config
        if not cfg.start_weights:
            return list(cfg.weights)
        p = self.progress
        return [s + p * (w - s) for s, w in zip(cfg.start_weights, cfg.weights, strict=True)]

    def level_embeddings(self, x: torch.Tensor) -> list[torch.Tensor]:
        maps = self.backbone.model.forward_intermediates(
            x, indices=list(self.config.levels), intermediates_only=True)
        return [head(m.mean(dim=(2, 3))) for head, m in zip(self.heads, maps, strict=True)]

    def compute_loss(self, views: list[torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        first, second = (self.level_embeddings(v) for v in views[:2])
        weights, logs = self.level_weights(), {}
        per_image = torch.zeros(views[0].shape[0], device=views[0].device)
        for i, (z1, z2) in enumerate(zip(first, second, strict=True)):
            level = nt_xent(z1, z2, self.config.temperatures[i], per_image=True)
            per_image = per_image + weights[i] * level
            logs[f"loss_level{self.config.levels[i]}"] = float(level.mean().detach())
        self.sample_losses = per_image.detach()
        return per_image.mean(), logs
