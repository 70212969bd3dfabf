"""A convolution on a tiny map run as a dense product equals ``F.conv2d``, values and gradients."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from selfsight.backbones import Backbone, backbone_config
from selfsight.nn.small_grid_conv import SmallGridConv2d, dense_conv2d, use_small_grid_convs

CASES = [  # channels, out, grid h, w, kernel, stride, padding, dilation
    (5, 7, 2, 2, 3, 1, 1, 1), (5, 7, 3, 3, 3, 2, 1, 1), (4, 6, 3, 2, 3, 1, 1, 1),
    (3, 4, 3, 3, 1, 2, 0, 1), (3, 4, 2, 3, 3, 1, 2, 2), (2, 3, 1, 1, 3, 1, 1, 1),
]


@pytest.mark.parametrize("case", CASES)
def test_dense_conv_equals_conv2d_with_gradients(case):
    c, o, h, w, k, s, p, d = case
    torch.manual_seed(0)
    x = torch.randn(4, c, h, w, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(o, c, k, k, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(o, dtype=torch.float64, requires_grad=True)
    ref = F.conv2d(x, weight, bias, s, p, d)
    out = dense_conv2d(x, weight, bias, (s, s), (p, p), (d, d))
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref)
    upstream = torch.randn_like(ref)
    grads_ref = torch.autograd.grad(ref, (x, weight, bias), upstream)
    grads = torch.autograd.grad(out, (x, weight, bias), upstream)
    for g, g_ref in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(g, g_ref)


def test_module_takes_the_dense_path_only_on_small_maps(monkeypatch):
    conv = SmallGridConv2d(8, 8, 3, padding=1, bias=False)
    calls = []
    monkeypatch.setattr("selfsight.nn.small_grid_conv.dense_conv2d",
                        lambda *a: calls.append(a[0].shape) or F.conv2d(a[0], a[1], None, 1, 1))
    conv(torch.randn(2, 8, 3, 3))  # 9 cells <= 9 taps: dense
    conv(torch.randn(2, 8, 4, 4))  # 16 cells: a convolution
    assert calls == [torch.Size([2, 8, 3, 3])]


def test_backbone_with_dense_small_maps_matches_the_plain_network():
    """resnet10_cpu at 20 px runs its last two stages on 3x3 and 2x2 maps (the dense path);
    features and weight gradients equal those of the same network with plain convolutions."""
    torch.manual_seed(0)
    backbone = Backbone(backbone_config("resnet10_cpu", 1, 20, {})).double()
    assert any(isinstance(m, SmallGridConv2d) for m in backbone.modules())
    plain = use_small_grid_convs(copy.deepcopy(backbone), enabled=False)
    assert not any(isinstance(m, SmallGridConv2d) for m in plain.modules())
    x = torch.randn(6, 1, 20, 20, dtype=torch.float64)
    out, ref = backbone(x), plain(x)
    torch.testing.assert_close(out, ref)
    out.square().sum().backward()
    ref.square().sum().backward()
    for (name, p), q in zip(backbone.named_parameters(), plain.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, msg=name)
    assert backbone.state_dict().keys() == plain.state_dict().keys()


def test_grouped_convolutions_stay_plain():
    model = nn.Sequential(nn.Conv2d(4, 4, 3, groups=4), nn.Conv2d(4, 4, 3))
    use_small_grid_convs(model)
    assert type(model[0]) is nn.Conv2d and type(model[1]) is SmallGridConv2d
