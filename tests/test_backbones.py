import json
from dataclasses import asdict, fields

import pytest
import torch
from torch import nn

from selfsight.backbone_names import ALIASES, OPTIONS
from selfsight.backbones import (
    RECORDED,
    Backbone,
    BackboneConfig,
    alias_of,
    backbone_config,
    load_backbone,
)


def test_small_stem_is_3x3_stride_1_without_maxpool():
    b = Backbone(BackboneConfig("resnet18", in_chans=1, image_size=28))
    assert b.model.conv1.kernel_size == (3, 3) and b.model.conv1.stride == (1, 1)
    assert isinstance(b.model.maxpool, nn.Identity)
    assert b.model.conv1.in_channels == 1
    out = b.features(torch.randn(2, 1, 28, 28), tokens=True, levels=[1, 2, 3, 4])
    assert out["pooled"].shape == (2, 512)
    assert out["tokens"].shape == (2, 512, 4, 4)  # 28 -> 28, 14, 7, 4
    assert [lvl.shape[1] for lvl in out["levels"]] == [64, 128, 256, 512]
    assert b.level_dims() == [64, 64, 128, 256, 512]  # stem, then the four stages


def test_large_images_keep_the_imagenet_stem():
    b = Backbone(BackboneConfig("resnet18", in_chans=3, image_size=224))
    assert b.model.conv1.stride == (2, 2) and isinstance(b.model.maxpool, nn.MaxPool2d)


def test_vit_size_and_patch_tokens_from_the_data():
    b = Backbone(BackboneConfig("vit_tiny_patch16_224", in_chans=1, image_size=28))
    out = b.features(torch.randn(2, 1, 28, 28), tokens=True, levels=[-1])
    assert out["pooled"].shape == (2, 192)
    assert out["tokens"].shape == (2, 192, 7, 7)  # patch 4 on 28 px
    assert out["levels"][0].shape == (2, 192, 7, 7)


@pytest.mark.parametrize("name", ["convnext_atto", "mobilenetv3_small_050"])
def test_other_timm_families_get_a_small_stem(name):
    b = Backbone(BackboneConfig(name, in_chans=3, image_size=32))
    assert b(torch.randn(2, 3, 32, 32)).shape == (2, b.dim)
    first = next(m for m in b.model.modules() if isinstance(m, nn.Conv2d))
    assert first.kernel_size == (3, 3) and first.stride == (1, 1)


def test_unknown_backbone_lists_choices():
    with pytest.raises(ValueError, match=r"resnet18.*did you mean"):
        Backbone(BackboneConfig("resnet181"))


def test_save_and_load_rebuild_the_same_features(tmp_path):
    cfg = BackboneConfig("resnet18", in_chans=1, image_size=28, stem_stride=2,
                         model_kwargs={"channels": (8, 16, 32, 64)}, mean=(0.4,), std=(0.2,))
    b = Backbone(cfg).eval()
    b.save(tmp_path)
    again = load_backbone(tmp_path)
    x = torch.randn(3, 1, 28, 28)
    assert torch.equal(b(x), again(x))
    assert again.config.mean == (0.4,)


def test_backbone_matches_plain_timm_on_large_images():
    import timm

    torch.manual_seed(0)
    b = Backbone(BackboneConfig("resnet18", image_size=64, small_stem=False)).eval()
    ref = timm.create_model("resnet18", num_classes=0).eval()
    ref.load_state_dict(b.model.state_dict())
    x = torch.randn(2, 3, 64, 64)
    assert torch.allclose(b(x), ref(x), atol=1e-6)


def test_cpu_alias_resolves_to_a_rebuildable_config():
    from selfsight.api import backbone_config

    cfg = backbone_config("resnet18_cpu", 1, 20, {"drop_rate": 0.1})
    assert cfg.name == "resnet18" and cfg.stem_stride == 2
    assert cfg.model_kwargs == {"channels": (32, 64, 128, 256), "drop_rate": 0.1}
    assert Backbone(cfg).dim == 256


def test_quarter_alias_has_quarter_width_and_the_stride_2_stem():
    from selfsight.api import backbone_config

    b = Backbone(backbone_config("resnet18_cpu_quarter", 1, 20, None))
    assert b.model.conv1.stride == (2, 2)  # the stem keeps timm's 64 channels; stages shrink
    levels = b.features(torch.randn(2, 1, 20, 20), levels=[1, 2, 3, 4])["levels"]
    assert [f.shape[1] for f in levels] == [16, 32, 64, 128] and b.dim == 128


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_a_narrower_stem_feeds_the_first_block_and_survives_save_and_load(name, tmp_path):
    cfg = BackboneConfig(name, in_chans=1, image_size=20, stem_stride=2, stem_width=16)
    b = Backbone(cfg).eval()
    assert b.model.conv1.out_channels == 16 and b.model.bn1.num_features == 16
    out = b.features(torch.randn(2, 1, 20, 20), levels=[0, 1])
    assert out["levels"][0].shape == (2, 16, 10, 10)  # the stem
    assert out["levels"][1].shape[1] == b.model.layer1[-1].conv2.out_channels * (
        4 if name == "resnet50" else 1)
    wide = Backbone(BackboneConfig(name, in_chans=1, image_size=20, stem_stride=2))
    assert sum(p.numel() for p in b.parameters()) < sum(p.numel() for p in wide.parameters())
    b.save(tmp_path)
    x = torch.randn(3, 1, 20, 20)
    assert torch.equal(b(x), load_backbone(tmp_path)(x))


def test_stem_width_on_a_model_without_a_resnet_stem_is_a_clear_error():
    with pytest.raises(ValueError, match="stem_width is supported for ResNet"):
        Backbone(BackboneConfig("convnext_atto", in_chans=3, image_size=32, stem_width=16))


def test_tiny_alias_is_the_quarter_network_with_a_16_channel_stem():
    from selfsight.api import backbone_config

    tiny = Backbone(backbone_config("resnet18_cpu_tiny", 1, 20, None))
    assert tiny.model.conv1.out_channels == 16 and tiny.model.conv1.stride == (2, 2)
    assert tiny.level_dims() == [16, 16, 32, 64, 128]


def test_resnet10_cpu_alias_has_one_block_per_stage_and_a_256_wide_feature():
    from selfsight.api import backbone_config

    net = Backbone(backbone_config("resnet10_cpu", 1, 20, None))
    assert [len(stage) for stage in (net.model.layer1, net.model.layer2, net.model.layer3,
                                     net.model.layer4)] == [1, 1, 1, 1]
    assert net.model.conv1.out_channels == 16 and net.dim == 256
    assert net(torch.zeros(2, 1, 20, 20)).shape == (2, 256)


def test_alias_of_names_the_alias_a_saved_config_came_from():
    for alias in ALIASES:  # through JSON, as a run folder saves it (tuples become lists)
        saved = json.loads(json.dumps(asdict(backbone_config(alias, 1, 20, None))))
        assert alias_of(saved) == alias
    assert alias_of(asdict(backbone_config("resnet18", 1, 20, None))) is None
    changed = backbone_config("resnet10_cpu", 1, 20, {"channels": (8, 16, 32, 64)})
    assert alias_of(asdict(changed)) is None


@pytest.mark.parametrize(("name", "options"), [
    ("resnet18", {"stem_stride": 2, "channels": (8, 16, 32, 64)}),
    ("vit_tiny_patch16_224", {"depth": 2, "embed_dim": 48, "num_heads": 2}),
])
def test_standardize_makes_every_path_blind_to_brightness_and_contrast(name, options, tmp_path):
    torch.manual_seed(0)
    x = torch.rand(3, 1, 20, 20)
    relit = 0.3 * x + 0.5  # lower contrast, brighter: the same images under other lighting

    def outputs(b: Backbone, images: torch.Tensor) -> list[torch.Tensor]:
        out = b.features(images, tokens=True, levels=[0])
        return [b(images), out["tokens"], out["levels"][0]]

    plain = Backbone(backbone_config(name, 1, 20, options)).eval()
    assert (plain(x) - plain(relit)).abs().max() > 1e-2
    plain.save(tmp_path / "plain")
    standardized = Backbone(backbone_config(name, 1, 20, {**options, "standardize": True}))
    standardized.load_state_dict(plain.state_dict())  # same weights: the flag adds none
    standardized.eval().save(tmp_path / "standardized")
    again = load_backbone(tmp_path / "standardized")
    assert again.config.standardize
    with torch.no_grad():
        for ours, relit_out in zip(outputs(again, x), outputs(again, relit), strict=True):
            torch.testing.assert_close(ours, relit_out, atol=2e-4, rtol=1e-3)
        # and what the stem sees is exactly each image at zero mean, unit variance
        ref = (x - x.mean(dim=(1, 2, 3), keepdim=True)) / x.std(dim=(1, 2, 3), keepdim=True)
        torch.testing.assert_close(again(x), plain(ref), atol=1e-4, rtol=1e-4)


def test_every_backbone_option_is_listed_with_its_meaning():
    settable = {f.name for f in fields(BackboneConfig)} - {"name", "in_chans", "image_size",
                                                          "model_kwargs", *RECORDED}
    assert set(OPTIONS) == settable and all(OPTIONS.values())


def test_a_standardize_that_is_not_a_boolean_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="standardize must be true or false, got 'yes'"):
        backbone_config("resnet18", 1, 20, {"standardize": "yes"})
    Backbone(BackboneConfig("resnet18", in_chans=1, image_size=20)).save(tmp_path)
    config = json.loads((tmp_path / "backbone.json").read_text())
    (tmp_path / "backbone.json").write_text(json.dumps({**config, "standardize": 1}))
    with pytest.raises(ValueError, match=r"backbone\.json.*standardize.*true/false"):
        load_backbone(tmp_path)
