"""Optimizer parameter groups with the usual weight-decay exclusion."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from torch import nn


def decay_groups(params: Iterable[nn.Parameter], weight_decay: float,
                 **extra: Any) -> list[dict[str, Any]]:
    """[decayed, not decayed] groups of the trainable parameters. Norm weights and biases are
    1-d: no weight decay (and, under LARS, no trust-ratio adaptation)."""
    trainable = [p for p in params if p.requires_grad]
    return [{"params": [p for p in trainable if p.ndim > 1], "weight_decay": weight_decay, **extra},
            {"params": [p for p in trainable if p.ndim <= 1], "weight_decay": 0.0, **extra}]
