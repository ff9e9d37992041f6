"""Class-conditional batch normalisation (de Vries et al. 2017; Miyato & Koyama 2018; BigGAN).

``out = (x - mu_B) / sqrt(sigma_B^2 + eps) * gamma(y) + beta(y)`` with batch statistics
``mu_B, sigma_B^2`` per channel (training) or the running statistics (eval), and a gain/bias
that depend on the condition: per-class rows or BigGAN's shared-embedding linear maps
(:class:`~gankit.layers.cond_norm.ConditionalNorm2d`).

The normalisation itself is a :class:`gankit.layers.batchnorm.BatchNorm2d` (``affine=False``)
child — an ``nn.BatchNorm2d`` that can also normalise stacked sub-batches separately — so
``nn.SyncBatchNorm.convert_sync_batchnorm`` synchronises its statistics under DDP and
``momentum=None`` on it gives cumulative ("standing") statistics.
"""

from __future__ import annotations

import torch

from gankit.layers.batchnorm import BatchNorm2d
from gankit.layers.cond_norm import ConditionalNorm2d

__all__ = ["ConditionalBatchNorm2d"]


class ConditionalBatchNorm2d(ConditionalNorm2d):
    """Batch norm without affine parameters followed by a class-conditional gain and bias.

    Args:
        num_features: channels C of ``x: (B, C, H, W)``.
        cond_dim: size of the conditioning vector in shared mode (ignored per-class).
        n_classes: number of classes in per-class mode (ignored in shared mode).
        shared: ``True`` for BigGAN's linear maps from a conditioning vector.
        sn: spectral norm on the two linear maps (shared mode only).
        eps: batch-norm epsilon; ``momentum``: running-statistics momentum.
        sn_eps: spectral-norm epsilon.
    """

    def __init__(
        self,
        num_features: int,
        cond_dim: int,
        n_classes: int,
        shared: bool = False,
        sn: bool = True,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        sn_eps: float = 1e-6,
    ):
        super().__init__(num_features, cond_dim, n_classes, shared=shared, sn=sn, sn_eps=sn_eps)
        self.bn = BatchNorm2d(num_features, eps=eps, momentum=momentum, affine=False)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(x)
