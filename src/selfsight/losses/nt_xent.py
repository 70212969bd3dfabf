"""NT-Xent, the normalised temperature-scaled cross entropy of SimCLR (Chen et al., 2020)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from selfsight.nn.distributed import gather, rank


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.1,
            per_image: bool = False, decoupled: bool = False) -> torch.Tensor:
    """Mean NT-Xent over the 2N views of a (global) batch.

    Each view's positive is the other view of its image; its negatives are the 2N - 2 other views
    in the batch, gathered from every process. z1, z2: (n, D) local embeddings of the two views.
    With ``per_image`` the loss of each local image (mean of its two views), shape (n,).
    ``decoupled``: DCL (Yeh et al., 2022, "Decoupled Contrastive Learning"): the positive is left
    out of the denominator, which removes the negative-positive coupling that slows learning at
    small batches and few epochs.
    """
    n = z1.shape[0]
    local = F.normalize(torch.cat([z1, z2]).float(), dim=1)  # (2n, D)
    everything = gather(local)  # (2N, D): per process [z1; z2]
    logits = local @ everything.T / temperature  # (2n, 2N)
    offset = rank() * 2 * n
    idx = torch.arange(2 * n, device=local.device)
    logits[idx, offset + idx] = float("-inf")  # a view is not its own negative
    positive = offset + (idx + n) % (2 * n)
    if decoupled:
        positive_logit = logits[idx, positive]
        logits[idx, positive] = float("-inf")
        per_view = torch.logsumexp(logits, dim=1) - positive_logit
    else:
        per_view = F.cross_entropy(logits, positive, reduction="none")
    return per_view.view(2, n).mean(0) if per_image else per_view.mean()
