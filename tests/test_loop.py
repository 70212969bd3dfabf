"""The small-model training loop: it learns a real (tiny) problem, its learning rate warms up
linearly then follows a cosine to 0, and it stops on steps, on time, and clips when asked."""

from __future__ import annotations

import math
from itertools import pairwise

import pytest
import torch

from selfsight.train.loop import train_steps


def two_gaussians(n: int = 256, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two Gaussian classes in 2-d that a linear classifier separates well but not at once."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=gen)
    x = torch.randn(n, 2, generator=gen) + torch.stack([y * 3.0 - 1.5, y * 1.0], 1)
    return x, y


def test_the_loop_learns_a_linear_classifier_from_batches_of_an_iterator() -> None:
    torch.manual_seed(0)
    x, y = two_gaussians()
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)

    def batches():
        gen = torch.Generator().manual_seed(1)
        while True:
            idx = torch.randint(0, len(x), (32,), generator=gen)
            yield x[idx], y[idx]

    history = train_steps(optimizer, batches(),
                          lambda b: {"ce": torch.nn.functional.cross_entropy(model(b[0]), b[1])},
                          60, warmup=0.1, progress=False)
    assert len(history) == 60
    assert set(history[0]) == {"loss", "ce"} and history[0]["loss"] == history[0]["ce"]
    first = sum(r["loss"] for r in history[:5]) / 5
    last = sum(r["loss"] for r in history[-5:]) / 5
    assert last < 0.5 * first
    accuracy = (model(x).argmax(1) == y).float().mean().item()
    assert accuracy > 0.9


def test_learning_rate_warms_up_linearly_then_follows_a_cosine_to_zero() -> None:
    steps, warmup, base = 40, 0.25, 0.2
    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([{"params": [weight]}, {"params": [], "lr": base / 10}], lr=base)
    seen: list[tuple[float, float]] = []

    def loss(_: None) -> dict[str, torch.Tensor]:
        seen.append((optimizer.param_groups[0]["lr"], optimizer.param_groups[1]["lr"]))
        return {"quadratic": (weight - 1.0).pow(2).sum()}

    train_steps(optimizer, lambda: None, loss, steps, warmup=warmup, progress=False)
    ends = round(warmup * steps)  # the step where warm-up gives way to the cosine
    for step, (lr, small) in enumerate(seen):
        done = step / steps
        if done < warmup:
            expected = base * done / warmup
        else:
            expected = base * 0.5 * (1 + math.cos(math.pi * (done - warmup) / (1 - warmup)))
        assert lr == pytest.approx(expected, abs=1e-12)
        assert small == pytest.approx(lr / 10)  # every group keeps its own base rate
    lrs = [lr for lr, _ in seen]
    assert lrs[0] == 0.0 and lrs[ends] == pytest.approx(base)
    assert all(b > a for a, b in pairwise(lrs[:ends + 1]))  # rising
    assert all(b < a for a, b in pairwise(lrs[ends:]))  # then falling
    assert lrs[-1] < 0.01 * base


def test_a_time_budget_ends_training_without_a_step_count() -> None:
    weight = torch.nn.Parameter(torch.zeros(3))
    optimizer = torch.optim.SGD([weight], lr=0.1)
    history = train_steps(optimizer, lambda: None,
                          lambda _: {"l2": (weight - 1).pow(2).sum()}, None,
                          time_budget=0.2, progress=False)
    assert len(history) > 1
    with pytest.raises(ValueError, match="steps or a time_budget"):
        train_steps(optimizer, lambda: None, lambda _: {}, None, progress=False)


def test_gradient_clipping_bounds_each_update() -> None:
    weight = torch.nn.Parameter(torch.zeros(4))
    optimizer = torch.optim.SGD([weight], lr=1.0)
    before = weight.detach().clone()
    train_steps(optimizer, lambda: None, lambda _: {"steep": 1000.0 * (weight - 1).sum()}, 2,
                grad_clip=0.5, progress=False)
    # No warm-up: lr 1, then 0.5 halfway down the cosine; each gradient is clipped to 0.5.
    moved = (weight.detach() - before).norm().item()
    assert moved == pytest.approx(0.5 * 1.0 + 0.5 * 0.5, rel=1e-5)
