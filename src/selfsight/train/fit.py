"""``fit``: one Lightning run of a method on an ImageSet, on CPU, GPUs or nodes, resumable."""

from __future__ import annotations

import logging
import signal
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.utilities.exceptions import SIGTERMException

from selfsight.data import ImageSet
from selfsight.device import Precision, announce_precision, device_for, resolve_precision
from selfsight.errors import Diverged, RunFolderTaken, RunInterrupted, UserError
from selfsight.methods import Method
from selfsight.run_folder import RunFolder
from selfsight.train.callbacks import (
    KnnMonitor,
    MetricsLog,
    OptimizerSettingsFromConfig,
    PeriodicCheckpoint,
    ProgressBar,
    StopOnSignal,
    Throughput,
    TimeBudget,
)
from selfsight.train.checkpoint_io import AtomicCheckpointIO, load_checkpoint
from selfsight.train.loader import StepDataModule


@dataclass
class TrainConfig:
    """How long and where to train; the method's own settings live in its Config."""

    epochs: int = 100
    batch_size: int = 256  # global batch, split across processes
    max_steps: int | None = None  # overrides epochs when set
    time_budget: float | None = None  # seconds of training; schedules end when it runs out
    accelerator: str = "auto"
    devices: int | str = 1
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "auto"  # from the hardware (selfsight.device.resolve_precision)
    seed: int = 0
    workers: int = 0  # loader processes; the cache makes 0 enough for small images
    checkpoint_every: int = 200  # steps; a checkpoint is also written at every epoch end
    log_every: int = 20
    knn_every: int = 0  # epochs between online kNN evaluations; 0 = off
    importance: float = 0.0  # fraction of each batch drawn by the images' latest losses
    progress: bool = True

    def __post_init__(self) -> None:
        """One line per misuse, before any data loads (the CLI checks its flags earlier)."""
        def whole(name: str, low: int, what: str) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise UserError(f"{name} (--{name.replace('_', '-')}) must be a whole number "
                                f"{what}, got {value!r}")
        for name in ("epochs", "batch_size", "num_nodes", "log_every"):
            whole(name, 1, ">= 1")
        for name in ("workers", "checkpoint_every", "knn_every"):
            whole(name, 0, ">= 0 (0: off)" if name != "workers" else ">= 0")
        if self.max_steps is not None:
            whole("max_steps", 1, ">= 1 (or None: from the epochs)")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) \
                or not 0 <= self.seed < 2**32:
            raise UserError(f"seed (--seed) must be a whole number in [0, 2**32), "
                            f"got {self.seed!r}")
        budget = self.time_budget
        if budget is not None and (isinstance(budget, bool) or not isinstance(budget, (int, float))
                                   or not 0 < budget < float("inf")):
            raise UserError(f"time_budget (--time-budget) must be a finite number of seconds "
                            f"> 0, got {budget!r}")
        if not isinstance(self.importance, (int, float)) or not 0 <= self.importance < 1:
            raise UserError(f"importance (--importance) must be in [0, 1), got "
                            f"{self.importance!r}")
        if self.devices != "auto" and (isinstance(self.devices, bool)
                                       or not isinstance(self.devices, int) or self.devices < 1):
            raise UserError(f"devices (--devices) must be a whole number >= 1 or 'auto', got "
                            f"{self.devices!r}")
        wants_gpu = self.accelerator in ("gpu", "cuda")
        if wants_gpu and not torch.cuda.is_available():
            raise UserError(f"accelerator (--accelerator) {self.accelerator}: no CUDA GPU is "
                            "visible to PyTorch here; use --accelerator cpu or auto")
        if (wants_gpu or (self.accelerator == "auto" and torch.cuda.is_available())) \
                and isinstance(self.devices, int) and self.devices > torch.cuda.device_count():
            raise UserError(f"devices (--devices) {self.devices}: only "
                            f"{torch.cuda.device_count()} CUDA GPU(s) visible here")


def with_resolved_precision(cfg: TrainConfig) -> tuple[TrainConfig, Precision]:
    """``cfg`` with ``precision="auto"`` replaced by the choice for the device it will train on
    (printed once), so config.yaml records what the run really ran at."""
    device = device_for(cfg.accelerator)
    precision = resolve_precision(cfg.precision, device)
    announce_precision(precision, device)
    return replace(cfg, precision=precision.name), precision


class _NoTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Tip:" not in record.getMessage()


@contextmanager
def lightning_advice_silenced() -> Iterator[None]:
    """Drop the advice Lightning prints on every run that does not apply here: its cloud-logger
    tip (selfsight writes its own metrics.jsonl) and the DataLoader-workers warning (the images
    are in memory as uint8 and the views are made on the device, so workers have nothing to do)."""
    tips, logger = _NoTips(), logging.getLogger("lightning.pytorch.utilities.rank_zero")
    logger.addFilter(tips)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            yield
    finally:
        logger.removeFilter(tips)


def resume_step(run_dir: Path, resume: bool) -> tuple[int, Path | None]:
    """(global step to continue from, checkpoint path) for ``--resume``; refuse to overwrite."""
    ckpt = RunFolder(run_dir).checkpoint
    if not ckpt.is_file():
        return 0, None
    if not resume:
        raise RunFolderTaken(f"{run_dir} already holds a checkpoint ({ckpt}); pass --resume to "
                             "continue it, or choose another --out")
    return int(load_checkpoint(ckpt)["global_step"]), ckpt


def fit(
    method: Method,
    images: ImageSet,
    cfg: TrainConfig,
    run_dir: Path,
    resume: bool = False,
    knn_sets: tuple[ImageSet, ImageSet] | None = None,
) -> L.Trainer:
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    start_step, ckpt_path = resume_step(run_dir, resume)
    if not 0 <= cfg.importance < 1:
        raise UserError(f"importance must be in [0, 1), got {cfg.importance}")
    steps_per_epoch = len(images) // (cfg.batch_size - round(cfg.importance * cfg.batch_size))
    if len(images) < cfg.batch_size:
        remedy = "lower --batch-size" if len(images) >= 2 else "a batch needs at least 2"
        raise UserError(f"{images.name}: {len(images)} {images.noun} are fewer than one batch "
                        f"of {cfg.batch_size}; {remedy}")
    max_steps = cfg.max_steps or cfg.epochs * steps_per_epoch
    throughput = Throughput(cfg.batch_size)
    run = RunFolder(run_dir)
    AtomicCheckpointIO.remove_stale_temporaries(run_dir)  # a killed run's, holding space
    metrics = MetricsLog(run.metrics, throughput, cfg.log_every)
    stop = StopOnSignal()
    checkpoint = PeriodicCheckpoint(run.checkpoint, cfg.checkpoint_every,
                                    good_step=start_step if ckpt_path else None)
    callbacks: list[L.Callback] = [
        throughput, metrics, TimeBudget(), stop, checkpoint, OptimizerSettingsFromConfig(),
    ]
    if cfg.progress:
        callbacks.append(ProgressBar(throughput))
    monitor = KnnMonitor(*knn_sets, metrics, cfg.knn_every) \
        if knn_sets is not None and cfg.knn_every > 0 else None
    if monitor is not None:
        callbacks.append(monitor)
    method.backbone.to(memory_format=torch.channels_last)
    data = StepDataModule(images.images, cfg.batch_size, cfg.seed, start_step, cfg.workers,
                          cfg.importance)
    with lightning_advice_silenced():
        trainer = L.Trainer(
            accelerator=cfg.accelerator, devices=cfg.devices, num_nodes=cfg.num_nodes,
            strategy=cfg.strategy, precision=cfg.precision, max_steps=max_steps, max_epochs=-1,
            callbacks=callbacks, plugins=[AtomicCheckpointIO()], logger=False,
            enable_progress_bar=cfg.progress, enable_model_summary=False,
            enable_checkpointing=False, use_distributed_sampler=False, num_sanity_val_steps=0,
            log_every_n_steps=cfg.log_every, default_root_dir=run_dir,
        )
        try:
            trainer.fit(method, datamodule=data, ckpt_path=ckpt_path)
        except SIGTERMException:  # Lightning's own SIGTERM handler ends the fit after a step
            stop.received = stop.received or signal.SIGTERM
        except Diverged:  # found at a checkpoint write, which named the last good one
            raise
        except FloatingPointError as error:  # the method's check of each step's loss
            raise checkpoint.diverged(str(error)) from None
    # The final state, also when the time budget stopped training mid-epoch; never a
    # non-finite one, so the backbone fit_and_save writes from it is finite too.
    checkpoint.save(trainer)
    # The curve ends at the final weights, also when the last epoch was cut short.
    if stop.received is not None:
        interrupted = RunInterrupted(stop.received, f"step {trainer.global_step}; "
                                     f"{run.checkpoint} holds it, and the same command "
                                     "with --resume continues")
        interrupted.trainer = trainer
        raise interrupted
    if monitor is not None and trainer.is_global_zero and (
            not monitor.history or monitor.history[-1]["step"] != trainer.global_step):
        monitor.evaluate(trainer, method)
    return trainer


def fit_and_save(method: Method, images: ImageSet, cfg: TrainConfig, run_dir: Path,
                 resume: bool = False, knn_sets: tuple[ImageSet, ImageSet] | None = None) -> None:
    """:func:`fit`, then save the backbone to ``run_dir``; also when a signal stopped training,
    so the run folder always holds the weights its checkpoint holds. :func:`fit` returns or
    raises ``RunInterrupted`` only after its final checkpoint found the weights finite; a run
    that diverged raises ``Diverged`` and leaves any earlier backbone file as it was."""
    try:
        trainer = fit(method, images, cfg, run_dir, resume, knn_sets)
    except RunInterrupted as stopped:
        if stopped.trainer.is_global_zero:
            method.backbone.save(run_dir)
        raise
    if trainer.is_global_zero:
        method.backbone.save(run_dir)
