"""`selfsight pretrain --init FILE|RUN`: start self-supervised training from existing weights
(selfsight.train.init_weights). Tiny models, weights written here: nothing is downloaded."""

import numpy as np
import pytest
import timm
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file, save_file

from selfsight.backbones import Backbone, backbone_config
from selfsight.cli import main
from selfsight.errors import UserError
from selfsight.train.init_weights import load_initial_weights

CHANNELS = (8, 16, 32, 64)
TINY = ["--backbone-set", "stem_stride=2", "--backbone-set", "channels=(8,16,32,64)",
        "--set", "proj_hidden_dim=64", "--precision", "32-true", "--no-progress"]


def tiny_backbone(size=224, channels=3, **options):
    return Backbone(backbone_config("resnet18", channels, size,
                                    {"channels": CHANNELS, "stem_stride": 2, **options}))


def imagenet_style(channels=CHANNELS):
    """A timm resnet18 with its classifier, as a timm or torchvision checkpoint holds it."""
    torch.manual_seed(1)
    model = timm.create_model("resnet18", channels=channels, num_classes=10)
    with torch.no_grad():  # not the values a fresh model would have
        for p in model.parameters():
            p.normal_()
    return model.state_dict()


def assert_loaded(backbone, weights, skip=()):
    own = backbone.model.state_dict()
    for key, value in weights.items():
        if key in own and key not in skip:
            assert torch.equal(own[key], value), key


def test_a_wrapped_torch_checkpoint_loads_without_its_head(tmp_path):
    weights = imagenet_style()
    path = tmp_path / "resnet18.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in weights.items()}, "epoch": 90},
               path)
    backbone = tiny_backbone()
    report = load_initial_weights(backbone, path)
    assert_loaded(backbone, weights)
    assert report.loaded == len(backbone.model.state_dict()) and not report.missing
    assert report.unused == ["module.fc.weight", "module.fc.bias"]
    line = report.lines()[0]
    assert line.startswith(f"init: {report.loaded} tensors from {path} (0 missing; 2 unused: ")
    assert "module.fc.weight" in line


def test_a_safetensors_file_and_the_small_image_stem(tmp_path):
    """Same weights as safetensors, into a 16-px backbone: its 3x3 stem cannot take the 7x7
    ImageNet conv1, which is skipped and said so; everything else loads."""
    weights = imagenet_style()
    path = tmp_path / "resnet18.safetensors"
    save_file({f"model.{k}": v.contiguous() for k, v in weights.items()}, str(path))
    backbone = tiny_backbone(size=16)
    report = load_initial_weights(backbone, path)
    assert_loaded(backbone, weights, skip={"conv1.weight"})
    assert report.skipped == ["conv1.weight (64x3x7x7 -> 64x3x3x3)"]
    assert report.loaded == len(backbone.model.state_dict()) - 1
    assert sorted(u.removeprefix("model.") for u in report.unused) == ["fc.bias", "fc.weight"]
    assert "skipped 1" in report.lines()[1] and "conv1.weight" in report.lines()[1]


def test_gray_images_from_an_rgb_checkpoint(tmp_path):
    weights = imagenet_style()
    torch.save(weights, tmp_path / "rgb.pt")
    backbone = tiny_backbone(channels=1)
    report = load_initial_weights(backbone, tmp_path / "rgb.pt")
    assert backbone.model.conv1.weight.shape[1] == 1
    assert report.adapted and report.adapted[0].startswith("conv1.weight")
    assert_loaded(backbone, weights, skip={"conv1.weight"})


@pytest.mark.parametrize("other", ["channels", "vit"])
def test_another_architecture_is_one_line_naming_the_file(tmp_path, other):
    if other == "channels":
        weights = imagenet_style(channels=(16, 32, 64, 128))
    else:
        weights = timm.create_model("vit_tiny_patch16_224", depth=2, num_classes=0).state_dict()
    path = tmp_path / f"{other}.pth"
    torch.save(weights, path)
    backbone = tiny_backbone()
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    with pytest.raises(UserError) as caught:
        load_initial_weights(backbone, path)
    message = str(caught.value)
    assert str(path) in message and "\n" not in message
    assert ("layer1.0.conv1.weight 16x64x3x3 (here 8x64x3x3)" in message if other == "channels"
            else "only 0 of resnet18's" in message)
    assert all(torch.equal(before[k], v) for k, v in backbone.state_dict().items())


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return exec, (f"open({str(marker)!r}, 'w').write('x')",)

    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"conv1.weight": torch.zeros(1)}, "x": Payload()}, path)
    with pytest.raises(UserError, match="refused"):
        load_initial_weights(tiny_backbone(), path)
    assert not marker.exists()


def make_images(root, count=40):
    rng = np.random.default_rng(0)
    root.mkdir()
    for i in range(count):
        img = rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)
        Image.fromarray(img).save(root / f"{i}.png")


def test_pretrain_init_from_a_run_then_resume(tmp_path, capsys):
    """A run started from another run's backbone trains on from its weights (a tiny learning
    rate keeps them close); config.yaml records the init, and --resume keeps that record."""
    data, first, second = tmp_path / "images", tmp_path / "first", tmp_path / "second"
    make_images(data)
    common = [str(data), "--image-size", "16", "--batch-size", "16", *TINY]
    assert main(["pretrain", *common, "--max-steps", "1", "--out", str(first)]) == 0
    capsys.readouterr()
    assert main(["pretrain", *common, "--max-steps", "1", "--out", str(second),
                 "--init", str(first), "--seed", "5", "--set", "lr=1e-9"]) == 0
    out = capsys.readouterr().out
    start, after = (load_file(str(run / "backbone.safetensors")) for run in (first, second))
    assert f"init: {len(start)} tensors from {first} (0 missing; 0 unused)" in out
    weights = [k for k in start if k.endswith("conv1.weight")]
    assert weights and all(torch.allclose(start[k], after[k], atol=1e-6) for k in weights)
    config = yaml.safe_load((second / "config.yaml").read_text())
    assert config["init"] == {"source": str(first), "loaded": len(start), "missing": 0,
                              "unused": 0}
    # --resume without --init continues from the checkpoint and keeps the record.
    assert main(["pretrain", *common, "--max-steps", "2", "--out", str(second), "--resume",
                 "--seed", "5", "--set", "lr=1e-9"]) == 0
    assert yaml.safe_load((second / "config.yaml").read_text())["init"] == config["init"]


def test_init_from_a_run_with_another_backbone_names_what_differs(tmp_path, capsys):
    run = tmp_path / "run"
    tiny_backbone(size=16).save(run)
    data = tmp_path / "images"
    make_images(data, count=16)
    assert main(["pretrain", str(data), "--image-size", "16", "--batch-size", "16",
                 "--max-steps", "1", "--out", str(tmp_path / "new"), "--init", str(run),
                 "--backbone-set", "stem_stride=2", "--backbone-set", "channels=(8,16,32,128)",
                 "--precision", "32-true", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert str(run) in err and "model_kwargs" in err and "(8, 16, 32, 128)" in err


def test_a_missing_init_fails_before_the_run_starts(tmp_path, capsys):
    missing, data, out = tmp_path / "nowhere.pth", tmp_path / "images", tmp_path / "run"
    make_images(data, count=16)
    assert main(["pretrain", str(data), "--init", str(missing), "--out", str(out), *TINY]) == 2
    assert str(missing) in capsys.readouterr().err
    assert not out.exists()


def test_ema_copies_start_from_the_loaded_weights(tmp_path):
    """BYOL's target (like DINO's teacher) is a copy made when the method is built: it must
    start from the loaded weights too, not from the random ones."""
    from selfsight.methods import get_method
    from selfsight.train.init_weights import init_method

    weights = imagenet_style()
    torch.save(weights, tmp_path / "resnet18.pth")
    config = backbone_config("resnet18", 3, 16, {"channels": CHANNELS, "stem_stride": 2})
    byol = get_method("byol")(backbone=config)
    init_method(byol, tmp_path / "resnet18.pth")
    online, target = byol.backbone.state_dict(), byol.target_backbone.state_dict()
    assert torch.equal(online["model.layer1.0.conv1.weight"],
                       weights["layer1.0.conv1.weight"])
    assert all(torch.equal(online[k], target[k]) for k in online)
