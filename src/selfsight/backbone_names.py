"""The backbone catalogue: recommended names, selfsight's aliases for timm models with options,
and the options ``--backbone-set`` takes. Plain data without torch, so ``selfsight list
backbones`` answers at once; :mod:`selfsight.backbones` builds the models."""

from __future__ import annotations

from typing import Any

# Names we test and recommend; any other timm name works too.
RECOMMENDED = {
    "resnet18": "ResNet-18 (He et al., 2016): the usual small SSL backbone, 11 M parameters",
    "resnet50": "ResNet-50 (He et al., 2016): the standard SSL benchmark backbone",
    "vit_tiny_patch16_224": "ViT-Tiny (Dosovitskiy et al., 2021): tokens for DINO/MAE",
    "vit_small_patch16_224": "ViT-Small: the DINO reference backbone",
    "convnext_atto": "ConvNeXt-Atto (Liu et al., 2022): a small modern CNN",
    "resnet18_cpu": "ResNet-18 at half width (32-256 channels) with a 3x3 stride-2 stem: about "
                    "9x faster than resnet18 on 28-px images",
    "resnet18_cpu_quarter": "ResNet-18 with quarter-width stages (16-128), 3x3 stride-2 stem: "
                            "2.5x faster again than resnet18_cpu",
    "resnet18_cpu_tiny": "resnet18_cpu_quarter with a 16-channel stem instead of 64: 1.15x faster "
                         "at the same kNN",
    "resnet10_cpu": "ResNet-10 (one block per stage), 16-32-64-256 channels, 16-channel stride-2 "
                    "stem: a 256-wide feature at resnet18_cpu_tiny's speed; the CPU default for "
                    "small images",
}

# selfsight names for a timm model plus options, resolved before building (saved resolved).
ALIASES: dict[str, tuple[str, dict[str, Any]]] = {
    "resnet18_cpu": ("resnet18", {"stem_stride": 2, "channels": (32, 64, 128, 256)}),
    "resnet18_cpu_quarter": ("resnet18", {"stem_stride": 2, "channels": (16, 32, 64, 128)}),
    "resnet18_cpu_tiny": ("resnet18", {"stem_stride": 2, "stem_width": 16,
                                       "channels": (16, 32, 64, 128)}),
    # Width in the last stage is what self-supervised features gain most from (Kolesnikov et
    # al., 2019); at 20 px that stage runs on a 2x2 map, so one block per stage pays for it.
    "resnet10_cpu": ("resnet18", {"stem_stride": 2, "stem_width": 16, "layers": (1, 1, 1, 1),
                                  "channels": (16, 32, 64, 256)}),
}


def resolve_alias(name: str, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    """(timm name, options) for a selfsight alias; user options win over the alias's."""
    base, defaults = ALIASES.get(name, (name, {}))
    return base, {**defaults, **(options or {})}


# What --backbone-set sets besides timm's own keyword arguments (`selfsight list backbones`).
OPTIONS = {
    "small_stem": "true/false: the 3x3 stem without max-pool (default: on at 64 px or less)",
    "stem_stride": "1 or 2: the small stem's stride",
    "stem_width": "channels of the small stem (ResNets; default: the model's own)",
    "patch_size": "ViT patch size (default: chosen from the image size)",
    "mean": "per-channel input mean (default: ImageNet's; their average for one channel)",
    "std": "per-channel input standard deviation",
    "standardize": "true: each image to zero mean, unit variance before the stem, so global "
                   "brightness and contrast changes do not move the features",
}


def list_backbones() -> dict[str, str]:
    from selfsight.signals.names import SIGNAL_BACKBONES

    return {**RECOMMENDED, **{name: f"signals: {text}" for name, text in SIGNAL_BACKBONES.items()}}
