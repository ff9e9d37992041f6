"""Activations: the hot-path ReLU, TPReLU (Xiang & Li 2017) and SELU (Klambauer et al. 2017).

- **relu** (the training hot path): ``relu(x) = threshold(x, 0, 0)``, the same values (``x``
  where ``x > 0``, else 0) and gradient (``grad * (x > 0)``, 0 at ``x = 0``) as ``F.relu``.
  ``F.relu`` saves its *output* for backward, and saving and unpacking an output costs an extra
  ``detach`` op each under autograd; ``threshold`` saves its input, which its caller keeps
  alive anyway in the ResNet blocks. :class:`ReLU` is its module form.

- **TPReLU** (translated parametric ReLU; Xiang & Li 2017, "On the Effects of Batch and Weight
  Normalization in Generative Adversarial Networks", arXiv:1704.03971, Sec. 4):
  ``TPReLU(x) = PReLU_a(x - alpha) + alpha`` with ``PReLU_a(u) = max(0, u) + a min(0, u)``, a
  learned translation ``alpha`` and slope ``a`` per channel. It is the paper's translated ReLU
  ``TReLU(x) = ReLU(x - alpha) + alpha`` with PReLU's learned negative slope; with strict
  weight-normalised layers (no bias) the translation plays the role of the bias.
- **SELU** (Klambauer et al. 2017, "Self-Normalizing Neural Networks", arXiv:1706.02515, Eq. 2):
  ``selu(x) = lambda x`` for ``x > 0`` and ``lambda alpha (e^x - 1)`` otherwise, with
  ``alpha_01 ~ 1.6733`` and ``lambda_01 ~ 1.0507``: ``torch.nn.SELU`` computes exactly this.
  Its fixed point (zero mean, unit variance) assumes weights with mean 0 and variance
  ``1 / fan_in`` (Sec. 3, "LeCun normal"): the ``model.init = "lecun"`` style
  (:func:`gankit.layers.init.lecun_normal_`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ReLU", "TPReLU", "relu"]


def relu(x: torch.Tensor) -> torch.Tensor:
    """``max(x, 0)`` elementwise, any shape (module docstring)."""
    return F.threshold(x, 0.0, 0.0)


class ReLU(nn.Module):
    """Module form of :func:`relu`: ``x -> max(x, 0)``, any shape."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return relu(x)


class TPReLU(nn.Module):
    """``x: (B, C, ...) -> TPReLU(x)`` of the same shape (formula in the module docstring).

    Args:
        num_channels: C; one translation ``alpha`` (init 0) and one slope ``a`` per channel.
        init_slope: initial ``a`` (PReLU's default, 0.25).
    """

    def __init__(self, num_channels: int, init_slope: float = 0.25):
        super().__init__()
        self.num_channels = num_channels
        self.slope = nn.Parameter(torch.full((num_channels,), float(init_slope)))
        self.translation = nn.Parameter(torch.zeros(num_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = self.translation.view(1, -1, *([1] * (x.dim() - 2)))
        return F.prelu(x - alpha, self.slope) + alpha

    def extra_repr(self) -> str:
        return f"{self.num_channels}"
