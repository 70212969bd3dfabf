"""Named view recipes per method, scaled to the image size.

What changes for small images (e.g. no blur at 28-32 px) is data in ``selfsight.recipes``.
"""

from __future__ import annotations

from dataclasses import replace

from selfsight.recipes import view_recipe
from selfsight.views.pipeline import MultiViewConfig, ViewConfig


def simclr_view(size: int) -> ViewConfig:
    """SimCLR (Chen et al., 2020): crop, flip, strong jitter, grayscale, blur; the base view of
    every preset, with the "simclr" view recipe for the size on top."""
    return replace(ViewConfig(size=size), **view_recipe("simclr", size))


def simclr_views(size: int) -> MultiViewConfig:
    return MultiViewConfig(views=[simclr_view(size), simclr_view(size)])


def byol_views(size: int) -> MultiViewConfig:
    """BYOL (Grill et al., 2020): asymmetric blur (1.0 / 0.1, where the base view blurs at all)
    and solarize (0 / 0.2)."""
    base = simclr_view(size)
    first_blur, second_blur = (1.0, 0.1) if base.blur_p else (0.0, 0.0)
    first = replace(base, blur_p=first_blur)
    second = replace(base, blur_p=second_blur, solarize_p=0.2)
    return MultiViewConfig(views=[first, second])


def multicrop_views(size: int, local_size: int | None = None, n_local: int = 6,
                    global_scale: tuple[float, float] = (0.4, 1.0),
                    local_scale: tuple[float, float] = (0.05, 0.4),
                    global_size_ratio: float = 1.0) -> MultiViewConfig:
    """Multi-crop (Caron et al., 2020): two global views and ``n_local`` small local views,
    by default DINO's six of 96 px at 224 (``local_size`` None: 96/224 of ``size``). The global
    views are ``global_size_ratio`` of ``size`` (training below the test resolution, Touvron et
    al., 2019)."""
    local_size = 96 * size // 224 if local_size is None else local_size
    glob = replace(simclr_view(size), size=max(1, round(size * global_size_ratio)),
                   scale=global_scale)
    local = replace(simclr_view(local_size), size=local_size, scale=local_scale)
    return MultiViewConfig(views=[glob, glob] + [local] * n_local)
