"""Schedules as pure functions of training progress in [0, 1] (DINO-style: numbers, not objects).

Progress rather than step counts, so a wall-clock budget and an epoch count share one code path.
"""

from __future__ import annotations

import math


def cosine(progress: float, start: float, end: float) -> float:
    """Half-cosine from ``start`` (progress 0) to ``end`` (progress 1)."""
    progress = min(max(progress, 0.0), 1.0)
    return end + 0.5 * (start - end) * (1 + math.cos(math.pi * progress))


def warmup_cosine(progress: float, base: float, warmup: float, final: float = 0.0) -> float:
    """Linear warm-up from 0 over the first ``warmup`` fraction, then cosine to ``final``
    (Goyal et al., 2017; Loshchilov & Hutter, 2017)."""
    if warmup > 0 and progress < warmup:
        return base * progress / warmup
    rest = (progress - warmup) / (1 - warmup) if warmup < 1 else 1.0
    return cosine(rest, base, final)
