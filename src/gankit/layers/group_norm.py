"""Class-conditional group normalisation (Wu & He 2018, "Group Normalization",
arXiv:1803.08494, Eq. 1-3 and 6) for the generators.

GN normalises each sample over groups of channels: the ``C`` channels split into ``G`` groups of
``C / G`` consecutive channels, and for sample ``n`` and group ``g`` the set
``S = {(c, h, w) : c in group g}`` gives ``mu = mean_S x``, ``sigma^2 = mean_S (x - mu)^2``
(biased) and ``x_hat = (x - mu) / sqrt(sigma^2 + eps)`` (Eq. 1-2, with Eq. 6's ``S_i``). The
statistics never mix samples, so training and eval agree and the batch size does not matter.
Here the per-channel affine map of Eq. 3 is class-conditional, exactly as in conditional batch
norm (:class:`~gankit.layers.cond_norm.ConditionalNorm2d`). The unconditional layer (D's
``model.D_norm = "group"``, G's output layer) is ``torch.nn.GroupNorm``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gankit.layers.cond_norm import ConditionalNorm2d

__all__ = ["ConditionalGroupNorm2d"]


class ConditionalGroupNorm2d(ConditionalNorm2d):
    """Group norm without affine parameters followed by a class-conditional gain and bias.

    Args:
        num_features: channels C of ``x: (B, C, H, W)``; ``num_groups`` must divide it.
        num_groups: G.
        cond_dim, n_classes, shared, sn, sn_eps: the conditioning (see ``ConditionalNorm2d``).
        eps: added to the variance.
    """

    def __init__(
        self,
        num_features: int,
        num_groups: int,
        cond_dim: int,
        n_classes: int,
        shared: bool = False,
        sn: bool = True,
        eps: float = 1e-5,
        sn_eps: float = 1e-6,
    ):
        if num_groups < 1 or num_features % num_groups:
            raise ValueError(f"num_groups={num_groups} must divide num_features={num_features}")
        super().__init__(num_features, cond_dim, n_classes, shared=shared, sn=sn, sn_eps=sn_eps)
        self.num_groups, self.eps = num_groups, eps

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return F.group_norm(x, self.num_groups, eps=self.eps)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, num_groups={self.num_groups}"
