"""Batched image augmentations with per-sample random parameters.

Every op takes a float batch (B, C, H, W) in [0, 1] on any device plus a ``torch.Generator`` on
that device, and draws one set of parameters per sample, so a whole batch is augmented with a
handful of tensor kernels instead of B PIL calls. Grayscale input (C == 1) is first-class:
saturation and hue have no meaning there and are skipped.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

Tensor = torch.Tensor


def uniform(n: int, low: float, high: float, gen: torch.Generator, device: torch.device) -> Tensor:
    return torch.rand(n, generator=gen, device=device) * (high - low) + low


def bernoulli(n: int, p: float, gen: torch.Generator, device: torch.device) -> Tensor:
    """(n,) bool: which samples an op applies to."""
    return torch.rand(n, generator=gen, device=device) < p


def _luminance(x: Tensor) -> Tensor:
    """(B, 1, H, W) luma with the ITU-R 601 weights torchvision uses."""
    if x.shape[1] == 1:
        return x
    weights = x.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    return (x * weights).sum(1, keepdim=True)


def resized_crop_flip(
    x: Tensor,
    size: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    flip_p: float,
    gen: torch.Generator,
) -> Tensor:
    """Random resized crop and horizontal flip in one ``grid_sample`` (Szegedy et al., 2015).

    Area fraction ~ U(scale), log aspect ratio ~ U(log ratio); boxes that do not fit are shrunk to
    fit rather than redrawn (torchvision redraws up to 10 times, which costs a loop per sample).
    """
    b, device = x.shape[0], x.device
    area = uniform(b, *scale, gen, device)
    log_ratio = uniform(b, math.log(ratio[0]), math.log(ratio[1]), gen, device)
    aspect = torch.exp(log_ratio)
    # Width and height as fractions of the source side.
    w = torch.sqrt(area * aspect).clamp(max=1.0)
    h = torch.sqrt(area / aspect).clamp(max=1.0)
    cx = (torch.rand(b, generator=gen, device=device) * 2 - 1) * (1 - w)  # centre in [-1, 1]
    cy = (torch.rand(b, generator=gen, device=device) * 2 - 1) * (1 - h)
    sign = torch.where(bernoulli(b, flip_p, gen, device), -1.0, 1.0)
    theta = torch.zeros(b, 2, 3, device=device, dtype=x.dtype)
    theta[:, 0, 0] = w * sign
    theta[:, 0, 2] = cx
    theta[:, 1, 1] = h
    theta[:, 1, 2] = cy
    grid = F.affine_grid(theta, [b, x.shape[1], size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def color_jitter(
    x: Tensor,
    brightness: float,
    contrast: float,
    saturation: float,
    hue: float,
    p: float,
    gen: torch.Generator,
) -> Tensor:
    """Colour jitter as in SimCLR (Chen et al., 2020), per-sample factors, applied with prob. p.

    Order is fixed (brightness, contrast, saturation, hue) instead of SimCLR's random order: one
    fewer source of per-sample branching, and the factors are already random. Hue is a rotation
    of the chroma plane in YIQ space, the cheap batched equivalent of an HSV hue shift.
    """
    b, device = x.shape[0], x.device
    apply = bernoulli(b, p, gen, device).view(b, 1, 1, 1)
    out = x
    if brightness > 0:
        factor = uniform(b, 1 - brightness, 1 + brightness, gen, device).view(b, 1, 1, 1)
        out = out * factor
    if contrast > 0:
        factor = uniform(b, 1 - contrast, 1 + contrast, gen, device).view(b, 1, 1, 1)
        mean = _luminance(out).mean(dim=(1, 2, 3), keepdim=True)
        out = (out - mean) * factor + mean
    if x.shape[1] == 3 and saturation > 0:
        factor = uniform(b, 1 - saturation, 1 + saturation, gen, device).view(b, 1, 1, 1)
        gray = _luminance(out)
        out = (out - gray) * factor + gray
    if x.shape[1] == 3 and hue > 0:
        out = _rotate_hue(out.clamp(0, 1), uniform(b, -hue, hue, gen, device) * 2 * math.pi)
    return torch.where(apply, out.clamp(0, 1), x)


_RGB_TO_YIQ = torch.tensor(
    [[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]]
)


def _rotate_hue(x: Tensor, angle: Tensor) -> Tensor:
    """Rotate the I/Q chroma plane by ``angle`` radians per sample: (B, 3, H, W) -> same."""
    to_yiq = _RGB_TO_YIQ.to(x.device, x.dtype)
    cos, sin = torch.cos(angle), torch.sin(angle)
    rot = torch.zeros(x.shape[0], 3, 3, device=x.device, dtype=x.dtype)
    rot[:, 0, 0] = 1
    rot[:, 1, 1], rot[:, 1, 2] = cos, -sin
    rot[:, 2, 1], rot[:, 2, 2] = sin, cos
    matrix = torch.linalg.inv(to_yiq) @ rot @ to_yiq  # (B, 3, 3)
    return torch.einsum("bij,bjhw->bihw", matrix, x)


def random_grayscale(x: Tensor, p: float, gen: torch.Generator) -> Tensor:
    """Replace colour by luma with probability p; a no-op on grayscale input."""
    if x.shape[1] == 1 or p <= 0:
        return x
    apply = bernoulli(x.shape[0], p, gen, x.device).view(-1, 1, 1, 1)
    return torch.where(apply, _luminance(x).expand_as(x), x)


def gaussian_blur(
    x: Tensor, sigma: tuple[float, float], p: float, gen: torch.Generator, kernel_frac: float = 0.1
) -> Tensor:
    """Gaussian blur with a per-sample sigma, as a separable depthwise convolution.

    Kernel size is ``kernel_frac`` of the image side (SimCLR uses 10%), made odd and >= 3.
    Samples not chosen get sigma ~ 0, i.e. an identity kernel, so the batch stays one kernel call.
    """
    b, c, h, w = x.shape
    device = x.device
    k = max(3, int(kernel_frac * h) // 2 * 2 + 1)
    s = uniform(b, *sigma, gen, device)
    s = torch.where(bernoulli(b, p, gen, device), s, torch.full_like(s, 1e-3))
    offsets = torch.arange(k, device=device, dtype=x.dtype) - k // 2
    kernel = torch.exp(-(offsets.view(1, k) ** 2) / (2 * s.view(b, 1).to(x.dtype) ** 2))
    kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (B*C, k)
    flat = x.reshape(1, b * c, h, w)
    flat = F.pad(flat, (k // 2, k // 2, k // 2, k // 2), mode="reflect")
    flat = F.conv2d(flat, kernel.view(b * c, 1, 1, k), groups=b * c)
    flat = F.conv2d(flat, kernel.view(b * c, 1, k, 1), groups=b * c)
    return flat.view(b, c, h, w)


def solarize(x: Tensor, p: float, gen: torch.Generator, threshold: float = 0.5) -> Tensor:
    """Invert pixels above ``threshold`` with probability p (BYOL, Grill et al., 2020)."""
    if p <= 0:
        return x
    apply = bernoulli(x.shape[0], p, gen, x.device).view(-1, 1, 1, 1)
    return torch.where(apply & (x >= threshold), 1 - x, x)


def normalize(x: Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> Tensor:
    mean_t = x.new_tensor(mean).view(1, -1, 1, 1)
    std_t = x.new_tensor(std).view(1, -1, 1, 1)
    return (x - mean_t) / std_t


def four_rotations(x: Tensor) -> tuple[Tensor, Tensor]:
    """(B, C, H, W) -> ((4B, C, H, W), (4B,) labels): the batch turned by 0, 90, 180 and 270
    degrees (counter-clockwise), in that order; label k means k quarter turns."""
    turned = torch.cat([x.rot90(k, (2, 3)) for k in range(4)])
    labels = torch.arange(4, device=x.device).repeat_interleave(len(x))
    return turned.contiguous(memory_format=torch.channels_last), labels


def random_rotations(views: list[Tensor], generator: torch.Generator,
                     ) -> tuple[list[Tensor], Tensor]:
    """Turn image i of every (square) view by the same random k_i quarter turns; returns the
    turned views and k (B,). The views of one image keep a common orientation."""
    k = torch.randint(0, 4, (len(views[0]),), generator=generator, device=generator.device)
    k = k.to(views[0].device)
    turned = []
    for view in views:
        out = view.clone()
        for quarter in range(1, 4):
            pick = k == quarter
            out[pick] = view[pick].rot90(quarter, (2, 3))
        turned.append(out.contiguous(memory_format=torch.channels_last))
    return turned, k
