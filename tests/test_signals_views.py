"""Signal views keep shapes, are a pure function of the seed, and each step does what it says;
signal backbones keep the Backbone contract and save/load through the artifacts."""

import pytest
import torch

from selfsight.backbones import Backbone, BackboneConfig, load_backbone
from selfsight.errors import UserError
from selfsight.signals.views import (
    SignalViewConfig,
    SignalViewPipeline,
    channel_dropout,
    crop_resize,
    permute_segments,
    signal_views,
    time_warp,
)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def batch(b=4, c=3, length=32):
    return torch.randn(b, c, length, generator=gen(1)) * 5 + 2


@pytest.mark.parametrize("method", ["simclr", "byol"])
def test_views_keep_shape_and_are_seeded(method):
    x = batch()
    pipe = SignalViewPipeline(signal_views(method), (2.0,) * 3, (5.0,) * 3)
    a, b = pipe(x, gen(0)), pipe(x.unsqueeze(2), gen(0))
    assert [v.shape for v in a] == [(4, 3, 1, 32)] * 2
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    c = pipe(x, gen(1))
    assert not torch.equal(a[0], c[0]) and not torch.equal(a[0], a[1])


def test_a_view_with_every_step_off_is_the_input():
    off = SignalViewConfig(crop_scale=(1.0, 1.0), jitter_sigma=0, scale_sigma=0,
                           magnitude_warp_sigma=0, time_warp_sigma=0, channel_drop_p=0)
    pipe = SignalViewPipeline(signal_views("simclr").with_options(
        {k: getattr(off, k) for k in vars(off)}), (2.0,) * 3, (5.0,) * 3)
    x = batch()
    assert torch.allclose(pipe(x, gen())[0].squeeze(2), x, atol=1e-5)


def test_steps_move_time_not_values():
    x = torch.arange(20.0).view(1, 1, 20).repeat(3, 2, 1)
    shuffled = permute_segments(x, 4, 1.0, gen())
    assert torch.equal(shuffled.sort(-1).values, x)  # the same values, another order
    assert not torch.equal(shuffled, x)
    warped = time_warp(x, 0.3, 4, gen())
    assert (warped.diff(dim=-1) >= -1e-4).all()  # a warp of time keeps it monotone
    assert warped[..., 0].eq(0).all() and torch.allclose(warped[..., -1], torch.tensor(19.0))
    cropped = crop_resize(x, (0.5, 0.5), gen())
    span = cropped[..., -1] - cropped[..., 0]
    assert torch.allclose(span, torch.full_like(span, 9.5), atol=1e-4)  # half the length


def test_channel_dropout_zeroes_whole_channels():
    x = torch.ones(64, 4, 10)
    out = channel_dropout(x, 0.5, gen())
    per_channel = out.sum(-1)
    assert set(per_channel.unique().tolist()) == {0.0, 10.0}
    assert torch.equal(channel_dropout(torch.ones(8, 1, 5), 0.9, gen()), torch.ones(8, 1, 5))


@pytest.mark.parametrize("name", ["resnet1d", "inceptiontime", "patchtst"])
def test_signal_backbones_keep_the_features_contract(name, tmp_path):
    cfg = BackboneConfig(name=name, in_chans=3, image_size=40, mean=(1.0, 2.0, 3.0),
                         std=(1.0, 2.0, 4.0))
    torch.manual_seed(0)
    backbone = Backbone(cfg).eval()
    x = torch.randn(5, 3, 40)
    out = backbone.features(x, tokens=True, levels=[0, -1])
    assert out["pooled"].shape == (5, backbone.dim)
    assert out["tokens"].ndim == 4 and out["tokens"].shape[:3] == (5, backbone.dim, 1)
    assert [lv.shape[1] for lv in out["levels"]] == [backbone.level_dims()[0], backbone.dim]
    assert torch.allclose(backbone(x), backbone(x.unsqueeze(2)))  # (B, C, 1, L) too
    # The saved channel statistics standardise the input: a shifted and scaled copy of the
    # data, with statistics shifted and scaled alike, gives the same features.
    shifted = Backbone(BackboneConfig(name=name, in_chans=3, image_size=40,
                                      mean=(11.0, 2.0, 3.0), std=(2.0, 2.0, 4.0))).eval()
    shifted.load_state_dict(backbone.state_dict())
    moved = x.clone()
    moved[:, 0] = (x[:, 0] - 1.0) * 2 + 11.0
    assert torch.allclose(shifted(moved), backbone(x), atol=1e-4)
    backbone.save(tmp_path)
    again = load_backbone(tmp_path)
    assert again.config.mean == cfg.mean and torch.allclose(again(x), backbone(x), atol=1e-6)


def test_a_signal_backbone_refuses_images():
    backbone = Backbone(BackboneConfig(name="resnet1d", in_chans=3, image_size=16, mean=(0.0,),
                                       std=(1.0,)))
    with pytest.raises(UserError, match="takes signals"):
        backbone(torch.zeros(2, 3, 16, 16))


def test_bad_signal_backbone_options_are_one_line():
    with pytest.raises(UserError, match="whole numbers"):
        Backbone(BackboneConfig(name="resnet1d", in_chans=2, image_size=30, mean=(0.0,),
                                std=(1.0,), model_kwargs={"channels": (8, "x")}))
    with pytest.raises(UserError, match="depth must be a multiple of 3"):
        Backbone(BackboneConfig(name="inceptiontime", in_chans=2, image_size=30, mean=(0.0,),
                                std=(1.0,), model_kwargs={"depth": 4}))
