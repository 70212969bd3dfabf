"""Random patch masking for masked image modelling (He et al., 2022, sec. 3)."""

from __future__ import annotations

import torch


def random_masking(batch: int, num_patches: int, ratio: float, gen: torch.Generator,
                   device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor,
                                                             torch.Tensor]:
    """Per sample, keep a uniformly random ``round(N * (1 - ratio))`` of the patches.

    Returns ``keep`` (B, K) indices of the visible patches (ascending noise order), ``mask``
    (B, N) with 1 where hidden, and ``restore`` (B, N): the permutation that puts
    [visible; hidden] back into patch order.
    """
    num_keep = max(1, round(num_patches * (1 - ratio)))
    noise = torch.rand(batch, num_patches, generator=gen, device=device)
    shuffle = noise.argsort(dim=1)
    restore = shuffle.argsort(dim=1)
    keep = shuffle[:, :num_keep]
    mask = torch.ones(batch, num_patches, device=device)
    mask[:, :num_keep] = 0
    return keep, torch.gather(mask, 1, restore), restore
