"""A view recipe (typed config) and the module that applies it to a uint8 batch."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
from torch import nn

from selfsight.config import config_from_dict
from selfsight.views import ops


@dataclass
class ViewConfig:
    """One augmentation recipe; defaults are SimCLR's (Chen et al., 2020, appendix A)."""

    size: int = 224
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    jitter_p: float = 0.8
    brightness: float = 0.8
    contrast: float = 0.8
    saturation: float = 0.8
    hue: float = 0.2
    grayscale_p: float = 0.2
    blur_p: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    solarize_p: float = 0.0


@dataclass
class MultiViewConfig:
    """Several view recipes applied to the same images (e.g. 2 global + N local crops)."""

    views: list[ViewConfig] = field(default_factory=lambda: [ViewConfig(), ViewConfig()])

    def to_dict(self) -> dict:
        return asdict(self)

    def fitted_to(self, multiple: int) -> MultiViewConfig:
        """The same recipe with every view size rounded to the nearest multiple of ``multiple``
        (at least one): a ViT cuts each view into whole patches, so a derived size such as
        DINO's local crops (96/224 of the global size) must land on the patch grid."""
        if multiple <= 1:
            return self
        return MultiViewConfig(views=[
            replace(v, size=max(multiple, round(v.size / multiple) * multiple))
            for v in self.views])

    def with_options(self, options: dict[str, Any] | None) -> MultiViewConfig:
        """The same recipe with ``options`` (ViewConfig fields, checked and typed) set on every
        view, e.g. ``scale=(0.4, 1)`` from ``--view-set``."""
        if not options:
            return self
        return MultiViewConfig(views=[
            replace(v, **vars(config_from_dict(ViewConfig, {**vars(v), **options},
                                               "view options")))
            for v in self.views])


class ViewPipeline(nn.Module):
    """uint8 (B, C, H, W) -> list of float views (B, C, s, s), normalised.

    Runs wherever its input lives (the training device), drawing every random parameter from the
    generator it is given, so a step's views are a pure function of (images, seed).
    """

    def __init__(
        self, config: MultiViewConfig, mean: tuple[float, ...], std: tuple[float, ...]
    ) -> None:
        super().__init__()
        self.config = config
        self.mean, self.std = mean, std

    def forward(self, images: torch.Tensor, gen: torch.Generator) -> list[torch.Tensor]:
        if images.dtype != torch.uint8:
            raise TypeError(f"views expect uint8 images, got {images.dtype}")
        x = images.float().div_(255)  # (B, C, H, W)
        return [self.apply_one(x, view, gen) for view in self.config.views]

    def apply_one(self, x: torch.Tensor, v: ViewConfig, gen: torch.Generator) -> torch.Tensor:
        x = ops.resized_crop_flip(x, v.size, v.scale, v.ratio, v.flip_p, gen)
        if v.jitter_p > 0:
            x = ops.color_jitter(x, v.brightness, v.contrast, v.saturation, v.hue, v.jitter_p, gen)
        x = ops.random_grayscale(x, v.grayscale_p, gen)
        if v.blur_p > 0:
            x = ops.gaussian_blur(x, v.blur_sigma, v.blur_p, gen)
        x = ops.solarize(x, v.solarize_p, gen)
        return ops.normalize(x, self.mean, self.std)
