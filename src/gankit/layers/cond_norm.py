"""Class-conditional gain and bias after a normalisation (de Vries et al. 2017; Miyato & Koyama
2018; BigGAN), shared by conditional batch norm and conditional group norm.

``out = N(x) * gamma(c) + beta(c)`` where ``N`` is the subclass's normalisation without affine
parameters and the gain/bias depend on the condition ``c``. Two modes, as in BigGAN-PyTorch:

- **per-class** (``shared=False``, SNGAN / SAGAN): one learnable row per class,
  ``gamma(y) = G[y]``, ``beta(y) = B[y]`` with ``G`` initialised to 1 and ``B`` to 0; the
  condition is the label ``y: (B,)`` long. Parameters: ``2 * n_classes * num_features``.
- **shared** (``shared=True``, BigGAN Sec. 3 / App. B): the condition is a vector
  ``c: (B, cond_dim)`` (the shared class embedding, concatenated with a chunk of z under
  hierarchical z); ``gamma(c) = 1 + W_g c``, ``beta(c) = W_b c`` with bias-free (optionally
  spectrally normalised) linear maps. Parameters: ``2 * cond_dim * num_features``.

:class:`ConditionalAffine2d` applies the gain and bias with no normalisation (``N = id``): what a
class-conditional generator keeps of its conditional norm layers when it is built without
normalisation (``model.G_norm = "none"`` or ``"weight"``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gankit.layers.spectral_norm import sn_linear

__all__ = ["ConditionalAffine2d", "ConditionalNorm2d"]


class ConditionalNorm2d(nn.Module):
    """Base class: :meth:`normalize` (subclasses) followed by the class-conditional affine map.

    Args:
        num_features: channels C of ``x: (B, C, H, W)``.
        cond_dim: size of the conditioning vector in shared mode (ignored per-class).
        n_classes: number of classes in per-class mode (ignored in shared mode).
        shared: ``True`` for BigGAN's linear maps from a conditioning vector.
        sn: spectral norm on the two linear maps (shared mode only); ``sn_eps`` its epsilon.
    """

    def __init__(
        self,
        num_features: int,
        cond_dim: int,
        n_classes: int,
        shared: bool = False,
        sn: bool = True,
        sn_eps: float = 1e-6,
    ):
        super().__init__()
        self.num_features, self.shared = num_features, shared
        if shared:
            self.cond_dim = cond_dim
            self.gain = sn_linear(cond_dim, num_features, bias=False, sn=sn, eps=sn_eps)
            self.bias = sn_linear(cond_dim, num_features, bias=False, sn=sn, eps=sn_eps)
        else:
            self.n_classes = n_classes
            self.class_gain = nn.Parameter(torch.ones(n_classes, num_features))
            self.class_bias = nn.Parameter(torch.zeros(n_classes, num_features))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """``N(x)``: ``(B, C, H, W) -> (B, C, H, W)``."""
        raise NotImplementedError

    def gamma_beta(self, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Gain and bias ``(B, C)`` each, from labels ``(B,)`` or vectors ``(B, cond_dim)``."""
        if self.shared:
            return 1 + self.gain(cond), self.bias(cond)
        return F.embedding(cond, self.class_gain), F.embedding(cond, self.class_bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """``x: (B, C, H, W)``, ``cond``: labels ``(B,)`` long (per-class) or ``(B, cond_dim)``
        (shared) ``-> (B, C, H, W)`` in x's dtype, as a plain batch norm under autocast (the
        fp32 per-class gains would otherwise promote every activation after it to fp32)."""
        gamma, beta = self.gamma_beta(cond)
        shape = (x.shape[0], self.num_features, 1, 1)
        out = torch.addcmul(beta.view(shape), self.normalize(x), gamma.view(shape))
        return out.to(x.dtype)

    def extra_repr(self) -> str:
        mode = f"shared, cond_dim={self.cond_dim}" if self.shared else f"n_classes={self.n_classes}"
        return f"{self.num_features}, {mode}"


class ConditionalAffine2d(ConditionalNorm2d):
    """``out = x * gamma(c) + beta(c)``: the conditional gain and bias without normalisation."""

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return x
