"""Accuracy under image corruptions at five severities, after ImageNet-C (Hendrycks &
Dietterich, 2019): Gaussian noise, Gaussian blur, brightness and contrast, with strengths scaled
for images of any size."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torchvision.transforms.v2 import functional as TF
from tqdm.auto import tqdm

from selfsight.errors import UserError

# Severity 1..5 parameters. Noise std and brightness shift are in [0, 1] intensity units (as
# ImageNet-C); contrast keeps that fraction of the deviation from the image mean; blur sigma is
# in pixels of a 28-px image and scales with the image size.
SEVERITIES = {
    "gaussian_noise": (0.04, 0.08, 0.12, 0.18, 0.26),
    "gaussian_blur": (0.4, 0.6, 0.8, 1.0, 1.3),
    "brightness": (0.1, 0.2, 0.3, 0.4, 0.5),
    "contrast": (0.4, 0.3, 0.2, 0.1, 0.05),
}


def corrupt(images: np.ndarray, name: str, severity: int, seed: int = 0) -> np.ndarray:
    """uint8 (N, H, W, C) -> the same images corrupted by ``name`` at ``severity`` (1..5)."""
    if name not in SEVERITIES:
        raise UserError(f"unknown corruption '{name}'; choose from {sorted(SEVERITIES)}")
    if not 1 <= severity <= 5:
        raise UserError(f"severity must be 1..5, got {severity}")
    c = SEVERITIES[name][severity - 1]
    x = torch.from_numpy(np.array(images)).permute(0, 3, 1, 2).float() / 255  # (N, C, H, W)
    if name == "gaussian_noise":
        gen = torch.Generator().manual_seed(seed)
        x = x + c * torch.randn(x.shape, generator=gen)
    elif name == "gaussian_blur":
        sigma = c * x.shape[-1] / 28
        size = 2 * int(np.ceil(3 * sigma)) + 1
        x = TF.gaussian_blur(x, [size, size], [sigma, sigma])
    elif name == "brightness":
        x = x + c
    else:
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * c + mean
    return (x.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()


def corruption_accuracy(
    classify: Callable[[np.ndarray], np.ndarray],
    images: np.ndarray,
    labels: np.ndarray,
    severities: tuple[int, ...] = (1, 2, 3, 4, 5),
    names: tuple[str, ...] = tuple(SEVERITIES),
    progress: bool = False,
) -> dict:
    """Top-1 of ``classify`` (uint8 images -> predicted labels) on clean and corrupted images."""
    def acc(x: np.ndarray) -> float:
        return round(float((classify(x) == labels).mean()), 4)

    passes = [(n, s) for n in names for s in severities]
    bar = tqdm(passes, desc=f"robustness ({len(images):,} images)", unit="pass",
               disable=not progress)
    scores = {}
    for name, severity in bar:
        bar.set_postfix_str(f"{name.replace('_', ' ')} {severity}")
        scores[name, severity] = acc(corrupt(images, name, severity))
    corruptions = {n: [scores[n, s] for s in severities] for n in names}
    return {"clean": acc(images), "severities": list(severities), "corruptions": corruptions,
            "mean_corrupted": round(float(np.mean(list(corruptions.values()))), 4)}
