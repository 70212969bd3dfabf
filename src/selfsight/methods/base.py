"""The base every method stands on (in the spirit of solo-learn's BaseMethod, kept short).

It owns what methods share: the backbone, device-side views drawn from a per-step seed, the
optimizer with weight-decay exclusions, warm-up + cosine learning rate, the EMA momentum schedule
and logging. A method adds its heads in ``__init__``, says which views it wants, and computes its
loss; that is one short file.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from typing import Any, ClassVar

import lightning as L
import torch
from timm.optim import Lars
from torch import nn

from selfsight.backbones import Backbone, BackboneConfig
from selfsight.errors import UserError
from selfsight.nn.distributed import gather, rank
from selfsight.nn.ema import ema_update
from selfsight.nn.param_groups import decay_groups
from selfsight.nn.schedules import cosine, warmup_cosine
from selfsight.recipes import recipe
from selfsight.views import MultiViewConfig, ViewPipeline

OPTIMIZERS = ("sgd", "lars", "adamw")


@dataclass
class MethodConfig:
    """Optimisation settings every method has; a method's Config subclasses this."""

    optimizer: str = "lars"
    lr: float = 0.3  # per 256 images of global batch, scaled linearly (Goyal et al., 2017)
    weight_decay: float = 1e-6
    weight_decay_end: float | None = None  # cosine schedule to this value (DINO); None: constant
    momentum: float = 0.9  # SGD/LARS momentum
    lars_eta: float = 0.001  # LARS trust coefficient (You et al., 2017)
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW
    warmup: float = 0.05  # fraction of training spent warming up
    final_lr_ratio: float = 0.0
    ema_momentum: float = 0.99  # start of the cosine schedule towards 1.0 (BYOL)
    ema_momentum_end: float = 1.0

    def __post_init__(self) -> None:  # a subclass with its own calls super().__post_init__()
        self.validate()

    def validate(self) -> None:
        """Range checks by field name, so every method's Config (and a new one's) gets them:
        learning rates, temperatures and LARS eta > 0; weight decays, loss weights and
        final_lr_ratio >= 0; momentum in [0, 1), EMA and centre momenta, warm-up fractions in
        [0, 1]; betas and mask_ratio in [0, 1); dimensions, depths, heads, layers and sizes
        whole numbers >= 1. One line naming the option on the first value out of range."""
        for name, value in asdict(self).items():
            rule = _config_rule(name)
            values = value if isinstance(value, (tuple, list)) else (value,)
            for v in values:
                if rule is None or v is None or isinstance(v, (bool, str)):
                    continue
                check, what = rule
                whole = what.startswith("a whole")
                if not isinstance(v, (int, float)) or (whole and not isinstance(v, int)) \
                        or not check(v):
                    raise UserError(f"method option {name} must be {what}, got {value!r} "
                                    f"(--set {name}=...)")


_POSITIVE = (lambda v: 0 < v < float("inf"), "> 0")
_NON_NEGATIVE = (lambda v: 0 <= v < float("inf"), ">= 0")
_UNIT = (lambda v: 0 <= v <= 1, "in [0, 1]")
_BELOW_ONE = (lambda v: 0 <= v < 1, "in [0, 1)")
_COUNT = (lambda v: v >= 1, "a whole number >= 1")


def _config_rule(name: str) -> tuple[Any, str] | None:
    """The range a method option must lie in, by its name; None: not checked here."""
    if name in ("lr", "lars_eta") or name.endswith(("_lr", "temperature", "temperatures",
                                                     "_temp")):
        return _POSITIVE
    if name in ("momentum", "betas", "mask_ratio"):
        return _BELOW_ONE
    if name.endswith(("momentum", "momentum_end")) or name in ("warmup", "teacher_temp_warmup"):
        return _UNIT
    if name.startswith("weight_decay") or name.endswith(("_weight", "weights", "_ratio")) \
            or name in ("lambd", "invariance", "variance", "covariance", "freeze_last_layer"):
        return _NON_NEGATIVE
    if name.endswith(("_dim", "_depth", "_heads", "_layers", "_size")):
        return _COUNT
    return None


class Method(L.LightningModule):
    """Base class: subclasses set ``name``, ``description``, ``Config`` and implement
    ``compute_loss``; optionally ``default_views`` and ``ema_pairs``."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    Config: ClassVar[type[MethodConfig]] = MethodConfig
    requires_vit: ClassVar[bool] = False  # e.g. MAE: patch tokens needed
    signals_only: ClassVar[bool] = False  # e.g. masked: reconstructs time steps of signals
    # Each view is cut into view_cells x view_cells parts that go through the backbone on their
    # own (globallocal's 2x2 local patches): on a ViT each part must hold whole patches.
    view_cells: ClassVar[int] = 1

    def __init__(
        self,
        backbone: BackboneConfig,
        config: MethodConfig | None = None,
        views: MultiViewConfig | None = None,
        batch_size: int = 256,
        seed: int = 0,
        time_budget: float | None = None,
    ) -> None:
        super().__init__()
        self.config = config or self.Config()
        if self.config.optimizer not in OPTIMIZERS:  # fail before any data is loaded
            raise UserError(f"unknown optimizer '{self.config.optimizer}'; "
                            f"valid: {list(OPTIMIZERS)}")
        self.backbone = Backbone(backbone)
        views = (views or self.views_for(backbone)).fitted_to(self.view_multiple)
        self.views = ViewPipeline(views, backbone.mean, backbone.std)
        self.batch_size = batch_size  # global, across processes
        self.seed = seed
        self.time_budget = time_budget
        self.elapsed_before = 0.0  # seconds trained before a resume
        self._fit_started = time.monotonic()
        # A method that can, sets each image's loss here in compute_loss (important-sample
        # sampling draws the next batches by it).
        self.sample_losses: torch.Tensor | None = None

    # ----- what a method provides -------------------------------------------------------------
    @classmethod
    def default_config(cls, backbone: BackboneConfig) -> MethodConfig:
        """The defaults for the backbone family with the recipe for its image size on top
        (``selfsight.recipes``: e.g. small heads for small images); user options go on top."""
        return replace(cls.family_config(backbone),
                       **recipe(cls.name, backbone.image_size, vit=backbone.is_vit))

    @classmethod
    def family_config(cls, backbone: BackboneConfig) -> MethodConfig:
        """The paper's defaults for the backbone's family (e.g. AdamW for ViTs)."""
        return cls.Config()

    @classmethod
    def default_views(cls, size: int) -> MultiViewConfig:
        from selfsight.views.presets import simclr_views

        return simclr_views(size)

    @classmethod
    def views_for(cls, backbone: BackboneConfig, size: int | None = None) -> MultiViewConfig:
        """The default views at ``size`` px (None: the backbone's image size) for the
        backbone's family; a method whose view recipe differs for ViTs overrides this."""
        return cls.default_views(size or backbone.image_size)

    def compute_loss(self, views: list[torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def ema_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        """(online, target) module pairs the base updates by EMA after each step."""
        return []

    @property
    def view_multiple(self) -> int:
        """What every view size must be a multiple of: a ViT's patch (times ``view_cells``),
        so no derived size (e.g. a 41-px local crop for 16-px patches) reaches the backbone."""
        if not self.backbone.is_vit:
            return 1
        return int(self.backbone.model.patch_embed.patch_size[0]) * self.view_cells

    # ----- progress and schedules -------------------------------------------------------------
    @property
    def elapsed(self) -> float:
        return self.elapsed_before + time.monotonic() - self._fit_started

    @property
    def progress(self) -> float:
        """Fraction of training done in [0, 1]: by wall clock under a time budget, else by step."""
        if self.time_budget:
            return min(self.elapsed / self.time_budget, 1.0)
        if self._trainer is None:  # built outside a Trainer (tests, notebooks): the start
            return 0.0
        total = self.trainer.max_steps if self.trainer.max_steps > 0 else 1
        return min(self.global_step / total, 1.0)

    @property
    def ema_momentum(self) -> float:
        return cosine(self.progress, self.config.ema_momentum, self.config.ema_momentum_end)

    def on_fit_start(self) -> None:
        self._fit_started = time.monotonic()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["selfsight"] = {"elapsed": self.elapsed}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.elapsed_before = float(checkpoint.get("selfsight", {}).get("elapsed", 0.0))

    # ----- training step ----------------------------------------------------------------------
    def step_generator(self, stream: int = 0) -> torch.Generator:
        """Views of step s on process r come from seed (seed, s, r): resumable and reproducible.
        Other random draws of a step (e.g. MAE's masks) use another ``stream``."""
        gen = torch.Generator(device=self.device)
        gen.manual_seed(((self.seed * 1_000_003 + self.global_step) * 4099 + rank()) * 31 + stream)
        return gen

    def make_views(self, images: torch.Tensor) -> list[torch.Tensor]:
        with torch.no_grad(), torch.autocast(self.device.type, enabled=False):
            views = self.views(images, self.step_generator())
        return [v.contiguous(memory_format=torch.channels_last) for v in views]

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        views = self.make_views(batch["image"])
        loss, logs = self.compute_loss(views)
        if not torch.isfinite(loss):  # train.fit names the last good checkpoint and the remedy
            raise FloatingPointError(f"{self.name}: non-finite loss {loss.item()} at step "
                                     f"{self.global_step}")
        self.record_sample_losses(batch)
        self.log("loss", loss.detach(), prog_bar=True)
        for key, value in logs.items():
            self.log(key, value)
        return loss

    def record_sample_losses(self, batch: dict[str, torch.Tensor]) -> None:
        data = self.trainer.datamodule if self._trainer is not None else None
        if getattr(data, "scores", None) is None:
            return
        if self.sample_losses is None:
            raise UserError(f"{self.name} does not report per-image losses; importance sampling "
                            "needs a method that does (simclr, hierarchical)")
        data.record_losses(gather(batch["index"]), gather(self.sample_losses.detach()))

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        lr_scale = warmup_cosine(self.progress, 1.0, self.config.warmup, self.config.final_lr_ratio)
        for group in self.optimizers().optimizer.param_groups:
            group["lr"] = group["base_lr"] * lr_scale
            if group["weight_decay"] and self.config.weight_decay_end is not None:
                group["weight_decay"] = cosine(self.progress, self.config.weight_decay,
                                               self.config.weight_decay_end)
        self.log("lr", self.optimizers().optimizer.param_groups[0]["lr"])

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        momentum = self.ema_momentum
        for online, target in self.ema_pairs():
            ema_update(target, online, momentum)

    # ----- optimizer --------------------------------------------------------------------------
    def configure_optimizers(self) -> torch.optim.Optimizer:
        cfg = self.config
        lr = cfg.lr * self.batch_size / 256
        groups = decay_groups(self.parameters(), cfg.weight_decay, base_lr=lr)
        if cfg.optimizer == "sgd":
            return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum)
        if cfg.optimizer == "adamw":
            return torch.optim.AdamW(groups, lr=lr, betas=cfg.betas)
        return Lars(groups, lr=lr, momentum=cfg.momentum, trust_coeff=cfg.lars_eta)

    # ----- description ------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        return {"method": self.name, "config": asdict(self.config),
                "views": self.views.config.to_dict()}



__all__ = ["OPTIMIZERS", "Method", "MethodConfig"]
