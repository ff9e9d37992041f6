"""Weight initialisation of conv / linear / embedding layers, as BigGAN's ``G_init``/``D_init``.

Styles:

- ``ortho``: ``nn.init.orthogonal_`` (Saxe et al. 2014), BigGAN's default: the weight reshaped
  to ``(out, fan_in)`` has orthonormal rows (or columns, when ``out > fan_in``).
- ``normal``: ``N(0, 0.02)`` (DCGAN; BigGAN-PyTorch's ``N02``, used on CIFAR).
- ``xavier``: Glorot-uniform (``nn.init.xavier_uniform_``).
- ``lecun``: ``N(0, 1 / fan_in)`` (LeCun normal), what SELU networks assume
  (Klambauer et al. 2017, Sec. 3; :func:`lecun_normal_`).
- ``default``: keep PyTorch's own initialisation.

Under a spectral-norm parametrization the *raw* weight
(``module.parametrizations.weight.original``) is initialised, never the normalised view.
Biases and norm-layer parameters keep PyTorch's defaults, as in BigGAN-PyTorch.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn
from torch.nn.utils import parametrize

from gankit.errors import ParameterError

__all__ = ["INIT_STYLES", "init_fn", "init_weights", "lecun_normal_", "raw_weight"]


@torch.no_grad()
def lecun_normal_(weight: torch.Tensor) -> torch.Tensor:
    """Fill ``weight`` (out, ...) in place with ``N(0, 1 / fan_in)``, ``fan_in`` being the size
    of one row (``weight[0].numel()``), as SELU networks assume; returns ``weight``."""
    return weight.normal_(0.0, 1.0 / math.sqrt(weight[0].numel()))


INIT_STYLES: dict[str, Callable[[torch.Tensor], torch.Tensor] | None] = {
    "ortho": nn.init.orthogonal_,
    "normal": lambda w: nn.init.normal_(w, 0.0, 0.02),
    "xavier": nn.init.xavier_uniform_,
    "lecun": lecun_normal_,
    "default": None,
}

_INIT_MODULES = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)


def raw_weight(module: nn.Module) -> torch.Tensor:
    """The trainable weight tensor: ``parametrizations.weight.original`` if parametrized."""
    if parametrize.is_parametrized(module, "weight"):
        return module.parametrizations.weight.original
    return module.weight


def init_fn(style: str) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The in-place initialiser of ``style`` (None for ``default``).

    Raises:
        ParameterError: unknown ``style`` (the message lists the valid ones).
    """
    if style not in INIT_STYLES:
        raise ParameterError("style", f"unknown init {style!r}; valid: {', '.join(INIT_STYLES)}")
    return INIT_STYLES[style]


@torch.no_grad()
def init_weights(module: nn.Module, style: str) -> nn.Module:
    """Initialise every conv/linear/embedding weight inside ``module`` in place with ``style``
    and return ``module``. Raises ParameterError for an unknown ``style``."""
    fn = init_fn(style)
    if fn is None:
        return module
    for m in module.modules():
        if isinstance(m, _INIT_MODULES):
            fn(raw_weight(m))
    return module
