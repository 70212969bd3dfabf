"""``pretrain`` on signals: the same methods, Lightning loop, run folder and checkpoints as for
images, with the signal backbone, the signal views and the training split's channel
statistics put in their place."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from selfsight.backbones import BackboneConfig
from selfsight.config import config_from_dict
from selfsight.device import device_for
from selfsight.errors import UserError
from selfsight.methods import get_method
from selfsight.recipes import SMALL_IMAGE, recipe
from selfsight.signals.data import SignalSet, channel_stats, load_signals
from selfsight.signals.names import DEFAULT_SIGNAL_BACKBONE, SIGNAL_BACKBONES
from selfsight.signals.views import SignalViewPipeline, signal_views
from selfsight.signals.windows import as_trained, is_long
from selfsight.train.defaults import CPU_BATCH, GPU_BATCH, MIN_BATCH, choose_epochs
from selfsight.train.fit import TrainConfig, fit_and_save, with_resolved_precision
from selfsight.train.run_start import start_run

# Methods whose loss takes two views of the whole series, and masked reconstruction of time
# steps; the others need image structure (rotations, patch tokens, local crops) that a signal
# does not have.
SIGNAL_METHODS = ("simclr", "byol", "mocov3", "barlowtwins", "vicreg", "masked")
# A few long recordings train on overlapping windows of this many steps (unless --image-size
# says otherwise): the trained length, so `anomaly fit` scores windows of it too.
DEFAULT_WINDOW = 128


def signal_batch_size(requested: int | None, device: Any, count: int) -> int:
    """``requested``, or the largest power of two up to both the device default and the
    number of training series: in-batch contrast wants every series of a small set at once."""
    if requested is not None:
        return requested
    limit = min(GPU_BATCH if device.type == "cuda" else CPU_BATCH, count)
    batch = 1 << max(1, limit.bit_length() - 1)
    print(f"batch size: {batch} (auto: {count} training series; --batch-size to override)",
          file=sys.stderr)
    return batch


def window_length(count: int, steps: int, length: int | None,
                  batch_size: int | None) -> int | None:
    """The window to cut the training series into, or None to train on them whole: ``length``
    (else DEFAULT_WINDOW) when the series are fewer than a batch (``batch_size``, else the
    smallest batch pretraining picks, MIN_BATCH) and at least two windows long. Fewer short
    series keep their own length."""
    window = length or DEFAULT_WINDOW
    return window if is_long(count, steps, window, batch_size or MIN_BATCH) else None


def training_split(data: Any, length: int | None, batch_size: int | None
                   ) -> tuple[SignalSet, bool]:
    """The training split as :func:`load_signals` gives it (at ``length`` when given), or, for a
    few long recordings, cut into windows (:func:`window_length`); and whether it was cut."""
    whole = load_signals(data, "train")  # own length: is it long enough to cut?
    window = window_length(len(whole), whole.length, length, batch_size)
    if window is None and length is None:
        return whole, False
    shaped = as_trained(whole, window or length, window is not None,
                        why="too few series for a batch; --image-size sets the window"
                        if window else "--image-size")
    if shaped is not whole:
        print(shaped.notes[-1], file=sys.stderr, flush=True)
    return shaped, window is not None


def pretrain_signals(
    data: Any,
    method: str = "simclr",
    backbone: str = "auto",
    out: str | Path | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    *,
    length: int | None = None,
    options: dict[str, Any] | None = None,
    backbone_options: dict[str, Any] | None = None,
    view_options: dict[str, Any] | None = None,
    resume: bool = False,
    allow_changed_data: bool = False,
    **train_options: Any,
) -> Path:
    """Pretrain a signal backbone on the training split of ``data`` (see
    :func:`selfsight.signals.data.load_signals`); returns the run folder. The backbone saves
    the length it was trained at (``image_size``) and the training split's per-channel mean
    and standard deviation (``mean``/``std``), with which it standardises every input."""
    if method not in SIGNAL_METHODS:
        raise UserError(f"method '{method}' is for images; on signals use one of "
                        f"{list(SIGNAL_METHODS)}")
    method_cls = get_method(method)
    config_from_dict(method_cls.Config, options or {}, f"{method} options")  # before loading
    name = DEFAULT_SIGNAL_BACKBONE if backbone == "auto" else backbone
    if name not in SIGNAL_BACKBONES:
        raise UserError(f"backbone '{name}' is for images; on signals use one of "
                        f"{list(SIGNAL_BACKBONES)}")
    device = device_for(train_options.get("accelerator", "auto"))
    epochs = choose_epochs(epochs, train_options.get("time_budget"))
    train_cfg = config_from_dict(TrainConfig, {"epochs": epochs, "batch_size": batch_size or 1,
                                               **train_options}, "training options")
    train_cfg, precision = with_resolved_precision(train_cfg)
    if train_cfg.knn_every:
        raise UserError("--knn-every is for images; evaluate signals after training")
    signals, windows = training_split(data, length, batch_size)
    train_cfg = replace(train_cfg, batch_size=signal_batch_size(batch_size, device,
                                                                len(signals)))
    mean, std = channel_stats(signals)
    backbone_cfg = BackboneConfig(name=name, in_chans=signals.channels,
                                  image_size=signals.length, mean=mean, std=std,
                                  windows=windows, model_kwargs=dict(backbone_options or {}))
    # A few hundred series and minutes of training are the small-image regime the recipes
    # were measured in (narrow heads, weight decay 1e-4), not ImageNet's.
    base = replace(method_cls.family_config(backbone_cfg),
                   **recipe(method, SMALL_IMAGE, vit=False))
    method_cfg = config_from_dict(method_cls.Config, options or {}, f"{method} options",
                                  base=base)
    views = signal_views(method).with_options(view_options)

    def build() -> Any:
        model = method_cls(backbone=backbone_cfg, config=method_cfg,
                           batch_size=train_cfg.batch_size, seed=train_cfg.seed,
                           time_budget=train_cfg.time_budget)
        # The image views the base class made from its defaults give way to the signal views.
        model.views = SignalViewPipeline(views, mean, std)
        return model

    with start_run(out, f"{method}-{name}", data, signals, train_cfg, precision, build, resume,
                   allow_changed_data=allow_changed_data,
                   signal_notes=signals.notes) as (run, model):
        fit_and_save(model, signals, train_cfg, run.root, resume=resume)
    return run.root
