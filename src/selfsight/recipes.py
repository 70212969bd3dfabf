"""Recipes: the settings that change with the image size, as data.

A method's Config holds its paper's defaults, which assume ImageNet-sized images and long runs.
Small images (<= 64 px: Fashion-MNIST, CIFAR) trained on a short budget measured better with
other settings: narrower heads (a wide head costs more than a small backbone), higher learning
rates, fewer crops. Each recipe here lists those settings for one size class with why, so
``selfsight list recipes`` can show them and a method file holds no size branches. A method
without a recipe keeps its Config's defaults at every size.

Torch-free on purpose: the command line lists recipes without loading torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SMALL_IMAGE = 64  # px; images up to this side are "small" (28-px Fashion-MNIST, 32-px CIFAR)
SIZE_CLASSES = ("small", "large")
BACKBONE_FAMILIES = ("cnn", "vit")


def size_class(image_size: int) -> str:
    """The size class of ``image_size``-px images: small up to SMALL_IMAGE px a side."""
    return "small" if image_size <= SMALL_IMAGE else "large"


@dataclass(frozen=True)
class Recipe:
    """Settings that replace defaults for images of one size class."""

    name: str  # a registered method (Config fields) or a view preset (its arguments)
    size: str  # one of SIZE_CLASSES
    settings: Mapping[str, Any]
    why: str  # the measurement or reason behind the settings
    backbone: str | None = None  # "cnn" or "vit": only for that backbone family; None: any

    def applies(self, image_size: int, vit: bool) -> bool:
        family = "vit" if vit else "cnn"
        return self.size == size_class(image_size) and self.backbone in (None, family)


METHOD_RECIPES: tuple[Recipe, ...] = (
    Recipe("simclr", "small",
           {"lr": 1.5, "weight_decay": 1e-4, "temperature": 0.1, "proj_hidden_dim": 512},
           "measured at a 10-minute CPU budget on Fashion-MNIST: weight decay 1e-4 kNN +0.5 "
           "over the paper's 1e-6, LARS lr 1.5 +0.25 more; on a CPU without native bf16 (fp32) "
           "temperature 0.1 +0.5 over 0.2, and a 512-wide projector runs 1.37x the images/s of "
           "a 2048-wide one (more epochs)"),
    Recipe("byol", "small", {"proj_hidden_dim": 1024, "lr": 1.0, "weight_decay": 1e-4},
           "heads cost more than a small backbone; LARS lr 1.0 as solo-learn's CIFAR recipe, "
           "weight decay 1e-4 as SimCLR's: measured at 600 s, kNN 0.809 with the paper's lr "
           "0.2, 0.823 with lr 1.0, 0.833 with both changes", backbone="cnn"),
    Recipe("mocov3", "small",
           {"proj_hidden_dim": 512, "pred_hidden_dim": 512, "weight_decay": 1e-4, "lr": 1.5},
           "4096-wide heads cost more than a small backbone; measured at 600 s on Fashion-MNIST "
           "(kNN k=200): weight decay 1e-4 0.825 against 0.820 with 1e-6; LARS lr 1.0 "
           "0.828-0.829 against 0.825 with 0.6, and on resnet10_cpu lr 1.5 0.834 against "
           "0.828; 512-wide heads 0.829 at 1.1x the images/s of 1024-wide ones "
           "(resnet18_cpu_tiny)", backbone="cnn"),
    Recipe("dino", "small",
           {"out_dim": 1024, "hidden_dim": 512, "ema_momentum": 0.99, "lr": 1.0,
            "weight_decay": 1e-4},
           "measured at 600 s on Fashion-MNIST, resnet18_cpu_tiny (kNN k=200): a 512-wide head "
           "with 1,024 prototypes trains 1.3x faster than 1,024 / 4,096 and reaches 0.824 "
           "against 0.817; LARS lr 1.0 and weight decay 1e-4 0.817 against 0.813",
           backbone="cnn"),
    Recipe("dino", "small",
           {"out_dim": 4096, "hidden_dim": 1024, "ema_momentum": 0.99, "ema_momentum_end": 0.99,
            "teacher_temp": 0.04, "head_batch_norm": True, "final_lr_ratio": 1.0,
            "freeze_last_layer": 3.0},
           "measured on Fashion-MNIST, 4-block ViT-Tiny with 4-px patches, batch 128, one "
           "thread (kNN k=200 on 10,000 / 2,000 images; untrained 0.464): the paper's teacher "
           "temperature ramp to 0.07 keeps the loss at ln 4096 (8.15 after 100 steps, kNN "
           "0.371); a constant 0.04, a constant teacher momentum and learning rate leave it "
           "(6.53) but kNN falls to 0.377; with batch norm in the head's MLP and 16-px global "
           "crops (views recipe) 300 steps reach loss 3.69 and kNN 0.532; 480 s at batch 512: "
           "loss 5.69, kNN 0.570 on the full test set against 0.528 after 5 s; with the "
           "prototypes frozen for 3 epochs instead of 1 the loss no longer rises when they "
           "unfreeze: 2.88, kNN 0.565 against 0.513 after 5 s",
           backbone="vit"),
    Recipe("mae", "small",
           {"lr": 1e-3, "decoder_dim": 128, "decoder_depth": 2, "decoder_heads": 4},
           "a 2-block decoder and a higher learning rate for short runs"),
    *(Recipe(name, "small", {"proj_hidden_dim": 1024, "proj_dim": 1024},
             "an 8192-wide projector costs more than a small backbone")
      for name in ("barlowtwins", "vicreg")),
    Recipe("globallocal", "small", {"proj_hidden_dim": 1024, "pred_hidden_dim": 1024},
           "wide heads cost more than a small backbone"),
)

VIEW_RECIPES: tuple[Recipe, ...] = (
    # "simclr": fields of the base view every preset starts from (views.presets.simclr_view)
    Recipe("simclr", "small",
           {"scale": (0.2, 1.0), "blur_p": 0.0, "brightness": 0.4, "contrast": 0.4,
            "saturation": 0.4, "hue": 0.1},
           "SimCLR's CIFAR recipe: no blur (at 28-32 px a 10%-of-side kernel mostly erases the "
           "object) and colour jitter of strength 0.5; crops below ~20% of a 28-px item leave "
           "a few texture pixels that carry no identity"),
    # "dino": arguments of views.presets.multicrop_views for DINO
    Recipe("dino", "small", {"n_local": 0, "global_scale": (0.25, 1.0)},
           "two global crops only, as solo-learn's CIFAR recipe: on a CPU budget four local "
           "crops cost two thirds of the throughput (measured at 600 s: kNN 0.813 with two "
           "crops against 0.792 with 2 + 4 locals at half size, scale 0.1-0.25)"),
    Recipe("dino", "small", {"global_size_ratio": 4 / 7},
           "ViTs: global crops at 4/7 of the image (16 px of 28: 16 patch tokens instead of "
           "49) run 2.4x the images/s; evaluated at the full size (measured with the dino "
           "method recipe above)", backbone="vit"),
)


def _settings(recipes: tuple[Recipe, ...], name: str, image_size: int,
              vit: bool) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for entry in recipes:
        if entry.name == name and entry.applies(image_size, vit):
            found.update(entry.settings)
    return found


def recipe(method: str, image_size: int, vit: bool = False) -> dict[str, Any]:
    """The Config settings ``method`` takes at ``image_size`` px on a ViT (``vit``) or CNN
    backbone; empty where its defaults hold."""
    return _settings(METHOD_RECIPES, method, image_size, vit)


def view_recipe(preset: str, image_size: int, vit: bool = False) -> dict[str, Any]:
    """The settings of the view preset ``preset`` at ``image_size`` px for a ViT (``vit``) or
    CNN backbone; empty: its defaults."""
    return _settings(VIEW_RECIPES, preset, image_size, vit)


def recipe_rows() -> list[tuple[str, str, str, str]]:
    """(name, size class, "key=value, ...", why) per recipe, for ``selfsight list recipes``.
    View recipes are named "<preset> views"; a recipe for one backbone family names it after
    the size class, e.g. "small (cnn)"."""
    rows = []
    for recipes, suffix in ((METHOD_RECIPES, ""), (VIEW_RECIPES, " views")):
        for entry in recipes:
            size = f"{entry.size} ({entry.backbone})" if entry.backbone else entry.size
            settings = ", ".join(f"{key}={value}" for key, value in entry.settings.items())
            rows.append((entry.name + suffix, size, settings, entry.why))
    return rows


__all__ = ["BACKBONE_FAMILIES", "METHOD_RECIPES", "SIZE_CLASSES", "SMALL_IMAGE",
           "VIEW_RECIPES", "Recipe", "recipe", "recipe_rows", "size_class", "view_recipe"]
