"""1-D backbones for signals behind the interface :class:`selfsight.backbones.Backbone` expects
of a timm model (``forward_features``, ``forward_head``, ``forward_intermediates``,
``feature_info``, ``num_features``), so the same Backbone, artifacts and consumers serve them.

Inputs are raw signals (B, C, L), or (B, C, 1, L) as the training views and the shared loader
carry them; the model standardises each channel with the training split's statistics saved in
the BackboneConfig (``mean``/``std``). Feature maps are returned as grids (B, D, 1, L'), so
"the last map" and "levels" mean what they mean for a CNN on images."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from selfsight.errors import BadOptionValue, UserError
from selfsight.signals.names import SIGNAL_BACKBONES

LARGEST = 16_384


class SignalModel(nn.Module):
    """Shared parts: input standardisation, pooling, levels. A subclass builds ``stages`` (each
    (B, C_i, L_i) -> (B, C_{i+1}, L_{i+1})) and may override ``pool``."""

    def __init__(self, in_chans: int, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        if len(mean) not in (1, in_chans) or len(std) not in (1, in_chans):
            raise UserError(f"signal backbone: {len(mean)} means / {len(std)} stds for "
                            f"{in_chans} channels")
        # Not saved with the weights: backbone.json holds them (BackboneConfig.mean/std).
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1), persistent=False)
        self.stages = nn.ModuleList()
        self.feature_info: list[dict[str, Any]] = []
        self.num_features = 0
        self.num_prefix_tokens = 0

    def _finish(self) -> None:
        self.num_features = int(self.feature_info[-1]["num_chs"])

    def _input(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 4 and x.shape[2] == 1:  # (B, C, 1, L): the height-1 image form
            x = x.flatten(2)
        if x.ndim != 3:
            raise UserError(f"a signal backbone takes signals (B, C, L), got {tuple(x.shape)} "
                            "(images go to an image backbone)")
        return (x.float().contiguous() - self.mean) / self.std

    def _run(self, x: torch.Tensor) -> list[torch.Tensor]:
        maps, x = [], self._input(x)
        for stage in self.stages:
            x = stage(x)
            maps.append(x)
        return maps

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x)[-1].unsqueeze(2)  # (B, D, 1, L')

    def forward_head(self, x: torch.Tensor, pre_logits: bool = True) -> torch.Tensor:
        return x.mean(dim=(2, 3))  # global average pooling over time

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(self, x: torch.Tensor, indices: int | list[int] | None = None,
                              intermediates_only: bool = True) -> list[torch.Tensor]:
        """Stage outputs as grids (B, C_i, 1, L_i): ``indices`` a list of stage indices (-1 the
        last) or an int n (the last n), as timm takes them."""
        maps = self._run(x)
        count = len(maps)
        if indices is None:
            chosen = list(range(count))
        elif isinstance(indices, int):
            chosen = list(range(count - indices, count))
        else:
            chosen = [i % count for i in indices]
        return [maps[i].unsqueeze(2) for i in chosen]


class _ResidualBlock(nn.Module):
    """Three convolutions with batch norm and a 1x1 shortcut (Wang et al.). Kernels 7-5-3
    instead of the paper's 8-5-3: an odd kernel pads "same" symmetrically, without a copy."""

    def __init__(self, cin: int, cout: int, kernels: tuple[int, ...] = (7, 5, 3)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i, k in enumerate(kernels):
            layers += [nn.Conv1d(cin if i == 0 else cout, cout, k, padding="same", bias=False),
                       nn.BatchNorm1d(cout)]
            if i < len(kernels) - 1:
                layers.append(nn.ReLU(inplace=True))
        self.body = nn.Sequential(*layers)
        self.shortcut = nn.Sequential(nn.Conv1d(cin, cout, 1, bias=False), nn.BatchNorm1d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.shortcut(x))


class ResNet1d(SignalModel):
    """The 1-D ResNet of Wang et al. (2017), "Time series classification from scratch with deep
    neural networks: a strong baseline": three residual blocks at full temporal resolution,
    64-128-128 channels, global average pooling."""

    def __init__(self, in_chans: int, mean: tuple[float, ...], std: tuple[float, ...],
                 channels: tuple[int, ...] = (64, 128, 128)) -> None:
        super().__init__(in_chans, mean, std)
        cin = in_chans
        for i, cout in enumerate(channels):
            self.stages.append(_ResidualBlock(cin, cout))
            self.feature_info.append({"num_chs": cout, "reduction": 1, "module": f"stages.{i}"})
            cin = cout
        self._finish()


class _Inception(nn.Module):
    """InceptionTime's module: a 1x1 bottleneck, three convolutions of growing kernels on it,
    and a max-pool + 1x1 branch on the input, concatenated."""

    def __init__(self, cin: int, filters: int, kernels: tuple[int, ...], bottleneck: int) -> None:
        super().__init__()
        self.bottleneck = nn.Conv1d(cin, bottleneck, 1, bias=False) if cin > 1 else nn.Identity()
        width = bottleneck if cin > 1 else cin
        self.convs = nn.ModuleList(nn.Conv1d(width, filters, k, padding="same", bias=False)
                                   for k in kernels)
        self.pool = nn.Sequential(nn.MaxPool1d(3, 1, 1), nn.Conv1d(cin, filters, 1, bias=False))
        self.norm = nn.BatchNorm1d(filters * (len(kernels) + 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.bottleneck(x)
        out = torch.cat([conv(z) for conv in self.convs] + [self.pool(x)], dim=1)
        return F.relu(self.norm(out))


class _InceptionStage(nn.Module):
    """Three Inception modules with a residual connection around them (one "stage")."""

    def __init__(self, cin: int, filters: int, kernels: tuple[int, ...], bottleneck: int) -> None:
        super().__init__()
        width = filters * (len(kernels) + 1)
        self.modules_ = nn.Sequential(*[_Inception(cin if i == 0 else width, filters, kernels,
                                                   bottleneck) for i in range(3)])
        self.shortcut = nn.Sequential(nn.Conv1d(cin, width, 1, bias=False), nn.BatchNorm1d(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.modules_(x) + self.shortcut(x))


class InceptionTime(SignalModel):
    """One InceptionTime network (Ismail Fawaz et al., 2020, "InceptionTime: finding AlexNet for
    time series classification"): six Inception modules of 32 filters per branch (kernels
    39/19/9 + max-pool; the paper's 40/20/10 made odd so "same" padding is symmetric), residual
    every third module, global average pooling."""

    def __init__(self, in_chans: int, mean: tuple[float, ...], std: tuple[float, ...],
                 filters: int = 32, depth: int = 6, kernels: tuple[int, ...] = (39, 19, 9),
                 bottleneck: int = 32) -> None:
        super().__init__(in_chans, mean, std)
        if depth % 3:
            raise UserError(f"inceptiontime: depth must be a multiple of 3, got {depth}")
        cin, width = in_chans, filters * (len(kernels) + 1)
        for i in range(depth // 3):
            self.stages.append(_InceptionStage(cin, filters, tuple(kernels), bottleneck))
            self.feature_info.append({"num_chs": width, "reduction": 1, "module": f"stages.{i}"})
            cin = width
        self._finish()


class _PatchEmbed(nn.Module):
    def __init__(self, in_chans: int, dim: int, patch: int, stride: int, length: int) -> None:
        super().__init__()
        self.patch, self.stride = patch, stride
        self.proj = nn.Conv1d(in_chans, dim, patch, stride)
        self.position = nn.Parameter(torch.zeros(1, dim, max(1, (length - patch) // stride + 2)))
        nn.init.trunc_normal_(self.position, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # PatchTST pads the end by repeating the last value, so the last steps form a patch.
        x = F.pad(x, (0, self.stride), mode="replicate")
        tokens = self.proj(x)  # (B, D, N)
        position = self.position
        if position.shape[-1] != tokens.shape[-1]:  # another length than trained on
            position = F.interpolate(position, size=tokens.shape[-1], mode="linear",
                                     align_corners=False)
        return tokens + position


class _Encoder(nn.Module):
    def __init__(self, dim: int, depth: int, heads: int) -> None:
        super().__init__()
        layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=0.0, batch_first=True,
                                           norm_first=True, activation="gelu")
        self.blocks = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.blocks(x.transpose(1, 2))).transpose(1, 2)  # (B, D, N)


class PatchTST(SignalModel):
    """A small PatchTST-style encoder (Nie et al., 2023, "A time series is worth 64 words"):
    overlapping patches of ``patch`` steps every ``stride`` become tokens with learned
    positions, then a pre-norm Transformer encoder; mean-pooled. Unlike PatchTST, which runs
    each channel on its own, the patch embedding mixes the channels, so one token sees every
    sensor at that time (one pass per series instead of one per channel)."""

    def __init__(self, in_chans: int, mean: tuple[float, ...], std: tuple[float, ...],
                 length: int, dim: int = 128, depth: int = 3, heads: int = 4,
                 patch: int | None = None, stride: int | None = None) -> None:
        super().__init__(in_chans, mean, std)
        patch = patch or max(2, min(16, length // 8))
        stride = stride or max(1, patch // 2)
        self.stages.append(_PatchEmbed(in_chans, dim, patch, stride, length))
        self.stages.append(_Encoder(dim, depth, heads))
        self.feature_info = [
            {"num_chs": dim, "reduction": stride, "module": "stages.0"},
            {"num_chs": dim, "reduction": stride, "module": "stages.1"}]
        self._finish()


def create_signal_model(cfg: Any) -> SignalModel:
    """The model a BackboneConfig names (``name`` in SIGNAL_BACKBONES); ``model_kwargs`` are
    the architecture's own options (e.g. ``channels``, ``dim``, ``depth``, ``patch``)."""
    if cfg.name not in SIGNAL_BACKBONES:
        raise UserError(f"unknown signal backbone '{cfg.name}'; valid: {list(SIGNAL_BACKBONES)}")
    if not (1 <= cfg.in_chans <= 4096 and 2 <= cfg.image_size <= LARGEST):
        raise UserError(f"signal backbone: {cfg.in_chans} channels and length {cfg.image_size} "
                        f"must lie in 1..4096 and 2..{LARGEST}")
    if getattr(cfg, "standardize", False):
        raise UserError("standardize is for images; a signal backbone standardises each "
                        "channel with its training statistics already")
    kwargs = dict(cfg.model_kwargs)
    for key, value in kwargs.items():
        values = value if isinstance(value, (tuple, list)) else (value,)
        if not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= LARGEST
                   for v in values):
            raise BadOptionValue(f"signal backbone option {key}={value!r}: whole numbers in "
                                 f"1..{LARGEST} expected")
    builders = {"resnet1d": ResNet1d, "inceptiontime": InceptionTime, "patchtst": PatchTST}
    if cfg.name == "patchtst":
        kwargs.setdefault("length", cfg.image_size)
    try:
        return builders[cfg.name](cfg.in_chans, tuple(cfg.mean), tuple(cfg.std), **kwargs)
    except TypeError as error:
        raise BadOptionValue(f"signal backbone '{cfg.name}' with options {sorted(kwargs)}: "
                             f"{error}") from None
