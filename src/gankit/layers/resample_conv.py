"""Exact fused forms of "resample, then 3x3 conv" and "3x3 conv, then resample".

BigGAN's residual blocks (Brock et al. 2019, Fig. 15) upsample by nearest neighbour before a
3x3 conv (G) and average-pool 2x2 after one (D). Both pairs are linear and compose into a
single strided op on the low-resolution side, with the same 3x3 weight as the only parameter:

- ``conv3x3(up2(x), K)`` = ``conv_transpose2d(x, U(K), stride=2, padding=1)`` with the 4x4
  kernel ``U(K)[t] = K[2 - t] + K[3 - t]`` per spatial axis (K is 0 outside 0..2).
  Derivation (1-D, padding 1): output ``r = 2m + t - 1`` receives ``x[m]`` through the taps
  ``u`` of K that read upsampled positions ``2m`` and ``2m + 1``, i.e. ``u = 2 - t, 3 - t``.
- ``avgpool2(conv3x3(x, K))`` = ``conv2d(x, P(K), stride=2, padding=1)`` with
  ``P(K)[t] = (K[t] + K[t - 1]) / 2`` per axis: pooled output ``i`` averages conv outputs
  ``2i, 2i + 1``, which read inputs ``2i + t - 1`` for ``t = 0..3``.

Per output pixel that is 16 taps at a quarter of the positions instead of 9 at all of them:
about 2.2x fewer multiply-adds for these convs, forward and backward, and the full-resolution
intermediate is never stored. Values agree with the plain ops to fp32 rounding (tested against
them, which stay the reference path: ``fused=False``).

:func:`nearest_upsample_2x` is the upsampling alone (the shortcut of BigGAN's G block); compiled,
it is written so that its backward is a sum over 2x2 blocks instead of the scatter-add of atomic
adds that TorchInductor makes of ``upsample_nearest2d``'s backward.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "conv3x3_avgpool",
    "nearest_upsample_2x",
    "pool_kernel",
    "upsample_by_broadcast",
    "upsample_conv3x3",
    "upsample_kernel",
]


def _check_3x3(weight: torch.Tensor) -> None:
    if weight.dim() != 4 or weight.shape[-2:] != (3, 3):
        raise ValueError(f"expected a (C_out, C_in, 3, 3) conv weight, got {tuple(weight.shape)}")


def nearest_upsample_2x(x: torch.Tensor) -> torch.Tensor:
    """``F.interpolate(x, scale_factor=2, mode="nearest")``, ``(B, C, H, W) -> (B, C, 2H, 2W)``.

    Eagerly it is that call (its own kernels are the fastest there). Under ``torch.compile`` it
    is :func:`upsample_by_broadcast`, whose backward TorchInductor turns into a reduction
    rather than the scatter of atomic adds it makes of ``upsample_nearest2d``'s backward."""
    if torch.compiler.is_compiling():
        return upsample_by_broadcast(x)
    return F.interpolate(x, scale_factor=2, mode="nearest")


def upsample_by_broadcast(x: torch.Tensor) -> torch.Tensor:
    """Nearest 2x upsampling as a broadcast of each pixel to a 2x2 block (expand + reshape):
    the values and layout of ``F.interpolate``'s, and a backward that sums each block's
    gradient. A channels_last input is expanded in its NHWC order, so the output stays
    channels_last as ``F.interpolate``'s does."""
    B, C, H, W = x.shape
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        nhwc = x.permute(0, 2, 3, 1)[:, :, None, :, None, :].expand(B, H, 2, W, 2, C)
        y = nhwc.reshape(B, 2 * H, 2 * W, C).permute(0, 3, 1, 2)
        return y.contiguous(memory_format=torch.channels_last)  # a copy only where 1x1 was viewed
    y = x[:, :, :, None, :, None].expand(B, C, H, 2, W, 2).reshape(B, C, 2 * H, 2 * W)
    return y.contiguous()


def upsample_kernel(weight: torch.Tensor) -> torch.Tensor:
    """Conv weight ``K: (C_out, C_in, 3, 3)`` -> conv-transpose weight ``(C_in, C_out, 4, 4)``
    with ``U[t] = K[2 - t] + K[3 - t]`` along each spatial axis.

    ``S[t] = K[t] + K[t - 1]`` per axis is a 2x2 sum-pool of K zero-padded by one (one
    ``avg_pool2d`` with ``divisor_override=1``); ``U[t] = S[3 - t]`` is its flip."""
    _check_3x3(weight)
    s = F.avg_pool2d(weight, 2, stride=1, padding=1, divisor_override=1)
    return s.flip(2, 3).transpose(0, 1)


def pool_kernel(weight: torch.Tensor) -> torch.Tensor:
    """Conv weight ``K: (C_out, C_in, 3, 3)`` -> ``(C_out, C_in, 4, 4)`` stride-2 kernel with
    ``P[t] = (K[t] + K[t - 1]) / 2`` along each spatial axis: a 2x2 average pool (stride 1) of K
    zero-padded by one, i.e. one ``avg_pool2d`` op."""
    _check_3x3(weight)
    return F.avg_pool2d(weight, 2, stride=1, padding=1, count_include_pad=True)


def upsample_conv3x3(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, fused: bool = True
) -> torch.Tensor:
    """``conv3x3(nearest_upsample_2x(x))`` with padding 1: ``(B, C_in, H, W) -> (B, C_out, 2H,
    2W)``. ``fused=False`` runs the two plain ops (the reference)."""
    if not fused:
        return F.conv2d(F.interpolate(x, scale_factor=2, mode="nearest"), weight, bias, padding=1)
    return F.conv_transpose2d(x, upsample_kernel(weight), bias, stride=2, padding=1)


def conv3x3_avgpool(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, fused: bool = True
) -> torch.Tensor:
    """``avg_pool2d(conv3x3(x), 2)`` with padding 1: ``(B, C_in, H, W) -> (B, C_out, H//2,
    W//2)``. ``fused=False`` runs the two plain ops (the reference)."""
    if not fused:
        return F.avg_pool2d(F.conv2d(x, weight, bias, padding=1), 2)
    return F.conv2d(x, pool_kernel(weight), bias, stride=2, padding=1)
