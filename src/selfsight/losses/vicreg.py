"""VICReg loss (Bardes, Ponce, LeCun, 2022): variance, invariance, covariance."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from selfsight.nn.distributed import gather


def variance_term(z: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """Hinge keeping every dimension's standard deviation over the batch at >= 1."""
    return F.relu(1 - torch.sqrt(z.var(0) + eps)).mean()


def covariance_term(z: torch.Tensor) -> torch.Tensor:
    """Sum of squared off-diagonal covariances, divided by the dimension."""
    n, d = z.shape
    z = z - z.mean(0)
    cov = z.T @ z / (n - 1)
    return (cov.pow(2).sum() - torch.diagonal(cov).pow(2).sum()) / d


def vicreg(z1: torch.Tensor, z2: torch.Tensor, invariance: float = 25.0, variance: float = 25.0,
           covariance: float = 1.0) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted sum of the three terms over the global batch; also returns each term."""
    z1, z2 = gather(z1.float()), gather(z2.float())
    terms = {
        "invariance": F.mse_loss(z1, z2),
        "variance": (variance_term(z1) + variance_term(z2)) / 2,
        "covariance": covariance_term(z1) + covariance_term(z2),
    }
    loss = (invariance * terms["invariance"] + variance * terms["variance"]
            + covariance * terms["covariance"])
    return loss, {k: float(v.detach()) for k, v in terms.items()}
