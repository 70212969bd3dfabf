"""Methods: registry, options, and SimCLR actually learning on real images."""

import json
import time

import pytest
import torch

import selfsight
from selfsight.config import config_from_dict
from selfsight.methods import get_method, list_methods
from selfsight.methods.base import MethodConfig
from selfsight.nn.schedules import warmup_cosine


def test_registry_lists_and_rejects():
    assert "simclr" in list_methods() and "Chen et al." in list_methods()["simclr"]
    with pytest.raises(ValueError, match=r"valid: .*simclr"):
        get_method("simclrr")


def test_options_are_typed_and_unknown_keys_listed():
    cfg = config_from_dict(get_method("simclr").Config, {"temperature": "0.3", "lr": 1}, "x")
    assert cfg.temperature == 0.3 and isinstance(cfg.lr, float)
    with pytest.raises(ValueError, match="temperature"):
        config_from_dict(get_method("simclr").Config, {"temprature": 0.1}, "simclr options")
    with pytest.raises(TypeError, match="number"):
        config_from_dict(MethodConfig, {"lr": "fast"}, "x")


def test_warmup_cosine_schedule():
    assert warmup_cosine(0.0, 1.0, 0.1) == 0.0
    assert warmup_cosine(0.05, 1.0, 0.1) == pytest.approx(0.5)
    assert warmup_cosine(0.1, 1.0, 0.1) == pytest.approx(1.0)
    assert warmup_cosine(0.55, 1.0, 0.1) == pytest.approx(0.5)
    assert warmup_cosine(1.0, 1.0, 0.1, final=0.01) == pytest.approx(0.01)


def test_weight_decay_skips_norms_and_biases():
    from selfsight.api import backbone_config

    method = get_method("simclr")(backbone=backbone_config("resnet18_cpu", 1, 28, None))
    decay, no_decay = method.configure_optimizers().param_groups
    assert all(p.ndim > 1 for p in decay["params"]) and decay["weight_decay"] > 0
    assert all(p.ndim <= 1 for p in no_decay["params"]) and no_decay["weight_decay"] == 0
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(method.parameters()))


def test_simclr_lowers_its_loss_on_fashion_mnist(fmnist_small, tmp_path):
    run = selfsight.pretrain(fmnist_small, "simclr", "resnet18", tmp_path, batch_size=128,
                             max_steps=45, log_every=1, progress=False, precision="32-true",
                             backbone_options={"stem_stride": 2, "channels": (16, 32, 64, 128)},
                             options={"proj_hidden_dim": 256})
    losses = [json.loads(line)["loss"] for line in (run / "metrics.jsonl").open()]
    assert len(losses) >= 40
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < first - 0.3, (first, last)
    backbone = selfsight.load_backbone(run)
    assert backbone(torch.zeros(2, 1, 28, 28)).shape == (2, 128)


def test_online_knn_monitor_logs_accuracy(tmp_path):
    from selfsight.data import load_fashion_mnist

    try:
        load_fashion_mnist("test")
    except FileNotFoundError:
        pytest.skip("dataset-fashion-mnist is not installed")
    started = time.process_time()
    run = selfsight.pretrain("fashion-mnist", "simclr", "resnet18_cpu", tmp_path, batch_size=64,
                             max_steps=3, knn_every=1, progress=False, view_size=16,
                             options={"proj_hidden_dim": 64})
    records = [json.loads(line) for line in (run / "metrics.jsonl").open()]
    knn = [r["online_knn"] for r in records if "online_knn" in r]
    assert len(knn) == 1 and 0.3 < knn[0] <= 1.0  # 10 classes: chance is 0.1
    # The training clocks leave the kNN out: embedding 20,000 images takes longer than 3 steps.
    cpu = [r["cpu_seconds"] for r in records]
    assert cpu == sorted(cpu) and cpu[0] > 0
    assert records[-1]["cpu_seconds"] < 0.5 * (time.process_time() - started)


def test_rotnet_learns_to_tell_rotations_on_fashion_mnist(fmnist_small, tmp_path):
    run = selfsight.pretrain(fmnist_small, "rotnet", "resnet18", tmp_path, batch_size=64,
                             max_steps=60, log_every=1, progress=False, precision="32-true",
                             backbone_options={"stem_stride": 2, "channels": (16, 32, 64, 128)},
                             options={"lr": 0.4})  # per 256 images: 0.1 at this batch
    records = [json.loads(line) for line in (run / "metrics.jsonl").open()]
    first = sum(r["loss"] for r in records[:5]) / 5
    last = sum(r["loss"] for r in records[-5:]) / 5
    accuracy = sum(r["rotation_accuracy"] for r in records[-5:]) / 5
    assert last < first - 0.2 and accuracy > 0.45, (first, last, accuracy)  # chance: 0.25
