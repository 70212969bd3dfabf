"""Masked reconstruction of signals (Zerveas et al., 2021, "A Transformer-based Framework for
Multivariate Time Series Representation Learning"; SimMIM, Xie et al., 2022, for convolutional
backbones): random spans of each channel are hidden (set to the channel's training mean, 0 once
standardised), the backbone reads the masked series, and a linear decoder on its per-time-step
feature map predicts the standardised series; the loss is the squared error on the hidden
steps only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from selfsight.errors import UserError
from selfsight.losses import masked_reconstruction
from selfsight.methods.base import Method, MethodConfig
from selfsight.methods.registry import register_method
from selfsight.signals.names import is_signal_backbone


@dataclass
class MaskedSignalConfig(MethodConfig):
    optimizer: str = "adamw"  # TST trains with Adam
    lr: float = 4e-3  # per 256 series: 5e-4 at a batch of 32
    weight_decay: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    # TST hides 0.15 in spans of 3 steps; longer spans here, so that a convolution at full
    # resolution cannot fill a gap from its neighbours alone (SimMIM found larger masked
    # regions learn better). Not tuned.
    mask_ratio: float = 0.3
    mean_span: float = 8.0  # mean length of a hidden span, in steps

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.mask_ratio < 1:
            raise UserError(f"masked: mask_ratio must be in (0, 1), got {self.mask_ratio}")
        if not 1 <= self.mean_span < float("inf"):
            raise UserError(f"masked: mean_span must be >= 1 step, got {self.mean_span}")


def span_mask(rows: int, length: int, ratio: float, mean_span: float,
              gen: torch.Generator, device: torch.device | str = "cpu") -> torch.Tensor:
    """(rows, length) bool, True where hidden: TST's masks, alternating hidden and visible spans
    of geometric lengths with means ``mean_span`` and ``mean_span * (1 - ratio) / ratio``, so
    about ``ratio`` of the steps are hidden; each row starts hidden with probability ``ratio``."""
    means = torch.tensor([mean_span, mean_span * (1 - ratio) / ratio], device=device)
    starts_hidden = torch.rand(rows, 1, generator=gen, device=device) < ratio
    # Span k is hidden when k is even and the row starts hidden, or odd and it does not.
    kind = (torch.arange(length, device=device) + (~starts_hidden).long()) % 2  # 0: hidden
    u = torch.rand(rows, length, generator=gen, device=device).clamp_min(1e-12)
    p = 1 / means[kind].clamp_min(1.0)  # success probability of each span's geometric law
    spans = torch.floor(torch.log(u) / torch.log1p(-p).clamp_max(-1e-12)) + 1  # >= 1
    ends = torch.cumsum(spans, dim=1)  # (rows, length): one span at least per step
    steps = torch.arange(length, device=device, dtype=ends.dtype).expand(rows, -1).contiguous()
    span_of_step = torch.searchsorted(ends, steps, right=True)
    return torch.gather(kind, 1, span_of_step) == 0


def token_span(backbone: nn.Module) -> tuple[int, int]:
    """(steps each token of the last map reads, steps between tokens): a PatchTST token reads
    a patch every stride; the convolutional backbones keep one token per step."""
    embed = backbone.model.stages[0]
    return (embed.patch, embed.stride) if hasattr(embed, "patch") else (1, 1)


@register_method
class MaskedSignal(Method):
    name = "masked"
    description = ("Masked reconstruction (Zerveas et al., 2021; SimMIM, Xie et al., 2022): "
                   "hide spans of time steps, predict them; signals only")
    Config = MaskedSignalConfig
    signals_only = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cfg = self.backbone.config
        if not is_signal_backbone(cfg.name):
            raise UserError(f"masked reconstructs signals; '{cfg.name}' is an image backbone")
        self.kernel, self.stride = token_span(self.backbone)
        # SimMIM: a one-layer prediction head, so the encoder's map must hold the signal.
        self.decoder = nn.Conv1d(self.backbone.dim, cfg.in_chans * self.kernel, 1)
        self.register_buffer("mean", torch.tensor(cfg.mean).view(1, -1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(cfg.std).view(1, -1, 1), persistent=False)

    def reconstruct(self, masked: torch.Tensor, length: int) -> torch.Tensor:
        """Raw (B, C, L) series with hidden steps at the mean -> standardised (B, C, L)."""
        tokens = self.backbone.features(masked, tokens=True)["tokens"].flatten(2)  # (B, D, N)
        pred = self.decoder(tokens).float()  # (B, C * kernel, N)
        if self.kernel == 1:
            return pred[..., :length]
        # Each token predicts the patch it read; overlapping patches are averaged.
        covered = (pred.shape[-1] - 1) * self.stride + self.kernel
        fold = dict(output_size=(1, covered), kernel_size=(1, self.kernel),
                    stride=(1, self.stride))
        summed = F.fold(pred, **fold)
        counts = F.fold(torch.ones_like(pred[:1]), **fold)
        return (summed / counts).flatten(2)[..., :length]

    def compute_loss(self, views: list[torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        x = views[0].float().flatten(2)  # (B, C, 1, L) -> (B, C, L), raw
        b, c, length = x.shape
        hidden = span_mask(b * c, length, self.config.mask_ratio, self.config.mean_span,
                           self.step_generator(stream=1), x.device).view(b, c, length)
        mean = self.mean.to(x.dtype)
        pred = self.reconstruct(torch.where(hidden, mean, x), length)
        target = (x - mean) / self.std
        loss = masked_reconstruction(pred.reshape(b, -1, 1), target.reshape(b, -1, 1),
                                     hidden.reshape(b, -1).float(), norm_pix=False)
        return loss, {"masked_fraction": float(hidden.float().mean())}


__all__ = ["MaskedSignal", "MaskedSignalConfig", "span_mask", "token_span"]
