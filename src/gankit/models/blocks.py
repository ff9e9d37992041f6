"""Residual blocks of the ResNet GANs (SNGAN App. B, SAGAN, BigGAN Fig. 15 (b), (c)).

Both blocks apply their 1x1 shortcut conv on the low-resolution side of the resampling. For
nearest-neighbour upsampling and 2x2 average pooling this is exactly equal to BigGAN-PyTorch's
order (a 1x1 conv acts per pixel, and commutes with copying pixels or averaging them) and
costs 4x less. With ``fused_resample`` (default; ``train.fused_resample``) the resampling and
the adjacent 3x3 conv also run as one strided op (:mod:`gankit.layers.resample_conv`), exact
up to fp32 rounding and about 2.2x cheaper; ``fused_resample = False`` is the plain reference.
Both blocks can recompute their activations in backward (``checkpoint_activations``,
:mod:`gankit.layers.recompute`). Their convs, normalisation, activations and D's
down-sampling come from a :class:`~gankit.models.style.NetStyle` (defaults: spectral norm,
ReLU, average pooling; D blocks without normalisation unless ``model.D_norm`` asks for one, and
never on the raw pixels of the first block). With fractional max-pooling (``model.D_down =
"fmp"``) a D block pools its residual and shortcut paths over the same regions, before the 1x1
shortcut conv.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gankit.layers.cond_norm import ConditionalNorm2d
from gankit.layers.recompute import RecomputableBlock
from gankit.layers.resample_conv import conv3x3_avgpool, nearest_upsample_2x, upsample_conv3x3
from gankit.models.style import D_STYLE, G_STYLE, NetStyle

__all__ = ["DBlock", "GBlock"]


class GBlock(RecomputableBlock):
    """Generator block: ``CBN-ReLU-up-conv3-CBN-ReLU-conv3`` plus an upsampled shortcut.

    ``x: (B, C_in, H, W)``, condition ``c`` (see :class:`ConditionalNorm2d`)
    ``-> (B, C_out, 2H, 2W)`` (nearest upsampling). The shortcut is a learnable 1x1 conv
    (``conv_sc``) because the block always resamples, as in BigGAN-PyTorch.

    Args:
        bn1, bn2: conditional norm layers over ``C_in`` and ``C_out`` (from the generator).
        style: convs and activations (spectral norm and ReLU by default).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        bn1: ConditionalNorm2d,
        bn2: ConditionalNorm2d,
        style: NetStyle = G_STYLE,
    ):
        super().__init__()
        self.bn1, self.bn2 = bn1, bn2
        self.act1, self.act2 = style.act(in_channels), style.act(out_channels)
        self.conv1 = style.conv2d(in_channels, out_channels, 3, padding=1)
        self.conv2 = style.conv2d(out_channels, out_channels, 3, padding=1)
        self.conv_sc = style.conv2d(in_channels, out_channels, 1)
        self.fused_resample = True

    def block_forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        h = self.act1(self.bn1(x, c))
        h = upsample_conv3x3(h, self.conv1.weight, self.conv1.bias, self.fused_resample)
        h = self.conv2(self.act2(self.bn2(h, c)))
        return h + nearest_upsample_2x(self.conv_sc(x))


class DBlock(RecomputableBlock):
    """Discriminator block: ``[ReLU]-conv3-ReLU-conv3-[avgpool2]`` plus a shortcut.

    ``x: (B, C_in, H, W) -> (B, C_out, H', W')`` with ``H' = H/2`` when ``downsample``. The
    shortcut is a learnable 1x1 conv when channels change or the block downsamples, else the
    identity. ``preactivation=False`` (the first block, SNGAN's "optimized" block) skips the
    leading ReLU so that raw pixels are not rectified.

    Args:
        hidden_channels: width of the middle activation (BigGAN/SAGAN "wide" D: ``C_out``;
            SNGAN: ``C_in``).
        style: convs, normalisation (before each activation), activations and down-sampling
            (2x2 average pooling, or fractional max-pooling).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        hidden_channels: int,
        downsample: bool,
        preactivation: bool,
        style: NetStyle = D_STYLE,
    ):
        super().__init__()
        self.downsample, self.preactivation = downsample, preactivation
        if preactivation:
            self.norm1, self.act1 = style.norm2d(in_channels), style.act(in_channels)
        self.conv1 = style.conv2d(in_channels, hidden_channels, 3, padding=1)
        self.norm2, self.act2 = style.norm2d(hidden_channels), style.act(hidden_channels)
        self.conv2 = style.conv2d(hidden_channels, out_channels, 3, padding=1)
        learnable_sc = in_channels != out_channels or downsample
        self.conv_sc = style.conv2d(in_channels, out_channels, 1) if learnable_sc else None
        self.fmp = style.pool() if downsample else None
        self.fused_resample = True

    def block_forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act1(self.norm1(x)) if self.preactivation else x
        h = self.act2(self.norm2(self.conv1(h)))
        if not self.downsample:
            h, sc = self.conv2(h), x
        elif self.fmp is not None:
            rows, cols = self.fmp.regions(x.shape[2], x.shape[3])
            h, sc = self.fmp.pool(self.conv2(h), rows, cols), self.fmp.pool(x, rows, cols)
        else:
            h = conv3x3_avgpool(h, self.conv2.weight, self.conv2.bias, self.fused_resample)
            sc = F.avg_pool2d(x, 2)
        return h + (self.conv_sc(sc) if self.conv_sc is not None else sc)
