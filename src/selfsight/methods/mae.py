"""MAE (He et al., 2022): masked autoencoders. The ViT encoder sees a random 25% of the patches;
a lightweight decoder reconstructs the pixels of the hidden ones."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from timm.layers import build_sincos2d_pos_embed
from timm.models.vision_transformer import Block
from torch import nn

from selfsight.errors import UserError
from selfsight.losses import masked_reconstruction, patchify
from selfsight.methods.base import Method, MethodConfig
from selfsight.methods.registry import register_method
from selfsight.nn.masking import random_masking
from selfsight.views import MultiViewConfig, ViewConfig


@dataclass
class MAEConfig(MethodConfig):
    optimizer: str = "adamw"
    lr: float = 1.5e-4  # per 256 images
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.05
    mask_ratio: float = 0.75
    norm_pix_loss: bool = True
    decoder_dim: int = 512
    decoder_depth: int = 8
    decoder_heads: int = 16


@register_method
class MAE(Method):
    name = "mae"
    description = "MAE (He et al., 2022): reconstruct 75% masked patches; ViT backbones only"
    Config = MAEConfig
    requires_vit = True

    @classmethod
    def default_views(cls, size: int) -> MultiViewConfig:
        """Crop and flip only: the paper found colour augmentation unnecessary for MAE."""
        return MultiViewConfig(views=[ViewConfig(size=size, scale=(0.2, 1.0), jitter_p=0.0,
                                                 grayscale_p=0.0, blur_p=0.0)])

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.backbone.is_vit:
            raise UserError(f"MAE needs a ViT backbone, got '{self.backbone.config.name}'")
        cfg, vit = self.config, self.backbone.model
        self.patch = vit.patch_embed.patch_size[0]
        d = cfg.decoder_dim
        self.decoder_embed = nn.Linear(self.backbone.dim, d)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, d))
        nn.init.normal_(self.mask_token, std=0.02)
        self.decoder_blocks = nn.Sequential(*[Block(d, cfg.decoder_heads, qkv_bias=True)
                                              for _ in range(cfg.decoder_depth)])
        self.decoder_norm = nn.LayerNorm(d)
        self.decoder_pred = nn.Linear(d, self.patch ** 2 * self.backbone.config.in_chans)

    def encode(self, images: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """Prefix tokens + the visible patches (B, P + K, D) through the ViT encoder."""
        vit, prefix = self.backbone.model, self.backbone.num_prefix_tokens
        x = vit._pos_embed(vit.patch_embed(images))  # (B, P + N, D), position embedded
        visible = torch.gather(x[:, prefix:], 1, keep[..., None].expand(-1, -1, x.shape[-1]))
        x = torch.cat([x[:, :prefix], visible], dim=1)
        return vit.norm(vit.blocks(vit.norm_pre(x)))

    def decode(self, latent: torch.Tensor, restore: torch.Tensor,
               grid: tuple[int, int]) -> torch.Tensor:
        """Visible latents + mask tokens, unshuffled, -> pixels of every patch (B, N, p*p*C)."""
        prefix = self.backbone.num_prefix_tokens
        x = self.decoder_embed(latent)
        b, n = restore.shape
        tokens = torch.cat([x[:, prefix:], self.mask_token.expand(b, n - x.shape[1] + prefix,
                                                                  -1).to(x.dtype)], dim=1)
        tokens = torch.gather(tokens, 1, restore[..., None].expand(-1, -1, x.shape[-1]))
        pos = build_sincos2d_pos_embed(list(grid), x.shape[-1], device=x.device)  # fixed
        x = torch.cat([x[:, :prefix], tokens + pos.to(x.dtype)], dim=1)
        x = self.decoder_norm(self.decoder_blocks(x))
        return self.decoder_pred(x[:, prefix:])

    def compute_loss(self, views: list[torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        images = views[0]
        grid = (images.shape[-2] // self.patch, images.shape[-1] // self.patch)
        keep, mask, restore = random_masking(images.shape[0], grid[0] * grid[1],
                                             self.config.mask_ratio,
                                             self.step_generator(stream=1), images.device)
        pred = self.decode(self.encode(images, keep), restore, grid)
        target = patchify(images, self.patch)
        return masked_reconstruction(pred, target, mask, self.config.norm_pix_loss), {}
