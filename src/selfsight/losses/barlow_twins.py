"""Barlow Twins loss (Zbontar et al., 2021): the cross-correlation of two views' embeddings,
pushed to the identity."""

from __future__ import annotations

import torch

from selfsight.nn.distributed import gather


def standardize(z: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Per-dimension zero mean, unit variance over the batch (BatchNorm without affine)."""
    return (z - z.mean(0)) / torch.sqrt(z.var(0, unbiased=False) + eps)


def barlow_twins(z1: torch.Tensor, z2: torch.Tensor, lambd: float = 0.0051) -> torch.Tensor:
    """sum_i (1 - C_ii)^2 + lambd * sum_{i != j} C_ij^2 with C the (D, D) cross-correlation of the
    standardised embeddings over the global batch (gathered from every process)."""
    z1, z2 = gather(z1.float()), gather(z2.float())
    c = standardize(z1).T @ standardize(z2) / z1.shape[0]  # (D, D)
    on_diag = (torch.diagonal(c) - 1).pow(2).sum()
    off_diag = c.pow(2).sum() - torch.diagonal(c).pow(2).sum()
    return on_diag + lambd * off_diag
