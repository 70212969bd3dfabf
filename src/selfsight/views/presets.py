"""Named view recipes per method, scaled to the image size.

Small images (<= 64 px, e.g. Fashion-MNIST, CIFAR) drop the blur, as SimCLR's CIFAR recipe does:
at 28-32 px a 10%-of-side kernel mostly erases the object.
"""

from __future__ import annotations

from dataclasses import replace

from selfsight.views.pipeline import MultiViewConfig, ViewConfig

SMALL_IMAGE = 64


def simclr_view(size: int) -> ViewConfig:
    """SimCLR (Chen et al., 2020): crop, flip, strong jitter, grayscale, blur (large images)."""
    view = ViewConfig(size=size)
    if size <= SMALL_IMAGE:
        # Crops below ~20% of a 28-px item leave a few texture pixels that carry no identity.
        view = replace(view, scale=(0.2, 1.0), blur_p=0.0, brightness=0.4, contrast=0.4,
                       saturation=0.4, hue=0.1)
    return view


def simclr_views(size: int) -> MultiViewConfig:
    return MultiViewConfig(views=[simclr_view(size), simclr_view(size)])


def byol_views(size: int) -> MultiViewConfig:
    """BYOL (Grill et al., 2020): asymmetric blur (1.0 / 0.1) and solarize (0 / 0.2)."""
    base = simclr_view(size)
    small = size <= SMALL_IMAGE
    first = replace(base, blur_p=0.0 if small else 1.0)
    second = replace(base, blur_p=0.0 if small else 0.1, solarize_p=0.2)
    return MultiViewConfig(views=[first, second])


def multicrop_views(size: int, local_size: int, n_local: int,
                    global_scale: tuple[float, float] = (0.4, 1.0),
                    local_scale: tuple[float, float] = (0.05, 0.4)) -> MultiViewConfig:
    """Multi-crop (Caron et al., 2020): two global views and ``n_local`` small local views."""
    glob = replace(simclr_view(size), scale=global_scale)
    local = replace(simclr_view(local_size), size=local_size, scale=local_scale)
    return MultiViewConfig(views=[glob, glob] + [local] * n_local)
