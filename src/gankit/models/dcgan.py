"""DCGAN-style conditional GAN (Radford et al. 2016) in the form SNGAN benchmarked as its
"standard CNN" (Miyato et al. 2018, arXiv:1802.05957, Table 3), with conditional BN in G and a
projection D (Miyato & Koyama 2018).

G: ``linear(z) -> (w_0, b, b)``, CBN-ReLU, then ``n`` times ``deconv4x4/2 - CBN - ReLU``, then
``conv3 - tanh``; widths ``G_ch * 2^(n-i)``. D: ``n`` times ``conv3 - LReLU - conv4x4/2 -
LReLU`` with widths ``D_ch * 2^i``, then ``conv3`` to ``D_ch * 2^n``, LReLU(0.1), a sum over
positions and the projection head. Resolutions: 28 (MNIST), 32, 48 (STL-10), 64.

The layer switches of :mod:`gankit.models.style` apply: ``model.G_norm`` (the conditional norm
after the linear layer and each deconv), ``model.D_norm`` (after every D conv but the first),
``model.activation`` (every ReLU / LeakyReLU) and ``model.D_down = "fmp"``, which replaces each
stride-2 4x4 conv of D by a 3x3 conv followed by fractional max-pooling (after the activation).
DCGAN has no residual blocks, so ``model.G_block`` / ``model.D_block`` must stay ``resnet``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from gankit.config import ModelConfig
from gankit.models.base import (
    ConditionalGenerator,
    ProjectionDiscriminator,
    check_attention_resolutions,
    make_attention,
)
from gankit.models.registry import register
from gankit.models.style import NetStyle

__all__ = ["DCGANDiscriminator", "DCGANGenerator", "DCGAN_LAYOUTS", "build_dcgan"]

DCGAN_LAYOUTS: dict[int, tuple[int, int]] = {28: (7, 2), 32: (4, 3), 48: (6, 3), 64: (4, 4)}
"""resolution -> (bottom width b, number n of 2x resamplings)."""

LRELU_SLOPE = 0.1  # SNGAN's standard CNN


class DCGANGenerator(ConditionalGenerator):
    """``G(z: (B, dim_z), y: (B,)) -> (B, channels, R, R)`` in [-1, 1]."""

    def __init__(self, cfg: ModelConfig, attention: str):
        self.bottom_width, n = DCGAN_LAYOUTS[cfg.resolution]
        widths = [cfg.G_ch * 2 ** (n - i) for i in range(n + 1)]
        style = NetStyle.of(cfg, "G")
        super().__init__(
            cfg.dim_z, cfg.n_classes, cfg.resolution, cfg.channels, n_cbn=n + 1,
            shared_dim=cfg.shared_dim, hier=cfg.hier, sn=cfg.G_sn, sn_eps=cfg.sn_eps,
            style=style,
        )  # fmt: skip
        resolutions = [self.bottom_width << (i + 1) for i in range(n)]
        attn = check_attention_resolutions("dcgan", "model.G_attn", cfg.G_attn, resolutions)
        self.linear = style.linear(self.z_in, widths[0] * self.bottom_width**2)
        self.bns = nn.ModuleList(self.make_cbn(w) for w in widths)
        self.acts = nn.ModuleList(style.act(w) for w in widths)
        self.ups = nn.ModuleList(
            style.conv_transpose2d(widths[i], widths[i + 1], 4, stride=2, padding=1)
            for i in range(n)
        )
        self.attn = nn.ModuleList(
            make_attention(cfg, "model.G_attn", widths[i + 1], attention, cfg.G_sn)
            if r in attn
            else nn.Identity()
            for i, r in enumerate(resolutions)
        )
        self.out_conv = style.conv2d(widths[-1], cfg.channels, 3, padding=1, last=True)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        z0, conds = self.conditions(z, y)
        h = self.linear(z0).view(z.shape[0], -1, self.bottom_width, self.bottom_width)
        h = self.acts[0](self.bns[0](h, conds[0]))
        layers = zip(self.ups, self.bns[1:], self.acts[1:], self.attn, conds[1:])
        for up, bn, act, attn, c in layers:
            h = attn(act(bn(up(h), c)))
        return torch.tanh(self.out_conv(h))


class DCGANDiscriminator(ProjectionDiscriminator):
    """``D(x: (B, channels, R, R), y: (B,)) -> (B,)`` logits; ``features`` is one Sequential."""

    def __init__(self, cfg: ModelConfig, attention: str):
        _, n = DCGAN_LAYOUTS[cfg.resolution]
        widths = [cfg.D_ch * 2**i for i in range(n + 1)]
        style = NetStyle.of(cfg, "D")
        super().__init__(
            widths[-1], cfg.n_classes, cfg.resolution, cfg.channels, style=style,
            aux_classifier=cfg.aux_classifier,
        )  # fmt: skip
        resolutions, r = [], cfg.resolution
        for _ in range(n):
            r = style.down_size(r)
            resolutions.append(r)
        attn = check_attention_resolutions("dcgan", "model.D_attn", cfg.D_attn, resolutions)

        def conv_act(c_in: int, c_out: int, first: bool = False, **conv: Any) -> list[nn.Module]:
            """conv, [norm] (never after the first conv; none by default), activation."""
            norm = [] if first or style.norm in ("none", "weight") else [style.norm2d(c_out)]
            act = style.act(c_out, default=lambda: nn.LeakyReLU(LRELU_SLOPE))
            return [style.conv2d(c_in, c_out, **conv), *norm, act]

        layers: list[nn.Module] = []
        c_in = cfg.channels
        for i, (w, r) in enumerate(zip(widths[:-1], resolutions)):
            layers += conv_act(c_in, w, first=i == 0, kernel_size=3, padding=1)
            if style.down != "fmp":
                layers += conv_act(w, w, kernel_size=4, stride=2, padding=1)
            else:
                layers += [*conv_act(w, w, kernel_size=3, padding=1), style.pool()]
            if r in attn:
                layers.append(make_attention(cfg, "model.D_attn", w, attention, cfg.D_sn))
            c_in = w
        layers += conv_act(c_in, widths[-1], kernel_size=3, padding=1)
        self.body = nn.Sequential(*layers)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W) -> (B, D_ch * 2^n)``: the conv stack, then a sum over H, W."""
        return self.body(x).sum(dim=(2, 3))


@register("dcgan", resolutions=tuple(DCGAN_LAYOUTS), attention="biggan")
def build_dcgan(cfg: ModelConfig, attention: str) -> tuple[DCGANGenerator, DCGANDiscriminator]:
    return DCGANGenerator(cfg, attention), DCGANDiscriminator(cfg, attention)
