"""A fixed number of optimizer steps in plain PyTorch, for the small trainings beside pretraining.

Pretraining runs through Lightning (:mod:`selfsight.train.fit`): checkpoints, resumption,
callbacks, several devices. Fine-tuning a classifier and training the instance segmenter need
none of that: they train one small model for a fixed number of steps (or seconds) inside the
calling process and hand it back, where building a Lightning Trainer would cost more time than
the work. Both use :func:`train_steps`, so they share one schedule, one autocast rule and one
progress bar. It imports no Lightning and nothing above the building blocks.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import torch
from tqdm.auto import tqdm

from selfsight.device import autocast
from selfsight.nn.schedules import warmup_cosine

Batch = TypeVar("Batch")


def train_steps(
    optimizer: torch.optim.Optimizer,
    batches: Callable[[], Batch] | Iterable[Batch],
    losses: Callable[[Batch], dict[str, torch.Tensor]],
    steps: int | None,
    *,
    time_budget: float | None = None,
    warmup: float = 0.0,
    grad_clip: float | None = None,
    autocast_on: torch.device | None = None,
    progress: bool = True,
    desc: str = "train",
    images_per_step: int | None = None,
) -> list[dict[str, float]]:
    """Run ``optimizer`` for ``steps`` steps or ``time_budget`` seconds, whichever ends first.

    Each step draws a batch (``batches()``, or the next item of an iterable), computes the named
    loss terms ``losses(batch)`` and steps on their sum. Every group's learning rate follows
    :func:`~selfsight.nn.schedules.warmup_cosine` from the rate it had at the start: linear
    warm-up over the first ``warmup`` fraction of training, then cosine to 0, where the
    fraction done is the larger of steps/``steps`` and seconds/``time_budget``.

    ``grad_clip``: clip the gradients' global norm to this. ``autocast_on``: compute the losses
    under autocast at the current precision on this device (None: as the tensors are).
    ``images_per_step``: show images/s on the bar. Returns one record per step: ``loss`` (the
    sum) and every term, as floats.
    """
    if steps is None and time_budget is None:
        raise ValueError("train_steps needs steps or a time_budget")
    draw = batches if callable(batches) else iter(batches).__next__
    base_lrs = [group["lr"] for group in optimizer.param_groups]
    params = [p for group in optimizer.param_groups for p in group["params"]]
    step_limit = math.inf if steps is None else steps
    budget = math.inf if time_budget is None else time_budget
    by_time = steps is None  # then the bar counts seconds, since the step count is unknown
    bar = tqdm(total=round(budget) if by_time else steps, unit="s" if by_time else "step",
               desc=desc, disable=not progress)
    history: list[dict[str, float]] = []
    step, start = 0, time.perf_counter()
    while step < step_limit and (elapsed := time.perf_counter() - start) < budget:
        batch = draw()
        scale = warmup_cosine(max(step / step_limit, elapsed / budget), 1.0, warmup)
        for group, base in zip(optimizer.param_groups, base_lrs):
            group["lr"] = base * scale
        precision = autocast(autocast_on) if autocast_on is not None else contextlib.nullcontext()
        with precision:
            terms = losses(batch)
            loss = sum(terms.values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        optimizer.step()
        step += 1
        history.append({"loss": loss.item(), **{k: v.item() for k, v in terms.items()}})
        bar.update(round(time.perf_counter() - start) - bar.n if by_time else 1)
        bar.set_postfix(_postfix(history[-1]["loss"], step, images_per_step, start))
    bar.close()
    return history


def _postfix(loss: float, step: int, images_per_step: int | None, start: float
             ) -> dict[str, Any]:
    shown: dict[str, Any] = {"loss": f"{loss:.3f}"}
    if images_per_step:
        seconds = max(time.perf_counter() - start, 1e-9)
        shown["img_s"] = f"{step * images_per_step / seconds:.1f}"
    return shown
