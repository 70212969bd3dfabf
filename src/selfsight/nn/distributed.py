"""Gathering across processes with gradients, for losses whose negatives span the global batch."""

from __future__ import annotations

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sums every process's gradient for each block and returns each
    process its own block (as in SimCLR's TPU implementation)."""

    @staticmethod
    def forward(ctx: object, x: torch.Tensor) -> torch.Tensor:
        blocks = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(blocks, x.contiguous())
        return torch.cat(blocks)

    @staticmethod
    def backward(ctx: object, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)  # every process's loss depends on every block
        n = grad.shape[0] // dist.get_world_size()
        return grad[dist.get_rank() * n:(dist.get_rank() + 1) * n]


def gather(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` (n, ...) from every process into (world * n, ...), rank-major; every
    process must pass the same n.

    With DDP averaging parameter gradients over processes, the gradient is exactly that of the
    mean of the per-process losses, i.e. of the single-process loss on the global batch.
    """
    if not is_distributed():
        return x
    return _GatherWithGrad.apply(x)
