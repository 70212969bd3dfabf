"""A run answers to its budget and to signals; the CLI starts without the heavy libraries;
defaults follow the device and the folder."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from selfsight.train.defaults import choose_backbone, choose_batch_size

EXE = Path(sys.executable).parent / "selfsight"
TINY = ["--backbone", "resnet18", "--backbone-set", "stem_stride=2", "--backbone-set",
        "channels=(8,16,32,64)", "--set", "proj_hidden_dim=32", "--precision", "32-true",
        "--no-progress", "--accelerator", "cpu"]
HEAVY = ("torch", "lightning", "matplotlib", "onnxruntime", "onnx", "torchvision", "timm",
         "sklearn", "scipy")


def test_the_cli_parses_without_importing_the_heavy_libraries():
    code = ("import sys\nfrom selfsight.cli import build_parser\nbuild_parser()\n"
            f"print([m for m in {HEAVY!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
    helped = subprocess.run([str(EXE), "pretrain", "--help"], capture_output=True, text=True)
    assert helped.returncode == 0 and "--precision" in helped.stdout


class StepClock:
    """A monotonic clock that only moves when a training step says so: each step lasts the next
    of ``seconds`` (cycled), whatever the machine does meanwhile, so the budget's arithmetic is
    checked exactly rather than against a wall clock that a loaded machine stretches."""

    def __init__(self, seconds: list[float]) -> None:
        self.seconds, self.now, self.steps = seconds, 1000.0, 0

    def step(self) -> None:
        self.now += self.seconds[self.steps % len(self.seconds)]
        self.steps += 1

    def monotonic(self) -> float:
        return self.now


def install_step_clock(monkeypatch, seconds: list[float]) -> StepClock:
    """Training steps that last ``seconds`` (cycled) on the clock the time budget reads."""
    import types

    from selfsight.methods import base
    from selfsight.methods.simclr import SimCLR
    from selfsight.train import callbacks

    clock = StepClock(seconds)
    fake_time = types.SimpleNamespace(monotonic=clock.monotonic, perf_counter=time.perf_counter,
                                      process_time=time.process_time)
    monkeypatch.setattr(base, "time", fake_time)
    monkeypatch.setattr(callbacks, "time", fake_time)
    step = SimCLR.compute_loss

    def timed(self, views):
        clock.step()
        return step(self, views)

    monkeypatch.setattr(SimCLR, "compute_loss", timed)
    return clock


def run_with_timed_steps(tmp_path, data, monkeypatch, seconds: list[float],
                         budget: float) -> list:
    """metrics.jsonl of a run whose steps last ``seconds`` (cycled), under ``budget``."""
    import selfsight

    install_step_clock(monkeypatch, seconds)
    run = selfsight.pretrain(data.subset(range(256)), backbone="resnet18", out=tmp_path / "run",
                             batch_size=32, time_budget=budget,
                             backbone_options={"channels": (8, 16, 32, 64), "stem_stride": 2},
                             options={"proj_hidden_dim": 32}, precision="32-true",
                             accelerator="cpu", progress=False, log_every=1)
    return [json.loads(line) for line in (run / "metrics.jsonl").open()]


def test_a_step_is_not_started_when_it_would_end_past_the_budget(tmp_path, fmnist_small,
                                                                 monkeypatch):
    """Steps of 0.4 s against a 3.9 s budget: nine steps (3.6 s) and no tenth, which would end
    at 4.0 (checked only after each step, the run ended a whole step late)."""
    records = run_with_timed_steps(tmp_path, fmnist_small, monkeypatch, [0.4], 3.9)
    assert records[-1]["step"] == 9
    assert records[-1]["elapsed"] == pytest.approx(3.6, abs=1e-3)


def test_uneven_steps_are_judged_by_the_slowest_recent_one(tmp_path, fmnist_small, monkeypatch):
    """Steps of 0.1, 0.1, 0.5 s (repeated) under a 2.5 s budget: judged by a typical (median)
    step the run would go on to 2.3 s and start a 0.5 s step that ends at 2.8; judged by the
    slowest recent step it stops after the ninth, at 2.1 s, since a tenth might take 0.5."""
    records = run_with_timed_steps(tmp_path, fmnist_small, monkeypatch, [0.1, 0.1, 0.5], 2.5)
    assert records[-1]["step"] == 9
    assert records[-1]["elapsed"] == pytest.approx(2.1, abs=1e-3)


def test_one_step_longer_than_half_the_budget_is_not_repeated(tmp_path, fmnist_small,
                                                               monkeypatch):
    """The first step already says what a step costs: a 1.2 s step in a 2 s budget runs once."""
    records = run_with_timed_steps(tmp_path, fmnist_small, monkeypatch, [1.2], 2.0)
    assert records[-1]["step"] == 1 and records[-1]["elapsed"] == pytest.approx(1.2, abs=1e-3)


def test_first_metrics_come_after_a_few_steps(tmp_path, fmnist_small):
    import selfsight

    run = selfsight.pretrain(fmnist_small.subset(range(256)), backbone="resnet18",
                             out=tmp_path / "run", batch_size=32, max_steps=6,
                             backbone_options={"channels": (8, 16, 32, 64), "stem_stride": 2},
                             options={"proj_hidden_dim": 32}, precision="32-true",
                             accelerator="cpu", progress=False)
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").open()]
    assert steps[:2] == [2, 5] and steps[-1] == 6


def make_folder(root, n=96):
    from PIL import Image

    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8)).save(root / f"{i}.png")


def test_sigterm_stops_after_the_step_keeps_the_work_and_exits_non_zero(tmp_path):
    data, run = tmp_path / "images", tmp_path / "run"
    make_folder(data)
    command = [str(EXE), "pretrain", str(data), "--image-size", "16", "--batch-size", "16",
               "--max-steps", "100000", "--checkpoint-every", "100000", "--out", str(run), *TINY]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    metrics = run / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not (metrics.is_file() and metrics.stat().st_size) and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    _, err = proc.communicate(timeout=60)
    assert time.monotonic() - sent < 15
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert "stopped by SIGTERM" in err and "--resume" in err
    assert (run / "backbone.safetensors").is_file()
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    stopped_at = checkpoint["global_step"]
    assert stopped_at >= 2  # the work done so far was written, not only the last periodic save
    # and the run continues from there
    resumed = subprocess.run([*command[:command.index("--max-steps") + 1], str(stopped_at + 2),
                              *command[command.index("--max-steps") + 2:], "--resume"],
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert torch.load(run / "checkpoints" / "last.ckpt",
                      weights_only=True)["global_step"] == stopped_at + 2


def test_defaults_follow_the_device_and_the_folder():
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert choose_backbone("auto", cpu) == "resnet10_cpu"
    assert choose_backbone("auto", gpu) == "resnet18"
    assert choose_backbone("auto", cpu, vit=True).startswith("vit_")
    assert choose_backbone("resnet50", cpu) == "resnet50"
    assert choose_batch_size(None, cpu, 60_000) == 512
    assert choose_batch_size(None, gpu, 60_000) == 256
    assert choose_batch_size(None, cpu, 1797) == 256  # 7 steps per epoch
    assert choose_batch_size(None, cpu, 100) == 16
    assert choose_batch_size(None, cpu, 20) == 8
    assert choose_batch_size(None, cpu, 5) == 5
    assert choose_batch_size(64, cpu, 100) == 64


def test_a_small_folder_trains_with_the_defaults(tmp_path, capsys):
    from selfsight.cli import main

    data, run = tmp_path / "images", tmp_path / "run"
    make_folder(data, n=40)
    assert main(["pretrain", str(data), "--image-size", "16", "--max-steps", "2", "--out",
                 str(run), "--no-progress", "--accelerator", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "backbone: resnet10_cpu (auto on cpu" in err and "batch size: 8 (auto" in err
    assert "decoding images" not in err and "%|" not in err  # --no-progress: no bars at all
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["train"]["batch_size"] == 8 and config["train"]["precision"] != "auto"


def test_listing_methods_without_importing_them_matches_the_registry():
    import selfsight
    from selfsight.cli.catalogue import method_descriptions

    assert method_descriptions() == selfsight.list_methods()


def test_evaluate_shows_each_stage_and_no_progress_silences_it(tmp_path, capsys):
    from selfsight.cli import main
    from test_cli import make_folder as labelled_folder  # two classes, train/ and test/

    data, run = tmp_path / "images", tmp_path / "run"
    labelled_folder(data, per_class=30)
    assert main(["pretrain", str(data), "--max-steps", "2", "--batch-size", "16", "--out",
                 str(run), *TINY]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(run), "--data", str(data), "--precision", "32-true"]) == 0
    err = capsys.readouterr().err
    for stage in ("kNN (k = 20, 200)", "linear probe", "raw-pixel kNN", "kNN sweep", "few-shot",
                  "k-means clustering (120 of 120 images", "robustness (60 images)",
                  "per-class accuracy"):
        assert stage in err, stage
    assert "done in" in err
    assert main(["evaluate", str(run), "--data", str(data), "--precision", "32-true",
                 "--no-progress"]) == 0
    quiet = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert all(line.startswith("precision:") for line in quiet), quiet


def test_a_time_budget_not_epochs_ends_a_small_folders_run(tmp_path, fmnist_small,
                                                           monkeypatch):
    """Without --epochs, a budget decides: 100 epochs of 20 images end in seconds, long before
    the minutes a user asked for. Steps of 0.1 s on the budget's clock (:class:`StepClock`)."""
    import yaml

    import selfsight
    from selfsight.train.defaults import DEFAULT_EPOCHS, choose_epochs

    assert choose_epochs(None, None) == DEFAULT_EPOCHS and choose_epochs(7, 60.0) == 7
    clock = install_step_clock(monkeypatch, [0.1])
    run = selfsight.pretrain(fmnist_small.subset(range(16)), backbone="resnet18",
                             out=tmp_path / "run", batch_size=8, time_budget=3.0,
                             backbone_options={"channels": (8, 16, 32, 64), "stem_stride": 2},
                             options={"proj_hidden_dim": 32}, precision="32-true",
                             accelerator="cpu", progress=False)
    epochs = yaml.safe_load((run / "config.yaml").read_text())["train"]["epochs"]
    assert epochs == choose_epochs(None, 3.0) > DEFAULT_EPOCHS
    last = [json.loads(line) for line in (run / "metrics.jsonl").open()][-1]
    # The budget, not an epoch count, ended it: the last step that fits, of 2 per epoch.
    assert last["elapsed"] == pytest.approx(2.9, abs=0.01) and clock.steps < 2 * epochs
