"""Callbacks: images/s in the progress bar, metrics.jsonl, a wall-clock budget, online kNN,
checkpoints that only ever hold finite weights, and on ``--resume`` the optimizer settings of
the current config."""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import TQDMProgressBar

from selfsight.artifacts import first_non_finite
from selfsight.data import ImageSet
from selfsight.errors import Diverged
from selfsight.eval.extract import extract_features
from selfsight.eval.knn import knn_accuracy
from selfsight.files import append_line


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
    """Stop before the method's wall-clock budget (carried across resumes) would be overrun: a
    step is not started when the slowest of the recent steps says it would end past the budget.
    The rule predicts, so a step slower than all recent ones (a loaded machine) can still end a
    little past the budget, never a whole typical step past it."""

    def __init__(self, window: int = 5) -> None:
        self.window = window
        self.step_seconds: list[float] = []  # the latest steps' durations, end to end
        self._last: float | None = None

    def expected_step(self) -> float:
        return max(self.step_seconds, default=0.0)

    def on_train_batch_start(self, *args: Any) -> None:
        if self._last is None:  # the first step: timed from its own start
            self._last = time.monotonic()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: Any, *args: Any) -> None:
        now = time.monotonic()  # end to end: checkpoints and kNN between steps count too
        self.step_seconds = [*self.step_seconds, now - self._last][-self.window:]
        self._last = now
        budget = pl_module.time_budget
        if budget and pl_module.elapsed + self.expected_step() >= budget:
            trainer.should_stop = True


class StopOnSignal(L.Callback):
    """Ctrl-C (SIGINT) or SIGTERM (timeout, Slurm, Kubernetes, docker stop) during training:
    finish the current step, write the checkpoint and stop; :func:`train.fit.fit` then says so
    and the command exits non-zero. A second signal stops at once."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.received is not None:  # the second one: stop now, as the default would
            self.restore()
            raise KeyboardInterrupt
        self.received = signum
        print(f"\n{signal.Signals(signum).name}: stopping after this step and writing the "
              "checkpoint (send it again to stop at once)", file=sys.stderr, flush=True)

    def on_fit_start(self, trainer: L.Trainer, pl_module: Any) -> None:
        # After Lightning registers its own handlers, so that these replace them for the fit.
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if self.received is not None:
            trainer.should_stop = True

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def teardown(self, trainer: L.Trainer, pl_module: Any, stage: str) -> None:
        self.restore()

    def on_exception(self, trainer: L.Trainer, pl_module: Any, exception: BaseException) -> None:
        self.restore()  # Lightning skips the teardown hooks when the fit raises


class MetricsLog(L.Callback):
    """Append one JSON object per ``every`` steps (and per kNN evaluation) to metrics.jsonl."""

    FIRST_STEPS = (2, 5, 10)

    def __init__(self, path: Path, throughput: Throughput, every: int = 20) -> None:
        self.path, self.throughput, self.every = path, throughput, every
        # CPU time of this process since the log started, evaluations excluded: on a shared
        # machine a fairer clock than wall time for comparing runs (one thread: compute time).
        self.cpu_started = time.process_time()

    def write(self, trainer: L.Trainer, pl_module: Any, **extra: Any) -> None:
        if not trainer.is_global_zero:
            return
        record = {"step": trainer.global_step, "epoch": trainer.current_epoch,
                  "elapsed": round(pl_module.elapsed, 3),
                  "cpu_seconds": round(time.process_time() - self.cpu_started, 3),
                  "images_seen": trainer.global_step * pl_module.batch_size}
        for key, value in trainer.callback_metrics.items():
            record[key] = float(value)
        record["images_per_sec"] = round(self.throughput.rate, 2)
        record.update(extra)
        append_line(self.path, json.dumps(record))  # whole lines; a full disk: one line

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: Any, *args: Any) -> None:
        step = trainer.global_step
        # The first lines come after a few steps: a slow start is seen at once, not after 20.
        if step % self.every == 0 or (step < self.every and step in self.FIRST_STEPS):
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
        started, cpu_started = time.monotonic(), time.process_time()
        bank = extract_features(backbone, self.bank.images, progress=False)
        test = extract_features(backbone, self.test.images, progress=False)
        acc = knn_accuracy(bank, torch.tensor(self.bank.labels), test,
                           torch.tensor(self.test.labels), ks=(self.k,))[f"knn_k{self.k}"]
        backbone.train(was_training)
        # Evaluation time is not training time: keep it out of the wall-clock budget.
        pl_module.elapsed_before -= time.monotonic() - started
        self.metrics.cpu_started += time.process_time() - cpu_started
        self.history.append({"step": trainer.global_step, "knn": acc})
        self.metrics.write(trainer, pl_module, online_knn=acc)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        if trainer.is_global_zero and (trainer.current_epoch + 1) % self.every == 0:
            self.evaluate(trainer, pl_module)


# What continues a run that went non-finite (the method options --resume may change).
DIVERGENCE_REMEDY = "a lower --set lr (or a longer --set warmup)"


class PeriodicCheckpoint(L.Callback):
    """Overwrite one resumable checkpoint every ``every`` steps, at each epoch end and at the end
    of training (the strategy's CheckpointIO makes each write atomic), but only with finite
    weights: a diverged state would otherwise replace the last good one, and ``--resume`` would
    start from NaN. ``good_step`` is the step the file at ``path`` already holds, if any."""

    def __init__(self, path: Path, every: int, good_step: int | None = None) -> None:
        self.path, self.every, self.good_step = path, every, good_step

    @staticmethod
    def non_finite(trainer: L.Trainer) -> str | None:
        """The first parameter or buffer (e.g. a batch-norm running variance) holding a NaN or
        inf, in this process or another, else None."""
        module = trainer.lightning_module
        bad = first_non_finite(dict([*module.named_parameters(), *module.named_buffers()]))
        # Every process must take the same branch: a lone raise would leave the others waiting
        # in the checkpoint's barrier.
        if trainer.strategy.reduce_boolean_decision(bad is not None, all=False):
            return bad or "another process's weights"
        return None

    def save(self, trainer: L.Trainer) -> None:
        """Write the checkpoint, or raise :class:`Diverged` if the weights are not finite."""
        bad = self.non_finite(trainer)
        if bad is not None:
            raise self.diverged(f"non-finite weights in {bad} at step {trainer.global_step}")
        trainer.save_checkpoint(self.path, weights_only=False)  # optimizer state too
        self.good_step = trainer.global_step

    def on_train_start(self, trainer: L.Trainer, *args: Any) -> None:
        # A checkpoint written before writes were checked may hold a diverged state: continuing
        # it would only fail at the next write, blaming the step it was resumed from.
        bad = self.non_finite(trainer) if trainer.ckpt_path is not None else None
        if bad is not None:
            raise Diverged(f"{trainer.ckpt_path}: holds non-finite weights (NaN/inf) in {bad}, "
                           "from a run that diverged, and cannot be continued; start again "
                           f"in a new --out with {DIVERGENCE_REMEDY}")

    def diverged(self, what: str) -> Diverged:
        """The one-line error for a run that went non-finite (``what``, naming the step): where
        the last good state is and how to continue from it."""
        if self.good_step is None:
            return Diverged(f"training diverged ({what}) before any checkpoint was written; "
                            f"start it again with {DIVERGENCE_REMEDY}")
        return Diverged(f"training diverged ({what}); {self.path} keeps the last good state "
                        f"(step {self.good_step}): the same command with --resume and "
                        f"{DIVERGENCE_REMEDY} continues from it")

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if self.every > 0 and trainer.global_step % self.every == 0:
            self.save(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self.save(trainer)


class OptimizerSettingsFromConfig(L.Callback):
    """On ``--resume``, Lightning restores the optimizer's hyperparameters (learning rate, weight
    decay, momentum, ...) with its state. ``--resume`` may change them, a lower learning rate
    being the way to continue a run that diverged, so after the restore each parameter group
    takes the settings a fresh optimizer gets from the current config and keeps only its state
    (e.g. momentum buffers)."""

    def on_train_start(self, trainer: L.Trainer, pl_module: Any) -> None:
        if trainer.ckpt_path is None:  # a new run: the optimizer was just made from the config
            return
        fresh = pl_module.configure_optimizers()  # a Method returns one optimizer
        (restored,) = trainer.optimizers
        for group, settings in zip(restored.param_groups, fresh.param_groups, strict=True):
            group.update({k: v for k, v in settings.items() if k != "params"})
