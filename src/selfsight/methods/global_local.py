"""Multi-network global+local contrastive learning (MNCLGLF, arXiv:2306.15930, 2023): an online
network's prediction of a whole view is contrasted with the nearest neighbour (in a queue) of a
momentum network's embedding of another view (global), and with a stop-gradient branch's
embeddings of pairs of local patches of a third view (local)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from selfsight.errors import UserError
from selfsight.losses import infonce, nt_xent
from selfsight.methods.base import Method, MethodConfig
from selfsight.methods.registry import register_method
from selfsight.nn.distributed import gather
from selfsight.nn.ema import frozen_copy
from selfsight.nn.heads import mlp
from selfsight.views import MultiViewConfig

PAIRS = list(itertools.combinations(range(4), 2))  # the 6 pairs of the 2x2 patches


@dataclass
class GlobalLocalConfig(MethodConfig):
    lr: float = 0.3  # LARS, per 256 images
    ema_momentum: float = 0.99  # constant, as in the paper
    ema_momentum_end: float = 0.99
    temperature: float = 1.0  # the reference value
    local_weight: float = 1.0  # L = local_weight * L_local + global_weight * L_global
    global_weight: float = 6.0
    queue_size: int = 16384
    nearest_neighbour: bool = True  # False: the momentum embedding itself is the positive
    # The authors' release detaches the prediction in the local term, which then trains
    # nothing; True reproduces that for comparison.
    release_gradient: bool = False
    proj_hidden_dim: int = 2048
    proj_dim: int = 256
    pred_hidden_dim: int = 4096


@register_method
class GlobalLocal(Method):
    name = "globallocal"
    description = ("Multi-network global+local contrastive (MNCLGLF, 2023): online, momentum + "
                   "nearest-neighbour queue, stop-gradient local patches")
    Config = GlobalLocalConfig
    view_cells = 2  # the third view is cut into 2x2 local patches

    @classmethod
    def default_views(cls, size: int) -> MultiViewConfig:
        from selfsight.views.presets import byol_views, simclr_view

        if size % 2:
            raise UserError(f"globallocal cuts views into 2x2 patches: view size {size} is odd")
        return MultiViewConfig(views=[*byol_views(size).views, simclr_view(size)])

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cfg = self.config
        self.projector = mlp(self.backbone.dim, cfg.proj_hidden_dim, cfg.proj_dim, 3)
        self.predictor = mlp(cfg.proj_dim, cfg.pred_hidden_dim, cfg.proj_dim, 2)
        self.momentum_backbone = frozen_copy(self.backbone)
        self.momentum_projector = frozen_copy(self.projector)
        self.register_buffer("queue", F.normalize(torch.randn(cfg.queue_size, cfg.proj_dim), dim=1))
        self.register_buffer("queue_pointer", torch.zeros((), dtype=torch.long))

    def ema_pairs(self) -> list:
        return [(self.backbone, self.momentum_backbone),
                (self.projector, self.momentum_projector)]

    def positive(self, z: torch.Tensor) -> torch.Tensor:
        """The queue's nearest neighbour of each momentum embedding (NNCLR), or itself."""
        z = F.normalize(z.float(), dim=1)
        if not self.config.nearest_neighbour:
            return z
        return self.queue[(z @ self.queue.T).argmax(dim=1)]

    @torch.no_grad()
    def enqueue(self, z: torch.Tensor) -> None:
        z = F.normalize(gather(z.float()), dim=1)
        n, start = z.shape[0], int(self.queue_pointer)
        rows = torch.arange(start, start + n, device=z.device) % self.queue.shape[0]
        self.queue[rows] = z
        self.queue_pointer.fill_((start + n) % self.queue.shape[0])

    @torch.no_grad()
    def local_embeddings(self, view: torch.Tensor) -> list[torch.Tensor]:
        """Stop-gradient branch: online weights on the 2x2 patches of ``view``; features of each
        pair of patches averaged and projected: 6 (n, proj_dim) embeddings."""
        h, w = view.shape[-2] // 2, view.shape[-1] // 2
        patches = [view[..., i * h:(i + 1) * h, j * w:(j + 1) * w] for i in (0, 1) for j in (0, 1)]
        feats = self.backbone(torch.cat(patches)).chunk(4)  # one batched forward
        return [self.projector((feats[a] + feats[b]) / 2) for a, b in PAIRS]

    def compute_loss(self, views: list[torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        cfg = self.config
        p1, p2 = (self.predictor(self.projector(self.backbone(v))) for v in views[:2])
        with torch.no_grad():
            m1, m2 = (self.momentum_projector(self.momentum_backbone(v)) for v in views[:2])
            n1, n2 = self.positive(m1), self.positive(m2)
        global_loss = (nt_xent(n1, p2, cfg.temperature) + nt_xent(n2, p1, cfg.temperature)) / 2
        loss, logs = cfg.global_weight * global_loss, {"loss_global": float(global_loss.detach())}
        if cfg.local_weight > 0:
            local = self.local_embeddings(views[2])
            preds = [p.detach() if cfg.release_gradient else p for p in (p1, p2)]
            local_loss = torch.stack([infonce(p, z, cfg.temperature, scale=False)
                                      for p in preds for z in local]).mean()
            loss = loss + cfg.local_weight * local_loss
            logs["loss_local"] = float(local_loss.detach())
        self.enqueue(m1)
        return loss, logs
