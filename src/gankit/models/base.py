"""What every gankit generator and discriminator share: conditioning and the projection head.

- :class:`ConditionalGenerator` turns ``(z, y)`` into the input of the first layer and one
  condition per conditional-BN layer: the label itself (per-class CBN), the shared class
  embedding (BigGAN Sec. 3), or the embedding concatenated with one chunk of z (hierarchical z,
  BigGAN Sec. 3 and Fig. 15).
- :class:`ProjectionDiscriminator` is the projection head of Miyato & Koyama 2018 (Eq. 3),
  ``D(x, y) = psi(phi(x)) + <V y, phi(x)>``, on top of a feature extractor ``phi`` that each
  architecture provides, with an optional auxiliary classifier (AC-GAN, Odena et al. 2017).
"""

from __future__ import annotations

import torch
from torch import nn

from gankit.config import ConfigError, ModelConfig
from gankit.errors import GankitError
from gankit.layers.attention import build_attention
from gankit.layers.cond_norm import ConditionalNorm2d
from gankit.layers.spectral_norm import sn_embedding
from gankit.models.style import D_STYLE, G_STYLE, NetStyle

__all__ = [
    "ConditionalGenerator",
    "ProjectionDiscriminator",
    "check_attention_resolutions",
    "make_attention",
]


def check_attention_resolutions(
    arch: str, key: str, requested: list[int], available: list[int]
) -> set[int]:
    """The requested attention resolutions as a set, or ConfigError if a feature map lacks one."""
    bad = sorted(set(requested) - set(available))
    if bad:
        raise ConfigError(
            f"config key '{key}': {arch} has no feature map at {bad}; "
            f"valid resolutions: {sorted(set(available))}"
        )
    return set(requested)


def make_attention(
    cfg: ModelConfig, key: str, channels: int, attention: str, sn: bool
) -> nn.Module:
    """The attention block ``attention`` (a resolved ``model.attn_type``) over ``channels`` for
    config key ``key`` (``model.G_attn``/``D_attn``), input and output ``(B, C, H, W)``, built
    by name (:func:`gankit.layers.attention.build_attention`):

    - ``sagan`` / ``biggan``: ``SelfAttention`` (``pool=False`` / ``True``) with
      ``model.attn_k``, spectrally normalised with ``sn``;
    - ``nonlocal:<mode>``: ``NonLocal`` (Wang et al. 2018) with that pairwise function,
      ``C/2`` inner channels, no BN, no spectral norm; its ``W_z`` starts at zero, so the block
      starts as the identity, like SAGAN's ``gamma = 0``.
    """
    if attention.startswith("nonlocal:"):
        return build_attention(attention.split(":", 1)[1], channels)
    pool = attention == "biggan"
    if channels % cfg.attn_k or (pool and channels % 2):
        need = f"divisible by model.attn_k={cfg.attn_k}" + (" and by 2 (pooled)" if pool else "")
        raise ConfigError(
            f"config key '{key}': the feature map there has {channels} channels, expected a "
            f"number {need}; raise model.G_ch/D_ch or choose another resolution"
        )
    return build_attention(attention, channels, k=cfg.attn_k, sn=sn, sn_eps=cfg.sn_eps)


class ConditionalGenerator(nn.Module):
    """Base class of the generators: attributes of the contract and the conditioning of z, y.

    Args:
        dim_z: latent size. With ``hier`` it must split evenly into ``n_cbn + 1`` chunks.
        n_classes: number of classes (1 = unconditional).
        resolution, channels: output images are ``(B, channels, resolution, resolution)``.
        n_cbn: number of conditional-norm slots that each take one condition (one per block).
        shared_dim: size of the shared class embedding (0: per-class CBN tables instead).
        hier: hierarchical z (needs ``shared_dim > 0``, a rule of :func:`gankit.config.validate`).
        sn, sn_eps: spectral norm of the CBN linear maps and its epsilon.
        style: G's layer choices (:class:`~gankit.models.style.NetStyle`): the kind of
            conditional norm (batch, group, or the gain/bias alone) and its epsilon.

    Attributes:
        z_in: size of the part of z that feeds the first layer (``dim_z`` or one chunk).
        cond_dim: size of each CBN condition in shared mode (``shared_dim`` + chunk size).
        shared: the shared ``nn.Embedding(n_classes, shared_dim)`` (no SN, as in BigGAN) or None.
    """

    def __init__(
        self,
        dim_z: int,
        n_classes: int,
        resolution: int,
        channels: int,
        n_cbn: int,
        shared_dim: int = 0,
        hier: bool = False,
        sn: bool = True,
        sn_eps: float = 1e-6,
        style: NetStyle = G_STYLE,
    ):
        super().__init__()
        n_slots = n_cbn + 1 if hier else 1
        if dim_z % n_slots:
            raise ConfigError(
                f"config key 'model.dim_z': {dim_z} must be a multiple of {n_slots} with "
                f"model.hier ({n_cbn} conditional BN layers + the input layer)"
            )
        self.dim_z, self.n_classes = dim_z, n_classes
        self.resolution, self.channels = resolution, channels
        self.hier, self.n_cbn = hier, n_cbn
        self.chunk = dim_z // n_slots if hier else 0
        self.z_in = dim_z // n_slots
        self.cond_dim = shared_dim + self.chunk
        self.shared = nn.Embedding(n_classes, shared_dim) if shared_dim > 0 else None
        self._sn, self._sn_eps, self.style = sn, sn_eps, style

    def make_cbn(self, num_features: int) -> ConditionalNorm2d:
        """A conditional norm layer (``model.G_norm``) of the right mode for this generator."""
        return self.style.cond_norm2d(
            num_features,
            cond_dim=self.cond_dim,
            n_classes=self.n_classes,
            shared=self.shared is not None,
            sn=self._sn,
            sn_eps=self._sn_eps,
        )

    def conditions(self, z: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, list]:
        """Split ``z: (B, dim_z)``, ``y: (B,)`` into the first layer's input ``(B, z_in)`` and
        ``n_cbn`` conditions: ``y`` itself (per-class), ``e = shared(y): (B, shared_dim)``, or
        with hierarchical z ``cat(e, z_k): (B, shared_dim + chunk)`` for chunk ``k = 1..n_cbn``
        (chunk 0 feeds the first layer)."""
        if self.shared is None:
            return z, [y] * self.n_cbn
        e = self.shared(y)
        if not self.hier:
            return z, [e] * self.n_cbn
        z0, *chunks = torch.split(z, self.chunk, dim=1)
        return z0, [torch.cat([e, zk], dim=1) for zk in chunks]

    def extra_repr(self) -> str:
        return (
            f"dim_z={self.dim_z}, n_classes={self.n_classes}, resolution={self.resolution}, "
            f"channels={self.channels}, hier={self.hier}"
        )


class ProjectionDiscriminator(nn.Module):
    """Base class of the discriminators: ``D(x, y) = psi(h) + <embed(y), h>``, ``h = phi(x)``.

    Subclasses implement :meth:`features` (``phi``). ``psi`` is a linear map to one logit and
    ``embed`` the class embedding ``V`` (both spectrally normalised with ``style.sn``; with weight
    norm, ``psi`` is an affine weight-normalised layer, D's last layer); with ``aux_classifier`` a
    linear head ``aux`` gives class logits from the same features.

    Args:
        feat_dim: size of ``h``. n_classes, resolution, channels: as the generator's.
        style: D's layer choices (:class:`~gankit.models.style.NetStyle`).
    """

    def __init__(
        self,
        feat_dim: int,
        n_classes: int,
        resolution: int,
        channels: int,
        style: NetStyle = D_STYLE,
        aux_classifier: bool = False,
    ):
        super().__init__()
        self.n_classes, self.resolution, self.channels = n_classes, resolution, channels
        self.psi = style.linear(feat_dim, 1, last=True)
        self.embed = sn_embedding(n_classes, feat_dim, sn=style.sn, eps=style.sn_eps)
        self.aux = style.linear(feat_dim, n_classes, last=True) if aux_classifier else None

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``phi``: images ``(B, C, H, W) -> (B, feat_dim)``."""
        raise NotImplementedError

    def forward(
        self, x: torch.Tensor, y: torch.Tensor, return_aux: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """``x: (B, C, H, W)``, ``y: (B,)`` long -> logits ``(B,)``; with ``return_aux`` also
        class logits ``(B, n_classes)``."""
        h = self.features(x)
        # psi(h) + <embed(y), h> = <h, w_psi + embed(y)> + b_psi: one product for both terms
        logits = (h * (self.embed(y) + self.psi.weight)).sum(dim=1) + self.psi.bias
        if not return_aux:
            return logits
        if self.aux is None:
            raise GankitError("D(x, y, return_aux=True) needs config key model.aux_classifier=true")
        return logits, self.aux(h)
