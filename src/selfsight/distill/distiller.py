"""Feature distillation (plain regression of L2-normalised embeddings, the "Reg" baseline of
CompRess, Abbasi Koohpayegani et al., 2020; SEED, Fang et al., 2021, distils the same frozen
self-supervised teacher into a small student): the student's pooled features, through a linear
projector, are matched to the frozen teacher's pooled features on the same augmented view;
optionally also the last feature maps / ViT token grids, location by location (FitNets, Romero
et al., 2015, with a 1x1 convolution as regressor).

The distiller is a ``Method`` (unregistered: it needs a teacher, so ``pretrain`` cannot build
it), so it trains through selfsight's usual wiring: warm-up + cosine schedule, time budget,
progress bar, metrics.jsonl, atomic resumable checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from selfsight.backbones import Backbone
from selfsight.errors import UserError
from selfsight.methods.base import Method, MethodConfig
from selfsight.views import MultiViewConfig
from selfsight.views.presets import simclr_view

LOSSES = ("cosine", "smooth_l1")


def feature_loss(pred: torch.Tensor, target: torch.Tensor, kind: str = "cosine") -> torch.Tensor:
    """Per-sample distance of L2-normalised features along dim 1, (B, D, ...) -> (B, ...).

    ``cosine``: 1 - cos(pred, target) (half the squared distance of the unit vectors).
    ``smooth_l1``: Huber (beta 1) on the unit vectors scaled by sqrt(D), i.e. unit RMS per
    component, averaged over components."""
    if kind not in LOSSES:
        raise UserError(f"unknown distillation loss '{kind}'; valid: {list(LOSSES)}")
    p, t = F.normalize(pred.float(), dim=1), F.normalize(target.float(), dim=1)
    if kind == "cosine":
        return 1 - (p * t).sum(dim=1)
    scale = pred.shape[1] ** 0.5
    return F.smooth_l1_loss(p * scale, t * scale, reduction="none").mean(dim=1)


@dataclass
class DistillConfig(MethodConfig):
    optimizer: str = "adamw"
    lr: float = 1e-2  # AdamW, per 256 images; measured here: 1e-2 beat 2e-3 by 2-3 kNN points
    weight_decay: float = 1e-4
    warmup: float = 0.02
    loss: str = "cosine"  # or smooth_l1
    grid_weight: float = 0.0  # weight of feature-map / token-grid matching; 0: pooled only


def distill_views(size: int) -> MultiViewConfig:
    """One SimCLR-style view (Chen et al., 2020) that teacher and student both see; crops no
    smaller than 30% so that most views still show the whole item's outline."""
    return MultiViewConfig(views=[replace(simclr_view(size), scale=(0.3, 1.0))])


class Distiller(Method):
    """Student = ``self.backbone`` (trained), teacher = a frozen ``Backbone`` in eval mode."""

    name = "distill"
    description = "feature distillation of a frozen teacher backbone into a student"
    Config = DistillConfig

    @classmethod
    def default_views(cls, size: int) -> MultiViewConfig:
        return distill_views(size)

    def __init__(self, teacher: Backbone, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cfg = self.config
        if cfg.loss not in LOSSES:
            raise UserError(f"unknown distillation loss '{cfg.loss}'; valid: {list(LOSSES)}")
        if teacher.config.in_chans != self.backbone.config.in_chans:
            raise UserError(f"student has {self.backbone.config.in_chans} input channels, the "
                            f"teacher {teacher.config.in_chans}: they must see the same images")
        self.teacher = teacher.eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.projector = nn.Linear(self.backbone.dim, teacher.dim)
        self.grid_projector = nn.Conv2d(self.backbone.model.num_features,
                                        teacher.model.num_features, 1) \
            if cfg.grid_weight > 0 else None

    def train(self, mode: bool = True) -> Distiller:
        """Lightning switches every module to training mode; the teacher stays frozen in eval
        (its batch-norm statistics are part of what the student learns to reproduce)."""
        super().train(mode)
        self.teacher.eval()
        return self

    def teacher_input(self, view: torch.Tensor) -> torch.Tensor:
        """The student's view at the teacher's image size (resizing commutes with the shared
        per-channel normalisation, so the normalised view can be resized directly)."""
        size = self.teacher.config.image_size
        if view.shape[-1] == size and view.shape[-2] == size:
            return view
        return F.interpolate(view, size=(size, size), mode="bilinear", antialias=True,
                             align_corners=False)

    def compute_loss(self, views: list[torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        view = views[0]  # (B, C, s, s)
        grid = self.grid_projector is not None
        with torch.no_grad():
            t = self.teacher.features(self.teacher_input(view), tokens=grid)
        s = self.backbone.features(view, tokens=grid)
        pooled = feature_loss(self.projector(s["pooled"]), t["pooled"], self.config.loss)  # (B,)
        per_image, logs = pooled, {"pooled_loss": pooled.mean().detach()}
        if grid:
            t_map = t["tokens"]  # (B, Dt, h, w)
            s_map = self.grid_projector(s["tokens"])  # (B, Dt, h', w')
            s_map = F.interpolate(s_map, size=t_map.shape[-2:], mode="bilinear",
                                  align_corners=False)  # (B, Dt, h, w)
            grid_loss = feature_loss(s_map, t_map, self.config.loss).flatten(1).mean(1)  # (B,)
            per_image = per_image + self.config.grid_weight * grid_loss
            logs["grid_loss"] = grid_loss.mean().detach()
        self.sample_losses = per_image.detach()
        return per_image.mean(), logs

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "teacher_dim": self.teacher.dim}
