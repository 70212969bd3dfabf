"""The precision every verb runs at is decided in one place, from the hardware."""

import json

import pytest
import torch
import yaml

import selfsight.device as device_module
from selfsight.backbones import Backbone, backbone_config
from selfsight.device import (
    autocast,
    computing_at,
    cpu_has_native_bf16,
    current_precision,
    resolve_precision,
)


def yes():
    return True


def no():
    return False


@pytest.mark.parametrize(("device", "cpu", "gpu", "expected"), [
    ("cpu", no, yes, "32-true"),  # AVX2 only: bf16 would be emulated, several times slower
    ("cpu", yes, no, "bf16-mixed"),  # AVX-512 BF16 / AMX
    ("cuda", no, yes, "bf16-mixed"),  # Ampere and later
    ("cuda", yes, no, "16-mixed"),  # a GPU without bf16
])
def test_auto_follows_the_hardware(device, cpu, gpu, expected):
    chosen = resolve_precision("auto", device, cpu_bf16=cpu, gpu_bf16=gpu)
    assert chosen.name == expected and chosen.reason.startswith("auto")


def test_an_explicit_precision_wins_and_a_bad_one_lists_the_choices():
    assert resolve_precision("bf16-mixed", "cpu", cpu_bf16=no).name == "bf16-mixed"
    with pytest.raises(ValueError, match="valid: auto, 32-true"):
        resolve_precision("fp8", "cpu")


def test_a_onednn_cap_below_bf16_means_no_native_bf16(monkeypatch):
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert not cpu_has_native_bf16()


def test_inference_runs_at_the_chosen_precision():
    layer = torch.nn.Linear(8, 4)
    x = torch.randn(2, 8)
    with computing_at("32-true", "cpu", announce=False), autocast(torch.device("cpu")):
        assert layer(x).dtype == torch.float32
    with computing_at("bf16-mixed", "cpu", announce=False):
        assert current_precision("cpu").name == "bf16-mixed"
        with autocast(torch.device("cpu")):
            assert layer(x).dtype == torch.bfloat16


@pytest.mark.parametrize(("native", "expected"), [(False, "32-true"), (True, "bf16-mixed")])
def test_pretrain_and_evaluate_record_the_resolved_precision(tmp_path, fmnist_small,
                                                             monkeypatch, native, expected):
    import selfsight

    monkeypatch.setattr(device_module, "cpu_has_native_bf16", lambda: native)
    run = selfsight.pretrain(fmnist_small.subset(range(256)), backbone="resnet18",
                             out=tmp_path / "run", batch_size=64, max_steps=2,
                             backbone_options={"channels": (8, 16, 32, 64), "stem_stride": 2},
                             options={"proj_hidden_dim": 32}, accelerator="cpu",
                             progress=False)
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["train"]["precision"] == expected
    assert config["precision_reason"].startswith("auto")
    embedded = selfsight.embed(run, fmnist_small.images[:64], tmp_path / "e.npy", device="cpu",
                               progress=False)
    assert embedded["precision"] == expected
    assert json.loads((tmp_path / "e.npy.json").read_text())["precision"] == expected


def test_every_verb_that_infers_takes_precision():
    import inspect

    import selfsight

    for verb in ("evaluate", "explore", "drift", "embed", "finetune", "predict", "anomaly_fit",
                 "anomaly_score", "segment"):
        function = getattr(selfsight, verb)
        assert hasattr(function, "__wrapped__"), f"{verb} does not resolve its precision"
        with pytest.raises(ValueError, match="unknown precision"):
            function(*[None] * len([p for p in inspect.signature(function).parameters.values()
                                    if p.default is p.empty and p.kind == p.POSITIONAL_OR_KEYWORD]),
                     precision="fp8")


def test_backbone_features_stay_close_in_fp32_and_bf16(fmnist_small):
    backbone = Backbone(backbone_config("resnet18", 1, 28, {"channels": (8, 16, 32, 64)}))
    from selfsight.eval import extract_features

    images = fmnist_small.images[:32]
    with computing_at("32-true", "cpu", announce=False):
        fp32 = extract_features(backbone, images, device="cpu", progress=False)
    with computing_at("bf16-mixed", "cpu", announce=False):
        bf16 = extract_features(backbone, images, device="cpu", progress=False)
    assert not torch.equal(fp32, bf16)  # the precision really changed
    assert torch.nn.functional.cosine_similarity(fp32, bf16).min() > 0.98
