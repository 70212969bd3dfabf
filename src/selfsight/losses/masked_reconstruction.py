"""MAE's reconstruction loss (He et al., 2022): mean squared error on the masked patches only."""

from __future__ import annotations

import torch


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, N, patch * patch * C), patches in row-major order."""
    b, c, h, w = images.shape
    x = images.reshape(b, c, h // patch, patch, w // patch, patch)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // patch) * (w // patch), patch * patch * c)


def masked_reconstruction(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                          norm_pix: bool = True) -> torch.Tensor:
    """pred, target: (B, N, P); mask: (B, N), 1 where a patch was hidden from the encoder.

    With ``norm_pix`` each target patch is standardised by its own mean and variance, which the
    paper found to give better representations.
    """
    target = target.float()
    if norm_pix:
        mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
        target = (target - mean) / (var + 1e-6).sqrt()
    per_patch = (pred.float() - target).pow(2).mean(-1)  # (B, N)
    return (per_patch * mask).sum() / mask.sum()
