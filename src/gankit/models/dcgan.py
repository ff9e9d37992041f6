"""DCGAN-style conditional GAN (Radford et al. 2016) in the form SNGAN benchmarked as its
"standard CNN" (Miyato et al. 2018, arXiv:1802.05957, Table 3), with conditional BN in G and a
projection D (Miyato & Koyama 2018).

G: ``linear(z) -> (w_0, b, b)``, CBN-ReLU, then ``n`` times ``deconv4x4/2 - CBN - ReLU``, then
``conv3 - tanh``; widths ``G_ch * 2^(n-i)``. D: ``n`` times ``conv3 - LReLU - conv4x4/2 -
LReLU`` with widths ``D_ch * 2^i``, then ``conv3`` to ``D_ch * 2^n``, LReLU(0.1), a sum over
positions and the projection head. Resolutions: 28 (MNIST), 32, 48 (STL-10), 64.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gankit.config import ModelConfig
from gankit.layers.spectral_norm import sn_conv2d, sn_linear, spectral_norm
from gankit.models.base import (
    ConditionalGenerator,
    ProjectionDiscriminator,
    check_attention_resolutions,
    make_attention,
)
from gankit.models.registry import register

__all__ = ["DCGANDiscriminator", "DCGANGenerator", "DCGAN_LAYOUTS", "build_dcgan"]

DCGAN_LAYOUTS: dict[int, tuple[int, int]] = {28: (7, 2), 32: (4, 3), 48: (6, 3), 64: (4, 4)}
"""resolution -> (bottom width b, number n of 2x resamplings)."""

LRELU_SLOPE = 0.1  # SNGAN's standard CNN


class DCGANGenerator(ConditionalGenerator):
    """``G(z: (B, dim_z), y: (B,)) -> (B, channels, R, R)`` in [-1, 1]."""

    def __init__(self, cfg: ModelConfig, attention: str):
        self.bottom_width, n = DCGAN_LAYOUTS[cfg.resolution]
        widths = [cfg.G_ch * 2 ** (n - i) for i in range(n + 1)]
        super().__init__(
            cfg.dim_z, cfg.n_classes, cfg.resolution, cfg.channels, n_cbn=n + 1,
            shared_dim=cfg.shared_dim, hier=cfg.hier, sn=cfg.G_sn, sn_eps=cfg.sn_eps,
            bn_eps=cfg.bn_eps,
        )  # fmt: skip
        resolutions = [self.bottom_width << (i + 1) for i in range(n)]
        attn = check_attention_resolutions("dcgan", "model.G_attn", cfg.G_attn, resolutions)
        self.linear = sn_linear(self.z_in, widths[0] * self.bottom_width**2, sn=cfg.G_sn,
                                eps=cfg.sn_eps)  # fmt: skip
        self.bns = nn.ModuleList(self.make_cbn(w) for w in widths)
        self.ups = nn.ModuleList()
        for i in range(n):
            up = nn.ConvTranspose2d(widths[i], widths[i + 1], 4, stride=2, padding=1)
            self.ups.append(spectral_norm(up, eps=cfg.sn_eps) if cfg.G_sn else up)
        self.attn = nn.ModuleList(
            make_attention(cfg, "model.G_attn", widths[i + 1], attention, cfg.G_sn)
            if r in attn
            else nn.Identity()
            for i, r in enumerate(resolutions)
        )
        self.out_conv = sn_conv2d(widths[-1], cfg.channels, 3, padding=1, sn=cfg.G_sn,
                                  eps=cfg.sn_eps)  # fmt: skip

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        z0, conds = self.conditions(z, y)
        h = self.linear(z0).view(z.shape[0], -1, self.bottom_width, self.bottom_width)
        h = F.relu(self.bns[0](h, conds[0]))
        for up, bn, attn, c in zip(self.ups, self.bns[1:], self.attn, conds[1:]):
            h = attn(F.relu(bn(up(h), c)))
        return torch.tanh(self.out_conv(h))


class DCGANDiscriminator(ProjectionDiscriminator):
    """``D(x: (B, channels, R, R), y: (B,)) -> (B,)`` logits; ``features`` is one Sequential."""

    def __init__(self, cfg: ModelConfig, attention: str):
        _, n = DCGAN_LAYOUTS[cfg.resolution]
        widths = [cfg.D_ch * 2**i for i in range(n + 1)]
        super().__init__(
            widths[-1], cfg.n_classes, cfg.resolution, cfg.channels, sn=cfg.D_sn,
            sn_eps=cfg.sn_eps, aux_classifier=cfg.aux_classifier,
        )  # fmt: skip
        resolutions = [cfg.resolution >> (i + 1) for i in range(n)]
        attn = check_attention_resolutions("dcgan", "model.D_attn", cfg.D_attn, resolutions)
        sn = dict(sn=cfg.D_sn, eps=cfg.sn_eps)
        layers: list[nn.Module] = []
        c_in = cfg.channels
        for w, r in zip(widths[:-1], resolutions):
            layers += [
                sn_conv2d(c_in, w, 3, padding=1, **sn),
                nn.LeakyReLU(LRELU_SLOPE),
                sn_conv2d(w, w, 4, stride=2, padding=1, **sn),
                nn.LeakyReLU(LRELU_SLOPE),
            ]
            if r in attn:
                layers.append(make_attention(cfg, "model.D_attn", w, attention, cfg.D_sn))
            c_in = w
        layers += [sn_conv2d(c_in, widths[-1], 3, padding=1, **sn), nn.LeakyReLU(LRELU_SLOPE)]
        self.body = nn.Sequential(*layers)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W) -> (B, D_ch * 2^n)``: the conv stack, then a sum over H, W."""
        return self.body(x).sum(dim=(2, 3))


@register("dcgan", resolutions=tuple(DCGAN_LAYOUTS), attention="biggan")
def build_dcgan(cfg: ModelConfig, attention: str) -> tuple[DCGANGenerator, DCGANDiscriminator]:
    return DCGANGenerator(cfg, attention), DCGANDiscriminator(cfg, attention)
