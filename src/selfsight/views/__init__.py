"""Batched, device-side augmentations on uint8 batches."""

from selfsight.views.pipeline import MultiViewConfig, ViewConfig, ViewPipeline
from selfsight.views.presets import byol_views, multicrop_views, simclr_views

__all__ = ["MultiViewConfig", "ViewConfig", "ViewPipeline", "byol_views", "multicrop_views",
           "simclr_views"]
