"""Residual blocks of the ResNet GANs (SNGAN App. B, SAGAN, BigGAN Fig. 15 (b), (c)).

Both blocks apply their 1x1 shortcut conv on the low-resolution side of the resampling. For
nearest-neighbour upsampling and 2x2 average pooling this is exactly equal to BigGAN-PyTorch's
order (a 1x1 conv acts per pixel, and commutes with copying pixels or averaging them) and
costs 4x less. With ``fused_resample`` (default; ``train.fused_resample``) the resampling and
the adjacent 3x3 conv also run as one strided op (:mod:`gankit.layers.resample_conv`), exact
up to fp32 rounding and about 2.2x cheaper; ``fused_resample = False`` is the plain reference.
Both blocks can recompute their activations in backward (``checkpoint_activations``,
:mod:`gankit.layers.recompute`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gankit.layers.activation import relu
from gankit.layers.cond_batchnorm import ConditionalBatchNorm2d
from gankit.layers.recompute import RecomputableBlock
from gankit.layers.resample_conv import conv3x3_avgpool, upsample_conv3x3
from gankit.layers.spectral_norm import sn_conv2d

__all__ = ["DBlock", "GBlock"]


class GBlock(RecomputableBlock):
    """Generator block: ``CBN-ReLU-up-conv3-CBN-ReLU-conv3`` plus an upsampled shortcut.

    ``x: (B, C_in, H, W)``, condition ``c`` (see :class:`ConditionalBatchNorm2d`)
    ``-> (B, C_out, 2H, 2W)`` (nearest upsampling). The shortcut is a learnable 1x1 conv
    (``conv_sc``) because the block always resamples, as in BigGAN-PyTorch.

    Args:
        bn1, bn2: conditional BN layers over ``C_in`` and ``C_out`` (from the generator).
        sn, sn_eps: spectral norm on the convs.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        bn1: ConditionalBatchNorm2d,
        bn2: ConditionalBatchNorm2d,
        sn: bool = True,
        sn_eps: float = 1e-6,
    ):
        super().__init__()
        self.bn1, self.bn2 = bn1, bn2
        self.conv1 = sn_conv2d(in_channels, out_channels, 3, padding=1, sn=sn, eps=sn_eps)
        self.conv2 = sn_conv2d(out_channels, out_channels, 3, padding=1, sn=sn, eps=sn_eps)
        self.conv_sc = sn_conv2d(in_channels, out_channels, 1, sn=sn, eps=sn_eps)
        self.fused_resample = True

    def block_forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        h = relu(self.bn1(x, c))
        h = upsample_conv3x3(h, self.conv1.weight, self.conv1.bias, self.fused_resample)
        h = self.conv2(relu(self.bn2(h, c)))
        return h + F.interpolate(self.conv_sc(x), scale_factor=2, mode="nearest")


class DBlock(RecomputableBlock):
    """Discriminator block: ``[ReLU]-conv3-ReLU-conv3-[avgpool2]`` plus a shortcut.

    ``x: (B, C_in, H, W) -> (B, C_out, H', W')`` with ``H' = H/2`` when ``downsample``. The
    shortcut is a learnable 1x1 conv when channels change or the block downsamples, else the
    identity. ``preactivation=False`` (the first block, SNGAN's "optimized" block) skips the
    leading ReLU so that raw pixels are not rectified.

    Args:
        hidden_channels: width of the middle activation (BigGAN/SAGAN "wide" D: ``C_out``;
            SNGAN: ``C_in``).
        sn, sn_eps: spectral norm on the convs.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        hidden_channels: int,
        downsample: bool,
        preactivation: bool,
        sn: bool = True,
        sn_eps: float = 1e-6,
    ):
        super().__init__()
        self.downsample, self.preactivation = downsample, preactivation
        self.conv1 = sn_conv2d(in_channels, hidden_channels, 3, padding=1, sn=sn, eps=sn_eps)
        self.conv2 = sn_conv2d(hidden_channels, out_channels, 3, padding=1, sn=sn, eps=sn_eps)
        learnable_sc = in_channels != out_channels or downsample
        self.conv_sc = (
            sn_conv2d(in_channels, out_channels, 1, sn=sn, eps=sn_eps) if learnable_sc else None
        )
        self.fused_resample = True

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, 2) if self.downsample else x

    def block_forward(self, x: torch.Tensor) -> torch.Tensor:
        h = relu(x) if self.preactivation else x
        h = relu(self.conv1(h))
        if self.downsample:
            h = conv3x3_avgpool(h, self.conv2.weight, self.conv2.bias, self.fused_resample)
        else:
            h = self.conv2(h)
        sc = self._pool(x)
        return h + (self.conv_sc(sc) if self.conv_sc is not None else sc)
