"""Building blocks: attention (non-local family, SAGAN), spectral norm, conditional batch norm."""

from gankit.layers.attention import (
    ATTENTION_NAMES,
    NONLOCAL_MODES,
    NonLocal,
    SelfAttention,
    attention,
    attention_reference,
    build_attention,
)
from gankit.layers.cond_batchnorm import ConditionalBatchNorm2d
from gankit.layers.init import INIT_STYLES, init_weights, raw_weight
from gankit.layers.spectral_norm import (
    SpectralNorm,
    sn_conv2d,
    sn_embedding,
    sn_linear,
    spectral_norm,
    spectral_norms,
)

__all__ = [
    "ATTENTION_NAMES",
    "NONLOCAL_MODES",
    "NonLocal",
    "build_attention",
    "SelfAttention",
    "attention",
    "attention_reference",
    "ConditionalBatchNorm2d",
    "INIT_STYLES",
    "init_weights",
    "raw_weight",
    "SpectralNorm",
    "sn_conv2d",
    "sn_embedding",
    "sn_linear",
    "spectral_norm",
    "spectral_norms",
]
