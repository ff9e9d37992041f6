"""SAGAN (Zhang et al. 2019, "Self-Attention GANs", arXiv:1805.08318).

The ResNet G/D of SNGAN's projection model with the paper's self-attention
(``SelfAttention(pool=False)``: f, g, h: C -> C/k, v: C/k -> C) after the blocks whose output
resolution is in ``model.G_attn`` / ``model.D_attn`` (its own ``model.attn_type``; another type
can be chosen), per-class conditional BN in G, spectral norm in G and D (``model.G_sn`` /
``model.D_sn``) and a wide D. Channel multipliers are BigGAN's (which took them from SAGAN).
"""

from __future__ import annotations

from gankit.config import ModelConfig
from gankit.models.biggan import BIGGAN_TABLES
from gankit.models.registry import register
from gankit.models.resnet import (
    ResNetDiscriminator,
    ResNetGenerator,
    build_resnet,
    resnet_resolutions,
)

__all__ = ["build_sagan"]


@register("sagan", resolutions=resnet_resolutions(BIGGAN_TABLES), attention="sagan")
def build_sagan(cfg: ModelConfig, attention: str) -> tuple[ResNetGenerator, ResNetDiscriminator]:
    return build_resnet(cfg, "sagan", BIGGAN_TABLES, attention, wide_D=True, shared_ok=False)
