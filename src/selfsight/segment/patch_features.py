"""Patch features of a selfsight backbone as a grid, for cutting images into objects.

For a ViT the default is the keys of the last attention block: TokenCut and CutLER (Wang et al.,
2022; 2023) found that the keys group the patches of one object better than the output tokens.
Output tokens (``kind="tokens"``) are the choice for any ViT, and a CNN gives its last feature map.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from selfsight.backbones import Backbone
from selfsight.data.arrays import convert_channels
from selfsight.device import autocast
from selfsight.errors import UserError
from selfsight.eval.extract import preprocess

KINDS = ("auto", "keys", "tokens")


def _last_qkv(backbone: Backbone) -> nn.Linear | None:
    blocks = getattr(backbone.model, "blocks", None)
    attn = getattr(blocks[-1], "attn", None) if blocks is not None and len(blocks) else None
    qkv = getattr(attn, "qkv", None)
    return qkv if isinstance(qkv, nn.Linear) else None


def patch_grid(backbone: Backbone, x: torch.Tensor, kind: str = "auto") -> torch.Tensor:
    """Normalised float input (B, C, H, W) -> patch features (B, D, h, w).

    ``kind``: ``keys`` (last block's attention keys, heads concatenated; ViT only), ``tokens``
    (last block's output tokens or a CNN's last map), ``auto`` (keys where the model has them)."""
    if kind not in KINDS:
        raise UserError(f"patch feature kind must be one of {KINDS}, got {kind!r}")
    qkv = _last_qkv(backbone) if kind in ("auto", "keys") else None
    if kind == "keys" and qkv is None:
        raise UserError(f"{backbone.config.name} has no attention keys; use kind='tokens'")
    if qkv is None:
        return backbone.features(x, tokens=True)["tokens"]
    captured: list[torch.Tensor] = []
    hook = qkv.register_forward_hook(lambda _m, _i, out: captured.append(out))
    try:
        backbone.model.forward_features(x)
    finally:
        hook.remove()
    out = captured[-1]  # (B, P + h*w, 3 * D): queries, keys, values
    dim = out.shape[-1] // 3
    keys = out[:, backbone.num_prefix_tokens:, dim:2 * dim]  # (B, h*w, D)
    patch = backbone.model.patch_embed.patch_size
    h, w = x.shape[-2] // patch[0], x.shape[-1] // patch[1]
    return keys.transpose(1, 2).reshape(len(x), dim, h, w)


@torch.no_grad()
def extract_patch_features(backbone: Backbone, images: np.ndarray, size: int | None = None,
                           kind: str = "auto", batch_size: int = 64,
                           device: str | torch.device | None = None,
                           progress: bool = True) -> torch.Tensor:
    """uint8 (N, H, W) or (N, H, W, C) images -> float32 (N, D, h, w) patch features on the CPU.

    ``size`` is the side the images are resized to first (default: the backbone's image size); a
    ViT's grid is ``size / patch``: CutLER runs DINO at 480 px for a finer grid than training's."""
    if images.ndim == 3:
        images = images[..., None]
    images = convert_channels(images, backbone.config.in_chans)
    device = torch.device(device or next(backbone.parameters()).device)
    backbone.eval().to(device)
    chunks = []
    for start in tqdm(range(0, len(images), batch_size), desc="patch features",
                      disable=not progress, unit="batch"):
        batch = torch.from_numpy(np.ascontiguousarray(images[start:start + batch_size]))
        x = preprocess(batch.permute(0, 3, 1, 2).to(device), backbone, size)
        with autocast(device):
            chunks.append(patch_grid(backbone, x, kind).float().cpu())
    return torch.cat(chunks)
