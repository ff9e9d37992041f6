"""SNGAN ResNet (Miyato et al. 2018, arXiv:1802.05957, App. B; projection D of Miyato & Koyama
2018, arXiv:1802.05637).

Per-class conditional BN in G, a "skinny" D (hidden width = block input width) and, at 32x32,
SNGAN's CIFAR D of constant width ``2 * D_ch`` (128 for ``D_ch = 64``). The paper puts spectral
norm in D only: the ``sngan-cifar`` preset sets ``model.G_sn = false``. Attention is optional
(at ``model.G_attn`` / ``model.D_attn``; SAGAN's unless ``model.attn_type`` says otherwise).
"""

from __future__ import annotations

from gankit.config import ModelConfig
from gankit.models.biggan import BIGGAN_TABLES
from gankit.models.registry import register
from gankit.models.resnet import (
    ResNetDiscriminator,
    ResNetGenerator,
    ResNetSpec,
    build_resnet,
    resnet_resolutions,
)

__all__ = ["SNGAN_TABLES", "build_sngan"]

SNGAN_TABLES: dict[int, ResNetSpec] = {
    **BIGGAN_TABLES,
    32: ResNetSpec((4, 4, 4, 4), (2, 2, 2, 2), (True, True, False, False)),
}


@register("sngan", resolutions=resnet_resolutions(SNGAN_TABLES), attention="sagan")
def build_sngan(cfg: ModelConfig, attention: str) -> tuple[ResNetGenerator, ResNetDiscriminator]:
    return build_resnet(cfg, "sngan", SNGAN_TABLES, attention, wide_D=False, shared_ok=False)
