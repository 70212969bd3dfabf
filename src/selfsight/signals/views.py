"""Batched augmentations of signals on the training device, (B, C, L) float in and out.

The transformations are those of Um et al. (2017), "Data augmentation of wearable sensor data
for Parkinson's disease monitoring using convolutional neural networks": jitter, scaling,
magnitude warping, time warping, permutation of segments; plus a random crop resized back to
the full length (TS2Vec, Yue et al., 2022, contrasts overlapping crops) and channel dropout.
Every random draw comes from the generator passed in, so a step's views are a pure function of
(batch, seed), as the image views are. Magnitudes are in units of each channel's training
standard deviation: the pipeline standardises first and undoes it after, so the backbone always
sees raw signals (it standardises them itself, also outside training)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from selfsight.config import config_from_dict


@dataclass
class SignalViewConfig:
    """One augmentation recipe; 0 (or p = 0) switches a step off."""

    crop_scale: tuple[float, float] = (0.5, 1.0)  # kept fraction of the length, resized back
    jitter_sigma: float = 0.1  # additive Gaussian noise
    scale_sigma: float = 0.2  # one factor per channel, N(1, sigma)
    magnitude_warp_sigma: float = 0.2  # smooth multiplicative curve through random knots
    time_warp_sigma: float = 0.2  # smooth random speed-up and slow-down
    warp_knots: int = 4
    channel_drop_p: float = 0.1  # each channel zeroed (at its mean) with this probability
    permute_p: float = 0.0  # probability of cutting into segments and shuffling them
    max_segments: int = 5


@dataclass
class SignalViews:
    """Several recipes applied to the same batch (the methods' two views)."""

    views: list[SignalViewConfig] = field(
        default_factory=lambda: [SignalViewConfig(), SignalViewConfig()])

    def to_dict(self) -> dict:
        return {"kind": "signal", **asdict(self)}

    def with_options(self, options: dict[str, Any] | None) -> SignalViews:
        """``--view-set`` options (SignalViewConfig fields, checked and typed) on every view."""
        if not options:
            return self
        return SignalViews(views=[
            config_from_dict(SignalViewConfig, {**asdict(v), **options}, "signal view options")
            for v in self.views])


def signal_views(method: str) -> SignalViews:
    """The preset for a method: two strong views for in-batch contrast (SimCLR, MoCo); for
    methods that predict one view from the other (BYOL and the redundancy-reduction ones) a weak
    view (jitter and scaling) and a strong one (permuted segments and jitter), as TS-TCC
    (Eldele et al., 2021) pairs them. Masked reconstruction reads one view, only cropped and
    scaled: noise it cannot predict would only add to its loss."""
    strong = SignalViewConfig()
    if method in ("simclr", "mocov3"):
        return SignalViews(views=[strong, strong])
    if method == "masked":
        return SignalViews(views=[SignalViewConfig(
            crop_scale=(0.8, 1.0), jitter_sigma=0.0, magnitude_warp_sigma=0.0,
            time_warp_sigma=0.0, channel_drop_p=0.0)])
    weak = SignalViewConfig(crop_scale=(1.0, 1.0), magnitude_warp_sigma=0.0,
                            time_warp_sigma=0.0, channel_drop_p=0.0)
    return SignalViews(views=[weak, replace(strong, permute_p=0.8)])


class SignalViewPipeline(nn.Module):
    """(B, C, L) or (B, C, 1, L) float -> list of views (B, C, 1, L): the height-1 image form
    the methods and the backbone's channels-last path take."""

    def __init__(self, config: SignalViews, mean: tuple[float, ...],
                 std: tuple[float, ...]) -> None:
        super().__init__()
        self.config = config
        self.mean, self.std = mean, std

    def forward(self, signals: torch.Tensor, gen: torch.Generator) -> list[torch.Tensor]:
        x = signals.float().flatten(1, -2) if signals.ndim == 4 else signals.float()
        mean = x.new_tensor(self.mean).view(1, -1, 1)
        std = x.new_tensor(self.std).view(1, -1, 1)
        z = (x - mean) / std
        return [(augment(z, v, gen) * std + mean).unsqueeze(2) for v in self.config.views]


def augment(x: torch.Tensor, v: SignalViewConfig, gen: torch.Generator) -> torch.Tensor:
    """One recipe on a standardised batch (B, C, L)."""
    if v.crop_scale[0] < 1:
        x = crop_resize(x, v.crop_scale, gen)
    if v.time_warp_sigma > 0:
        x = time_warp(x, v.time_warp_sigma, v.warp_knots, gen)
    if v.permute_p > 0:
        x = permute_segments(x, v.max_segments, v.permute_p, gen)
    if v.magnitude_warp_sigma > 0:
        x = magnitude_warp(x, v.magnitude_warp_sigma, v.warp_knots, gen)
    if v.scale_sigma > 0:
        x = scaling(x, v.scale_sigma, gen)
    if v.jitter_sigma > 0:
        x = jitter(x, v.jitter_sigma, gen)
    if v.channel_drop_p > 0:
        x = channel_dropout(x, v.channel_drop_p, gen)
    return x


def _rand(gen: torch.Generator, *shape: int, device: torch.device) -> torch.Tensor:
    return torch.rand(shape, generator=gen, device=device)


def _randn(gen: torch.Generator, *shape: int, device: torch.device) -> torch.Tensor:
    return torch.randn(shape, generator=gen, device=device)


def _resample(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """x (B, C, L) read at fractional positions (B, L') in [0, L - 1], linearly."""
    length = x.shape[-1]
    grid_x = positions / max(length - 1, 1) * 2 - 1  # grid_sample's [-1, 1]
    grid = torch.stack([grid_x, torch.zeros_like(grid_x)], dim=-1).unsqueeze(1)  # (B, 1, L', 2)
    return F.grid_sample(x.unsqueeze(2), grid, mode="bilinear", padding_mode="border",
                         align_corners=True).squeeze(2)


def crop_resize(x: torch.Tensor, scale: tuple[float, float], gen: torch.Generator
                ) -> torch.Tensor:
    """A random window of scale[0]..scale[1] of the length, stretched back to the length."""
    b, _, length = x.shape
    frac = scale[0] + (scale[1] - scale[0]) * _rand(gen, b, device=x.device)
    start = (1 - frac) * _rand(gen, b, device=x.device)
    steps = torch.linspace(0, 1, length, device=x.device)
    positions = (start[:, None] + frac[:, None] * steps[None]) * (length - 1)
    return _resample(x, positions)


def _smooth_curves(gen: torch.Generator, rows: int, knots: int, length: int, sigma: float,
                   device: torch.device) -> torch.Tensor:
    """(rows, length) curves around 1 through ``knots + 2`` random N(1, sigma) values, cubic
    between them (Um et al. use a cubic spline)."""
    values = 1 + sigma * _randn(gen, rows, 1, knots + 2, device=device)
    return F.interpolate(values.unsqueeze(1), size=(1, length), mode="bicubic",
                         align_corners=True).view(rows, length)


def magnitude_warp(x: torch.Tensor, sigma: float, knots: int, gen: torch.Generator
                   ) -> torch.Tensor:
    b, c, length = x.shape
    curves = _smooth_curves(gen, b * c, knots, length, sigma, x.device)
    return x * curves.view(b, c, length)


def time_warp(x: torch.Tensor, sigma: float, knots: int, gen: torch.Generator) -> torch.Tensor:
    """Speeds from a smooth positive curve, integrated to a monotone map of time onto itself."""
    b, _, length = x.shape
    speed = _smooth_curves(gen, b, knots, length, sigma, x.device).clamp_min(0.1)
    cumulative = torch.cumsum(speed, dim=1)
    cumulative = (cumulative - cumulative[:, :1]) / (cumulative[:, -1:] - cumulative[:, :1])
    return _resample(x, cumulative * (length - 1))


def permute_segments(x: torch.Tensor, max_segments: int, p: float, gen: torch.Generator
                     ) -> torch.Tensor:
    """Cut each series into 2..max_segments equal segments and shuffle them, with probability
    ``p`` per series (one segment count per batch keeps it one gather)."""
    b, c, length = x.shape
    segments = int(torch.randint(2, max(max_segments, 2) + 1, (1,), generator=gen,
                                 device=x.device).item()) if max_segments >= 2 else 1
    if segments < 2 or length < segments:
        return x
    order = torch.argsort(_rand(gen, b, segments, device=x.device), dim=1)
    bounds = torch.linspace(0, length, segments + 1, device=x.device).round().long()
    sizes = bounds[1:] - bounds[:-1]  # (S,)
    new_sizes = sizes[order]  # (B, S)
    new_starts = torch.cumsum(new_sizes, dim=1) - new_sizes
    rank = torch.arange(length, device=x.device)[None].expand(b, length).contiguous()
    # Output step t lies in the k-th new segment; it reads that segment's own offset.
    k = torch.searchsorted(torch.cumsum(new_sizes, dim=1), rank, right=True).clamp_max(
        segments - 1)
    chosen = torch.gather(order, 1, k)
    offset = rank - torch.gather(new_starts, 1, k)
    source = bounds[chosen] + offset
    shuffled = torch.gather(x, 2, source.unsqueeze(1).expand(b, c, length))
    keep = _rand(gen, b, 1, 1, device=x.device) >= p
    return torch.where(keep, x, shuffled)


def scaling(x: torch.Tensor, sigma: float, gen: torch.Generator) -> torch.Tensor:
    b, c, _ = x.shape
    return x * (1 + sigma * _randn(gen, b, c, 1, device=x.device))


def jitter(x: torch.Tensor, sigma: float, gen: torch.Generator) -> torch.Tensor:
    return x + sigma * _randn(gen, *x.shape, device=x.device)


def channel_dropout(x: torch.Tensor, p: float, gen: torch.Generator) -> torch.Tensor:
    """Channels set to 0, the training mean in standardised units, so a dropped sensor reads as
    an uninformative one; with one channel nothing is dropped."""
    b, c, _ = x.shape
    if c < 2:
        return x
    keep = _rand(gen, b, c, 1, device=x.device) >= p
    return x * keep
