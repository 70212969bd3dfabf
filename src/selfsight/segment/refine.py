"""Patch masks to pixel masks, snapped to image edges by a guided filter (He et al., 2010/2013).

MaskCut's masks live on the coarse patch grid. Bilinear upsampling gives soft masks whose edges
fall on patch borders; the guided filter makes the soft mask locally a linear function of the
image intensity, so the 0.5 level moves onto the object's intensity edge. A cheap stand-in for
the CRF CutLER uses.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

# ITU-R BT.601 luma weights: the grayscale guide for a colour image.
LUMA = (0.299, 0.587, 0.114)


def box_mean(x: Tensor, radius: int) -> Tensor:
    """Mean over the (2r+1)^2 window around each pixel, (B, C, H, W) -> same.

    At the borders only the pixels inside the image count, as in He et al.'s reference code.
    """
    return F.avg_pool2d(x, 2 * radius + 1, stride=1, padding=radius, count_include_pad=False)


def guided_filter(guide: Tensor, src: Tensor, radius: int, eps: float) -> Tensor:
    """Guided filter (He et al., 2010/2013) of src by a grayscale guide, both (B, 1, H, W).

    The guide may also be (1, 1, H, W) and broadcast over a batch of src.

    In every window the output is a linear function a * guide + b fitted to src by ridge
    regression (eps penalises a); a and b are averaged over the windows covering each pixel.
    eps is in squared guide units (1e-2 for a guide in [0, 1]: edges weaker than ~0.1 smooth).
    A constant guide gives a = 0, so the output is box_mean(box_mean(src)).
    """
    mean_guide = box_mean(guide, radius)
    mean_src = box_mean(src, radius)
    var_guide = box_mean(guide * guide, radius) - mean_guide**2
    cov = box_mean(guide * src, radius) - mean_guide * mean_src
    slope = cov / (var_guide + eps)
    offset = mean_src - slope * mean_guide
    return box_mean(slope, radius) * guide + box_mean(offset, radius)


def upsample_masks(
    masks: np.ndarray,
    size: tuple[int, int],
    image: np.ndarray | None = None,
    refine: bool = True,
    radius: int = 2,
    eps: float = 1e-2,
) -> np.ndarray:
    """(K, h, w) bool patch masks -> (K, H, W) bool pixel masks of ``size`` = (H, W).

    Each mask is upsampled bilinearly as a float; with ``refine`` and an ``image`` (H, W) or
    (H, W, C) uint8, it is then guided-filtered with the image's grayscale in [0, 1] as guide.
    Each pixel goes to the mask with the highest soft value if that value is above 0.5, so the
    output masks are disjoint. ``radius`` is in pixels: to snap an edge up to a patch away
    from the patch border, pick about the patch size.
    """
    soft = torch.from_numpy(np.asarray(masks, dtype=np.float32))[:, None]  # (K, 1, h, w)
    if len(soft) == 0:
        return np.zeros((0, *size), dtype=bool)
    soft = F.interpolate(soft, size=size, mode="bilinear", align_corners=False)  # (K, 1, H, W)
    if refine and image is not None:
        guide = grayscale(image, size)  # (1, 1, H, W), broadcast over the masks
        soft = guided_filter(guide, soft, radius, eps)
    soft = soft[:, 0]  # (K, H, W)
    best, owner = soft.max(0)  # (H, W)
    winners = F.one_hot(owner, len(soft)).permute(2, 0, 1).bool()  # (K, H, W)
    return (winners & (best > 0.5)).numpy()


def grayscale(image: np.ndarray, size: tuple[int, int]) -> Tensor:
    """uint8 image (H, W) or (H, W, C) -> (1, 1, H, W) float guide in [0, 1]."""
    if image.shape[:2] != tuple(size):
        raise ValueError(f"image of size {image.shape[:2]} given for masks of size {tuple(size)}")
    pixels = torch.from_numpy(np.asarray(image, dtype=np.float32)) / 255
    if pixels.ndim == 3:
        weights = torch.tensor(LUMA) if pixels.shape[-1] == 3 else torch.full(
            (pixels.shape[-1],), 1 / pixels.shape[-1])
        pixels = pixels @ weights  # (H, W)
    return pixels[None, None]
