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
    "SpectralNorm",
    "sn_conv2d",
    "sn_embedding",
    "sn_linear",
    "spectral_norm",
    "spectral_norms",
]
