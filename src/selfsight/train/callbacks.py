"""Callbacks: images/s in the progress bar, metrics.jsonl, a wall-clock budget, online kNN."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import TQDMProgressBar

from selfsight.data import ImageSet
from selfsight.eval.extract import extract_features
from selfsight.eval.knn import knn_accuracy


class Throughput(L.Callback):
    """Global images/s (an image counts once however many views it has), smoothed."""

    def __init__(self, global_batch: int, smoothing: float = 0.9) -> None:
        self.global_batch, self.smoothing = global_batch, smoothing
        self.rate = 0.0
        self._last: float | None = None

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        now = time.perf_counter()
        if self._last is not None:
            rate = self.global_batch / max(now - self._last, 1e-9)
            self.rate = rate if self.rate == 0 else self.smoothing * self.rate + (
                1 - self.smoothing) * rate
        self._last = now


class ProgressBar(TQDMProgressBar):
    """Lightning's bar (rate and ETA per epoch) plus images/s and the remaining time budget."""

    def __init__(self, throughput: Throughput, refresh_rate: int = 5) -> None:
        super().__init__(refresh_rate=refresh_rate)
        self.throughput = throughput

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        metrics["img/s"] = f"{self.throughput.rate:.0f}"
        budget = getattr(pl_module, "time_budget", None)
        if budget:
            metrics["left"] = f"{max(budget - pl_module.elapsed, 0):.0f}s"
        return metrics


class TimeBudget(L.Callback):
    """Stop when the method's wall-clock budget (carried across resumes) is spent."""

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: Any, *args: Any) -> None:
        if pl_module.time_budget and pl_module.elapsed >= pl_module.time_budget:
            trainer.should_stop = True


class MetricsLog(L.Callback):
    """Append one JSON object per ``every`` steps (and per kNN evaluation) to metrics.jsonl."""

    def __init__(self, path: Path, throughput: Throughput, every: int = 20) -> None:
        self.path, self.throughput, self.every = path, throughput, every

    def write(self, trainer: L.Trainer, pl_module: Any, **extra: Any) -> None:
        if not trainer.is_global_zero:
            return
        record = {"step": trainer.global_step, "epoch": trainer.current_epoch,
                  "elapsed": round(pl_module.elapsed, 3),
                  "images_seen": trainer.global_step * pl_module.batch_size}
        for key, value in trainer.callback_metrics.items():
            record[key] = float(value)
        record["images_per_sec"] = round(self.throughput.rate, 2)
        record.update(extra)
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: Any, *args: Any) -> None:
        if trainer.global_step % self.every == 0:
            self.write(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        if trainer.global_step % self.every:  # the final step, unless just written
            self.write(trainer, pl_module)


class KnnMonitor(L.Callback):
    """Online kNN (k=200, T=0.1) on a labelled bank/test pair every ``every`` epochs and at the
    end, logged to metrics.jsonl: accuracy against wall clock and images seen."""

    def __init__(self, bank: ImageSet, test: ImageSet, metrics: MetricsLog, every: int = 1,
                 k: int = 200) -> None:
        self.bank, self.test, self.metrics, self.every, self.k = bank, test, metrics, every, k
        self.history: list[dict[str, float]] = []

    def evaluate(self, trainer: L.Trainer, pl_module: Any) -> None:
        backbone = pl_module.backbone
        was_training = backbone.training
        started = time.monotonic()
        bank = extract_features(backbone, self.bank.images, progress=False)
        test = extract_features(backbone, self.test.images, progress=False)
        acc = knn_accuracy(bank, torch.tensor(self.bank.labels), test,
                           torch.tensor(self.test.labels), ks=(self.k,))[f"knn_k{self.k}"]
        backbone.train(was_training)
        # Evaluation time is not training time: keep it out of the wall-clock budget.
        pl_module.elapsed_before -= time.monotonic() - started
        self.history.append({"step": trainer.global_step, "knn": acc})
        self.metrics.write(trainer, pl_module, online_knn=acc)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        if trainer.is_global_zero and (trainer.current_epoch + 1) % self.every == 0:
            self.evaluate(trainer, pl_module)


class PeriodicCheckpoint(L.Callback):
    """Overwrite one resumable checkpoint every ``every`` steps, at each epoch end and at the end
    of training (the strategy's CheckpointIO makes each write atomic)."""

    def __init__(self, path: Path, every: int) -> None:
        self.path, self.every = path, every

    def save(self, trainer: L.Trainer) -> None:
        trainer.save_checkpoint(self.path, weights_only=False)  # optimizer state too

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if self.every > 0 and trainer.global_step % self.every == 0:
            self.save(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self.save(trainer)
