"""Pretraining defaults that suit the device and the data, each printed with its reason.

On a CPU a few minutes must count: a one-block-per-stage ResNet-10 (``resnet10_cpu``) trains at
several times the images/s of a full ResNet-18 and reaches a higher kNN accuracy within a
10-minute budget (BENCHMARKS.md, section 1); on a GPU the full ResNet-18 is cheap. A folder of a
few hundred images gets a batch small enough for several steps per epoch.
"""

from __future__ import annotations

import sys

import torch

CPU_BACKBONE, GPU_BACKBONE = "resnet10_cpu", "resnet18"
VIT_BACKBONE = "vit_tiny_patch16_224"  # for methods that need patch tokens (MAE)
CPU_BATCH, GPU_BATCH = 512, 256
MIN_STEPS_PER_EPOCH = 4  # a smaller folder halves the batch until it has this many steps
MIN_BATCH = 8
DEFAULT_EPOCHS = 100
# With a time budget the schedules follow the clock (Method.progress), so epochs only cap the
# run: a small folder must not stop at 100 epochs of a few steps long before its budget.
EPOCHS_UNDER_A_BUDGET = 1_000_000


def choose_backbone(requested: str, device: torch.device, vit: bool = False) -> str:
    if requested != "auto":
        return requested
    if vit:
        _say(f"backbone: {VIT_BACKBONE} (auto: the method needs a ViT)")
        return VIT_BACKBONE
    name = GPU_BACKBONE if device.type == "cuda" else CPU_BACKBONE
    _say(f"backbone: {name} (auto on {device.type}: "
         + ("the full ResNet-18" if device.type == "cuda" else
            "the ResNet-10 that learns most per CPU minute; --backbone resnet18 for the full "
            "network") + ")")
    return name


def choose_batch_size(requested: int | None, device: torch.device, images: int) -> int:
    """``requested``, or the device's default halved until a folder of ``images`` gives at
    least MIN_STEPS_PER_EPOCH steps per epoch (never below MIN_BATCH, nor above ``images``)."""
    if requested is not None:
        return requested
    batch = GPU_BATCH if device.type == "cuda" else CPU_BATCH
    full = batch
    while batch > MIN_BATCH and batch * MIN_STEPS_PER_EPOCH > images:
        batch //= 2
    batch = max(min(batch, images), 2)
    reason = (f"the {device.type} default" if batch == full else
              f"{images} images: at least {MIN_STEPS_PER_EPOCH} steps per epoch")
    _say(f"batch size: {batch} (auto: {reason}; --batch-size to override)")
    return batch


def choose_epochs(requested: int | None, time_budget: float | None) -> int:
    """``requested``, else 100, or with a ``time_budget`` as many as the budget allows."""
    if requested is not None:
        return requested
    if time_budget is None:
        return DEFAULT_EPOCHS
    _say(f"epochs: as many as --time-budget {time_budget:g} s allows (auto; --epochs to cap)")
    return EPOCHS_UNDER_A_BUDGET


def _say(line: str) -> None:
    print(line, file=sys.stderr)
