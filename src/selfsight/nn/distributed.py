"""Gathering across processes with gradients, for losses whose negatives span the global batch."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def gather(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` (n, ...) from every process into (world * n, ...), rank-major.

    The backward of ``torch.distributed.nn.functional.all_gather`` sums the gradients that every
    process computed for each block and hands each process its own block back. With DDP averaging
    parameter gradients over processes, the result is exactly the gradient of the mean of the
    per-process losses, i.e. of the single-process loss on the global batch.
    """
    if not is_distributed():
        return x
    return torch.cat(dist_fn.all_gather(x), dim=0)
