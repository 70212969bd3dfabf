"""InfoNCE of MoCo v3 (Chen, Xie, He, 2021): queries against the keys of the whole global batch."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from selfsight.nn.distributed import gather, rank


def infonce(q: torch.Tensor, k: torch.Tensor, temperature: float = 0.2,
            scale: bool = True) -> torch.Tensor:
    """Cross entropy of each query against every key of the global batch, its own key positive.

    q: (n, D) local queries (with gradient); k: (n, D) local keys (momentum encoder, no
    gradient), gathered from every process. With ``scale``, multiplied by 2T as in the MoCo v3
    code, so that the gradient size does not depend on the temperature.
    """
    q = F.normalize(q.float(), dim=1)
    k = F.normalize(k.detach().float(), dim=1)
    logits = q @ gather(k).T / temperature  # (n, N)
    labels = rank() * q.shape[0] + torch.arange(q.shape[0], device=q.device)
    loss = F.cross_entropy(logits, labels)
    return loss * 2 * temperature if scale else loss
