"""Convolutions on tiny feature maps computed as one dense matrix product.

At 20-px views a ResNet's last stage runs on a 2x2 map. There a 3x3 convolution with padding 1
spends more than half its multiply-adds on padding zeros, and oneDNN's weight-gradient kernel for
such maps is slow on CPU: in a profile of ``resnet10_cpu`` the last stage's 256x256 convolution
took a quarter of the training step, its backward five times its forward. On a map of ``H x W``
cells the convolution is a linear map from ``C*H*W`` inputs to ``O*H'*W'`` outputs whose entries
are kernel taps (or zero), so it can be run as one GEMM against that matrix, built from the
kernel by a product with a fixed 0/1 tap selector; forward and backward are then plain matrix
products, 2-3x faster for this layer. The weights stay the ``(O, C, k, k)`` kernel, so
checkpoints do not change.
"""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import nn


@lru_cache(maxsize=64)
def tap_selector(
    grid: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int],
    padding: tuple[int, int], dilation: tuple[int, int], device: torch.device,
    dtype: torch.dtype,
) -> tuple[torch.Tensor, tuple[int, int]]:
    """A 0/1 matrix ``(input cell * output cell, kernel tap)`` saying which tap joins each pair
    of cells (a row of zeros where none does, i.e. where the kernel covers padding), and the
    output grid."""
    (h, w), (kh, kw), (sh, sw), (ph, pw), (dh, dw) = grid, kernel, stride, padding, dilation
    out_h = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    out_w = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    selector = torch.zeros(h, w, out_h, out_w, kh * kw)
    for oy in range(out_h):
        for ox in range(out_w):
            for ky in range(kh):
                for kx in range(kw):
                    iy, ix = oy * sh - ph + ky * dh, ox * sw - pw + kx * dw
                    if 0 <= iy < h and 0 <= ix < w:
                        selector[iy, ix, oy, ox, ky * kw + kx] = 1.0
    return selector.reshape(-1, kh * kw).to(device, dtype), (out_h, out_w)


def dense_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                 stride: tuple[int, int], padding: tuple[int, int],
                 dilation: tuple[int, int]) -> torch.Tensor:
    """``F.conv2d`` (groups 1, zero padding) as ``x @ M`` with M the convolution's matrix."""
    n, c, h, w = x.shape
    out_c, _, kh, kw = weight.shape
    selector, (out_h, out_w) = tap_selector((h, w), (kh, kw), stride, padding, dilation,
                                            x.device, weight.dtype)
    # M[c, (q, p), o] = sum_t selector[(q, p), t] * weight[o, c, t]: the matrix built by a
    # product instead of an indexed gather, whose backward (a scatter) is slow on CPU. Rows
    # (channel, input cell) and columns (output cell, out channel) make it contiguous as built.
    matrix = selector @ weight.reshape(out_c, c, kh * kw).permute(1, 2, 0)
    y = x.reshape(n, c * h * w) @ matrix.reshape(c * h * w, out_h * out_w * out_c)
    y = y.reshape(n, out_h, out_w, out_c)
    if bias is not None:
        y = y + bias
    return y.permute(0, 3, 1, 2)


class SmallGridConv2d(nn.Conv2d):
    """``nn.Conv2d`` that runs as a dense product when the input map has no more cells than the
    kernel has taps (then the product does no more multiply-adds than the convolution)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kh, kw = self.kernel_size
        if (x.dim() == 4 and x.shape[2] * x.shape[3] <= kh * kw and self.groups == 1
                and self.padding_mode == "zeros" and isinstance(self.padding, tuple)
                and not torch.onnx.is_in_onnx_export() and not torch.jit.is_tracing()):
            return dense_conv2d(x, self.weight, self.bias, self.stride, self.padding,
                                self.dilation)
        return super().forward(x)


def use_small_grid_convs(model: nn.Module, enabled: bool = True) -> nn.Module:
    """Make every ungrouped ``nn.Conv2d`` of ``model`` a ``SmallGridConv2d`` in place (same
    parameters and state dict; a convolution on a large map still runs as a convolution), or,
    with ``enabled=False``, every ``SmallGridConv2d`` a plain ``nn.Conv2d`` again."""
    for module in model.modules():
        if enabled and type(module) is nn.Conv2d and module.groups == 1:
            module.__class__ = SmallGridConv2d
        elif not enabled and type(module) is SmallGridConv2d:
            module.__class__ = nn.Conv2d
    return model
