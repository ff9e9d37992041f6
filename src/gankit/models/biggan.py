"""BigGAN (Brock et al. 2019, "Large Scale GAN Training", arXiv:1809.11096).

ResNet G and D (:mod:`gankit.models.resnet`) with the channel multipliers of BigGAN's Tables
4-5 (as in BigGAN-PyTorch's ``G_arch`` / ``D_arch``), BigGAN's pooled self-attention (its own
``model.attn_type``; another type can be chosen), a shared class embedding
(``model.shared_dim``) feeding linear CBN gains/biases, hierarchical z (``model.hier``),
spectral norm in G and D and a wide projection D. With the ``biggan-cifar`` / ``biggan-128``
presets the parameter counts equal BigGAN-PyTorch's.
"""

from __future__ import annotations

from gankit.config import ModelConfig
from gankit.models.registry import register
from gankit.models.resnet import (
    ResNetDiscriminator,
    ResNetGenerator,
    ResNetSpec,
    build_resnet,
    resnet_resolutions,
)

__all__ = ["BIGGAN_TABLES", "build_biggan"]

BIGGAN_TABLES: dict[int, ResNetSpec] = {
    32: ResNetSpec((4, 4, 4, 4), (4, 4, 4, 4), (True, True, False, False)),
    64: ResNetSpec((16, 16, 8, 4, 2), (1, 2, 4, 8, 16), (True,) * 4 + (False,)),
    128: ResNetSpec((16, 16, 8, 4, 2, 1), (1, 2, 4, 8, 16, 16), (True,) * 5 + (False,)),
    256: ResNetSpec((16, 16, 8, 8, 4, 2, 1), (1, 2, 4, 8, 8, 16, 16), (True,) * 6 + (False,)),
}


@register("biggan", resolutions=resnet_resolutions(BIGGAN_TABLES), attention="biggan")
def build_biggan(cfg: ModelConfig, attention: str) -> tuple[ResNetGenerator, ResNetDiscriminator]:
    return build_resnet(cfg, "biggan", BIGGAN_TABLES, attention, wide_D=True, shared_ok=True)
