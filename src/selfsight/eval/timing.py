"""Inference latency: the median of repeated calls after warm-up, per image."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any


def median_ms_per_image(fn: Callable[[], Any], batch: int, repeats: int, warmup: int = 2) -> float:
    """Median wall time of ``fn`` over ``repeats`` calls after ``warmup``, per image, in ms."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times) / batch
