"""Exponential moving average of weights (the target/teacher of BYOL, MoCo, DINO)."""

from __future__ import annotations

import copy

import torch
from torch import nn


def frozen_copy(module: nn.Module) -> nn.Module:
    """A copy that takes no gradient: an EMA target starts equal to its online module."""
    target = copy.deepcopy(module)
    for p in target.parameters():
        p.requires_grad_(False)
    return target


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """target <- momentum * target + (1 - momentum) * online, parameters only.

    Buffers (batch-norm running statistics) are the target's own, gathered by its forward passes
    in training mode, as in DINO's reference code: they describe the target's weights, so the
    target can be evaluated (DINO's teacher); the online network's would not fit them."""
    t_params = list(target.parameters())
    o_params = [p.detach() for p in online.parameters()]
    torch._foreach_lerp_(t_params, o_params, 1.0 - momentum)
