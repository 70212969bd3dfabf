"""Backbones: any timm model by name, adapted to the data, with one ``features()`` interface.

Small inputs (<= 64 px) get the CIFAR-style stem of He et al. (2016, sec. 4.2): a 3x3 stride-1
first convolution and no max-pool, so a 28-px image is not reduced to 7 px before the first stage.
ViTs get their image and patch size from the data (Dosovitskiy et al., 2021).
"""

from __future__ import annotations

import difflib
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

from selfsight.artifacts import (
    BACKBONE,
    as_tuples,
    config_from_meta,
    load_artifact,
    load_weights,
    save_artifact,
)
from selfsight.backbone_names import ALIASES, RECOMMENDED, resolve_alias
from selfsight.errors import BadOptionValue, UserError
from selfsight.nn.small_grid_conv import use_small_grid_convs
from selfsight.recipes import SMALL_IMAGE
from selfsight.signals.backbones import create_signal_model
from selfsight.signals.names import is_signal_backbone

# ImageNet's channel statistics; one gray channel takes their mean.
RGB_MEAN, RGB_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
GRAY_MEAN, GRAY_STD = (0.449,), (0.226,)


def default_stats(channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    return (GRAY_MEAN, GRAY_STD) if channels == 1 else (RGB_MEAN, RGB_STD)


def alias_of(config: dict[str, Any]) -> str | None:
    """The selfsight alias a saved backbone config (``BackboneConfig`` as a dict) was built
    from, or None: saved configs hold the resolved timm name, which hides e.g. that
    ``resnet10_cpu`` is a one-block-per-stage ResNet."""
    shape = ("name", "small_stem", "stem_stride", "stem_width", "patch_size", "model_kwargs")
    saved = json.loads(json.dumps({k: config.get(k) for k in shape}))  # tuples as lists
    for alias in ALIASES:
        built = asdict(backbone_config(alias, config.get("in_chans", 3),
                                       config.get("image_size", 224), None))
        if json.loads(json.dumps({k: built[k] for k in shape})) == saved:
            return alias
    return None


# Fields a run records about how it trained, not options one sets (--backbone-set).
RECORDED = frozenset({"windows"})


@dataclass
class BackboneConfig:
    """Everything needed to rebuild the feature extractor, saved beside its weights."""

    name: str = "resnet18"
    in_chans: int = 3
    image_size: int = 224
    small_stem: bool | None = None  # None: automatic, on for image_size <= 64
    stem_stride: int = 1
    stem_width: int | None = None  # small stem's channels (ResNets); None: the model's own (64)
    patch_size: int | None = None  # ViT only; None: chosen from image_size
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    # Each image to zero mean and unit variance over its pixels before the stem: features that
    # a global brightness or contrast change (lighting, exposure) cannot move.
    standardize: bool = False
    # Signals only: trained on overlapping windows of image_size steps cut from a few long
    # recordings, so every consumer cuts long series into the same windows (signals.windows).
    windows: bool = False

    def __post_init__(self) -> None:
        for flag in ("standardize", "windows"):  # "yes" would silently switch it on
            if not isinstance(getattr(self, flag), bool):
                raise UserError(f"{flag} must be true or false, got {getattr(self, flag)!r}")

    @property
    def is_vit(self) -> bool:
        return is_vit_name(self.name)

    @property
    def uses_small_stem(self) -> bool:
        return self.image_size <= SMALL_IMAGE if self.small_stem is None else self.small_stem


def backbone_config(name: str, channels: int, image_size: int,
                    options: dict[str, Any] | None) -> BackboneConfig:
    """BackboneConfig fields from ``options`` where they match, every other key a timm kwarg."""
    check_backbone_name(name)
    name, options = resolve_alias(name, options)
    own = {f.name for f in fields(BackboneConfig)} - {"name", "in_chans", "image_size"} \
        - RECORDED
    mine = {k: v for k, v in options.items() if k in own}
    timm_kwargs = {k: v for k, v in options.items() if k not in own}
    mean, std = default_stats(channels)
    return BackboneConfig(name=name, in_chans=channels, image_size=image_size, mean=mean, std=std,
                          model_kwargs=timm_kwargs, **mine)


def check_backbone_name(name: str) -> None:
    if name in ALIASES or is_signal_backbone(name) or timm.is_model(name):
        return
    close = difflib.get_close_matches(name, timm.list_models(), n=8, cutoff=0.6)
    raise UserError(
        f"unknown backbone '{name}'. Recommended: {', '.join(RECOMMENDED)}; "
        f"any timm name works{'; did you mean: ' + ', '.join(close) if close else ''}"
    )


def is_vit_name(name: str) -> bool:
    """A plain ViT family (patch tokens on one grid): the one test of "is this a ViT" that
    configs, methods and tools share."""
    return name.startswith(("vit_", "deit", "eva", "beit"))


def _vit_patch_size(image_size: int) -> int:
    patch = 4 if image_size <= 32 else 8 if image_size <= SMALL_IMAGE else 16
    if image_size % patch:
        raise UserError(f"ViT image size {image_size} is not a multiple of patch size {patch}")
    return patch


def _small_stem(model: nn.Module, in_chans: int, stride: int, width: int | None = None) -> None:
    """Replace the first convolution by 3x3/``stride`` and drop the stem max-pool, in place;
    ``width`` narrows the stem (a ResNet's 64-channel stem is its widest activation at 20 px)."""
    first = model.pretrained_cfg.get("first_conv", "conv1")
    if isinstance(first, (list, tuple)):
        first = first[0]
    parent_name, _, leaf = first.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    old = getattr(parent, leaf)
    if not isinstance(old, nn.Conv2d):
        raise UserError(f"cannot fit a small-image stem to {type(model).__name__} ({first})")
    width = width or old.out_channels
    setattr(parent, leaf, nn.Conv2d(in_chans, width, 3, stride, 1, bias=old.bias is not None))
    if width != old.out_channels:
        _rewire_first_block(model, width)
    for pool_name in ("maxpool", "stem_pool"):
        if isinstance(getattr(model, pool_name, None), nn.MaxPool2d):
            setattr(model, pool_name, nn.Identity())


def _rewire_first_block(model: nn.Module, width: int) -> None:
    """After a narrower stem: the stem's norm and the first residual block take ``width``."""
    layer1 = getattr(model, "layer1", None)
    if not isinstance(getattr(model, "bn1", None), nn.BatchNorm2d) or layer1 is None:
        raise UserError(f"stem_width is supported for ResNet backbones, not "
                        f"{type(model).__name__}")
    model.bn1 = nn.BatchNorm2d(width)
    for info in model.feature_info:  # what features(levels=...) reports for the stem
        if info["module"] == "act1":
            info["num_chs"] = width
    block = layer1[0]
    conv = block.conv1
    block.conv1 = nn.Conv2d(width, conv.out_channels, conv.kernel_size, conv.stride,
                            conv.padding, bias=conv.bias is not None)
    out = block.downsample[0] if block.downsample is not None else None
    planes = out.out_channels if out is not None else conv.out_channels
    # The shortcut projects the stem to the block's width (timm: 1x1 conv + norm).
    stride = out.stride if out is not None else conv.stride
    block.downsample = nn.Sequential(nn.Conv2d(width, planes, 1, stride, bias=False),
                                     nn.BatchNorm2d(planes))


def create_timm_model(cfg: BackboneConfig) -> nn.Module:
    check_model_kwargs(cfg.name, cfg.model_kwargs)
    if is_signal_backbone(cfg.name):  # 1-D signals: the same interface, not a timm model
        return create_signal_model(cfg)
    if not (1 <= cfg.in_chans <= 64 and 1 <= cfg.image_size <= LARGEST_SIZE):
        raise UserError(f"backbone: in_chans {cfg.in_chans} and image_size {cfg.image_size} "
                        f"must lie in 1..64 and 1..{LARGEST_SIZE}")
    check_backbone_name(cfg.name)
    kwargs: dict[str, Any] = {"num_classes": 0, "in_chans": cfg.in_chans, **cfg.model_kwargs}
    if is_vit_name(cfg.name):
        kwargs.setdefault("img_size", cfg.image_size)
        kwargs.setdefault("dynamic_img_size", True)  # multi-crop: local views of another size
        kwargs.setdefault("patch_size", cfg.patch_size or (
            _vit_patch_size(cfg.image_size) if cfg.image_size <= SMALL_IMAGE else None))
        if kwargs["patch_size"] is None:
            del kwargs["patch_size"]
        model = _timm_model(cfg.name, kwargs)
        patch = getattr(getattr(model, "patch_embed", None), "patch_size", (1,))[0]
        if cfg.image_size % patch:  # else every forward at the backbone's own size fails
            raise UserError(f"ViT image size {cfg.image_size} is not a multiple of its patch "
                            f"size {patch} (--image-size, or --backbone-set patch_size=...)")
        return model
    model = _timm_model(cfg.name, kwargs)
    if cfg.stem_width and not cfg.uses_small_stem:
        raise UserError(f"stem_width={cfg.stem_width} applies to the small-image stem (images of "
                        f"{SMALL_IMAGE} px or less, or small_stem=true)")
    if cfg.uses_small_stem:
        _small_stem(model, cfg.in_chans, cfg.stem_stride, cfg.stem_width)
    # Small images leave the last stages on 2x2-3x3 maps, where a dense product beats oneDNN.
    return use_small_grid_convs(model)


# timm kwargs that read files, fetch weights or change what the model is for: a backbone.json
# from elsewhere must not make selfsight open a path or a URL.
FORBIDDEN_KWARGS = ("pretrained", "checkpoint_path", "pretrained_cfg", "pretrained_cfg_overlay",
                    "pretrained_strict", "cache_dir", "features_only", "num_classes", "in_chans")
LARGEST_SIZE = 16_384  # no width, depth or size a backbone needs is larger


def check_model_kwargs(name: Any, kwargs: dict[str, Any]) -> None:
    """Refuse a model name that is not text, kwargs that open files or fetch weights, and sizes
    that would ask for more memory than any machine has."""
    if not isinstance(name, str):
        raise UserError(f"backbone name must be text, got {name!r}")
    for key, value in kwargs.items():
        if key in FORBIDDEN_KWARGS or key.endswith(("_path", "_file", "_url", "_dir")):
            raise UserError(f"backbone option '{key}' is not allowed (it reads files, fetches "
                            "weights or changes the model's output)")
        numbers = value if isinstance(value, (tuple, list)) else (value,)
        for number in numbers:
            if isinstance(number, int) and not isinstance(number, bool) and not \
                    0 <= number <= LARGEST_SIZE:
                raise UserError(f"backbone option {key}={value!r}: sizes must lie in "
                                f"0..{LARGEST_SIZE}")
            if not isinstance(number, (int, float, str, bool, type(None))):
                raise UserError(f"backbone option {key}={value!r}: expected numbers, text or "
                                "true/false")


def _timm_model(name: str, kwargs: dict[str, Any]) -> nn.Module:
    try:
        return timm.create_model(name, pretrained=False, **kwargs)
    except TypeError as error:  # an option the model's constructor does not take
        raise BadOptionValue(f"backbone '{name}' with options {sorted(kwargs)}: {error}") from None


def stem(model: nn.Module) -> nn.Conv2d:
    """The first convolution, which every path through a timm model starts with (a ViT's patch
    embedding is one too)."""
    return next(m for m in model.modules() if isinstance(m, nn.Conv2d))


def standardize_input(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor]:
    """Forward pre-hook: each image (B, C, H, W) to zero mean and unit variance over C, H, W,
    computed in float32; a flat image becomes zeros."""
    x = inputs[0]
    flat = x.float().flatten(1)
    mean, std = flat.mean(1), flat.std(1)
    out = (x.float() - mean.view(-1, 1, 1, 1)) / (std.view(-1, 1, 1, 1) + 1e-5)
    return (out.to(x.dtype),)


class Backbone(nn.Module):
    """A timm model without classifier: ``forward(x) -> (B, D)`` pooled features."""

    def __init__(self, config: BackboneConfig) -> None:
        super().__init__()
        self.config = config
        self.model = create_timm_model(config)
        # Pooled width after forward_head(pre_logits=True); MobileNetV3 & co. add a head conv.
        self.dim: int = int(getattr(self.model, "head_hidden_size", None)
                            or self.model.num_features)
        self.num_prefix_tokens: int = int(getattr(self.model, "num_prefix_tokens", 0))
        if config.standardize:
            # On the stem, not in forward(): methods and tools also enter the model through
            # forward_features, forward_intermediates or the patch embedding.
            stem(self.model).register_forward_pre_hook(standardize_input)

    @property
    def is_vit(self) -> bool:
        return self.config.is_vit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)

    def features(
        self, x: torch.Tensor, tokens: bool = False, levels: list[int] | int | None = None
    ) -> dict[str, Any]:
        """Pooled features (B, D); optionally the last feature map / ViT patch tokens as a grid
        (B, D, h, w); optionally intermediate levels (list of (B, C, h, w)) from timm's
        ``forward_intermediates`` (index or list of block/stage indices; -1 is the last)."""
        out: dict[str, Any] = {}
        last = self.model.forward_features(x)
        out["pooled"] = self.model.forward_head(last, pre_logits=True)  # (B, D)
        if tokens:
            out["tokens"] = self._grid(last, tuple(x.shape[-2:]))
        if levels is not None:
            out["levels"] = self.model.forward_intermediates(
                x, indices=levels, intermediates_only=True)
        return out

    def _grid(self, last: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
        if last.ndim == 4:  # CNN map (B, C, h, w)
            return last
        patches = last[:, self.num_prefix_tokens:]  # (B, N, D)
        patch = self.model.patch_embed.patch_size  # the grid follows the input (dynamic size)
        h, w = image_size[0] // patch[0], image_size[1] // patch[1]
        return patches.transpose(1, 2).reshape(last.shape[0], -1, h, w)  # (B, D, h, w)

    def level_dims(self) -> list[int]:
        """Channels of each stage/block that ``features(levels=...)`` can return."""
        return [int(info["num_chs"]) for info in self.model.feature_info]

    def save(self, directory: str | Path) -> None:
        save_artifact(directory, BACKBONE, asdict(self.config), self.state_dict())


def saved_backbone_config(raw: Any, where: Path) -> BackboneConfig:
    """A BackboneConfig from its JSON (in backbone.json, or inside another artifact's)."""
    if isinstance(raw, dict) and isinstance(raw.get("model_kwargs"), dict):
        raw = {**raw, "model_kwargs": as_tuples(raw["model_kwargs"])}  # CLI kwargs are tuples
    config = config_from_meta(BackboneConfig, raw, where)
    try:
        check_model_kwargs(config.name, config.model_kwargs)
    except UserError as error:
        raise UserError(f"{where}: {error}") from None
    return config


def load_backbone(directory: str | Path) -> Backbone:
    """Rebuild a backbone from ``backbone.json`` + ``backbone.safetensors`` (no pickle, no
    method code)."""
    meta, tensors = load_artifact(directory, BACKBONE)
    backbone = Backbone(saved_backbone_config(meta, Path(directory) / BACKBONE.meta_file))
    load_weights(backbone, tensors, Path(directory) / BACKBONE.weights_file)
    return backbone.eval()
