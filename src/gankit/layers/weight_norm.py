"""Weight normalisation: Salimans & Kingma 2016 ("Weight Normalization: A Simple
Reparameterization to Accelerate Training of Deep Neural Networks", arXiv:1602.07868) and the
*strict* / *affine* weight-normalised layers of Xiang & Li 2017 ("On the Effects of Batch and
Weight Normalization in Generative Adversarial Networks", arXiv:1704.03971, Sec. 4).

For every output unit ``k`` with weight vector ``v_k`` (a row of the weight reshaped to
``(out, fan_in)``):

- Salimans & Kingma Eq. 2: ``w_k = g_k v_k / ||v_k||``, ``y_k = w_k . x + b_k``.
- Xiang & Li, strict layer: ``y_k = v_k . x / ||v_k||`` -- no learned gain, no bias
  (``affine=False``; the layer is built without a bias).
- Xiang & Li, affine layer: ``y_k = gamma_k (v_k . x / ||v_k||) + beta_k`` -- the same function as
  Salimans & Kingma's layer with ``g = gamma``, ``b = beta`` (``affine=True``).

The reparametrisation is a ``torch.nn.utils.parametrize`` parametrization of ``weight`` (like
:mod:`gankit.layers.spectral_norm`): ``v`` lives at ``parametrizations.weight.original`` (what
``model.init`` initialises), ``g`` at ``parametrizations.weight.0.g``. The output unit is axis 0
of a ``Conv2d`` / ``Linear`` weight and axis 1 of a ``ConvTranspose2d`` weight; ``||v_k||`` is
over all other axes.

Data-dependent initialisation (Salimans & Kingma Sec. 3): on one batch, for every affine layer in
forward order, ``t = v . x / ||v||`` (the output with ``g = 1``, ``b = 0``) and
``g <- 1 / sigma[t]``, ``b <- -mu[t] / sigma[t]`` with the mean and standard deviation per output
unit over the batch (and positions), so that the layer's outputs start with zero mean and unit
variance; the following layers see the initialised outputs (:func:`data_dependent_init`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from gankit.layers.recompute import no_state_updates

__all__ = [
    "WeightNorm",
    "data_dependent_init",
    "weight_norm",
    "weight_norms",
    "wn_conv2d",
    "wn_conv_transpose2d",
    "wn_linear",
]


class WeightNorm(nn.Module):
    """Parametrization ``v -> g v / ||v||`` (``affine``) or ``v -> v / ||v||`` (strict), per
    output unit along axis ``dim``; register with :func:`weight_norm`.

    Args:
        weight: the weight ``v`` (any shape with the output units along ``dim``).
        dim: the output-unit axis (0: conv / linear, 1: transposed conv).
        affine: learn the gain ``g`` (initialised to 1: ``w = v / ||v||`` until
            :func:`data_dependent_init` or training changes it).
        eps: added to ``||v||`` (guards an all-zero row).
    """

    def __init__(self, weight: torch.Tensor, dim: int = 0, affine: bool = True, eps: float = 0.0):
        super().__init__()
        self.dim, self.affine, self.eps = dim, affine, eps
        if affine:
            self.g = nn.Parameter(torch.ones_like(self.norm(weight.detach())))
        self.init_pending = False  # set by data_dependent_init

    def norm(self, v: torch.Tensor) -> torch.Tensor:
        """``||v_k||`` per output unit, shaped to broadcast against ``v``."""
        axes = [a for a in range(v.dim()) if a != self.dim]
        return v.pow(2).sum(dim=axes, keepdim=True).sqrt() + self.eps

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        w = v / self.norm(v)
        return w * self.g if self.affine else w

    def extra_repr(self) -> str:
        return f"dim={self.dim}, affine={self.affine}"


def weight_norm(module: nn.Module, affine: bool = True, eps: float = 0.0) -> nn.Module:
    """Register :class:`WeightNorm` on ``module.weight`` (a conv, transposed conv or linear
    layer) and return ``module``. A strict layer (``affine=False``) must have no bias."""
    if not affine and getattr(module, "bias", None) is not None:
        raise ValueError("a strict weight-normalised layer has no bias: build it with bias=False")
    dim = 1 if isinstance(module, nn.ConvTranspose2d) else 0
    norm = WeightNorm(module.weight, dim=dim, affine=affine, eps=eps)
    parametrize.register_parametrization(module, "weight", norm, unsafe=False)
    return module


def wn_conv2d(*args: Any, affine: bool, **kwargs: Any) -> nn.Module:
    """``nn.Conv2d`` with weight norm; strict (``affine=False``) layers have no bias."""
    conv = nn.Conv2d(*args, **{**kwargs, "bias": affine and kwargs.get("bias", True)})
    return weight_norm(conv, affine=affine)


def wn_conv_transpose2d(*args: Any, affine: bool, **kwargs: Any) -> nn.Module:
    """``nn.ConvTranspose2d`` with weight norm (per output channel, axis 1 of its weight)."""
    conv = nn.ConvTranspose2d(*args, **{**kwargs, "bias": affine and kwargs.get("bias", True)})
    return weight_norm(conv, affine=affine)


def wn_linear(*args: Any, affine: bool, **kwargs: Any) -> nn.Module:
    """``nn.Linear`` with weight norm; strict (``affine=False``) layers have no bias."""
    lin = nn.Linear(*args, **{**kwargs, "bias": affine and kwargs.get("bias", True)})
    return weight_norm(lin, affine=affine)


def weight_norms(module: nn.Module) -> list[tuple[nn.Module, WeightNorm]]:
    """``(layer, WeightNorm)`` for every weight-normalised layer inside ``module``."""
    out = []
    for m in module.modules():
        if parametrize.is_parametrized(m, "weight"):
            out += [(m, p) for p in m.parametrizations.weight if isinstance(p, WeightNorm)]
    return out


@torch.no_grad()
def data_dependent_init(module: nn.Module, run_batch: Callable[[], Any], eps: float = 1e-6) -> int:
    """Salimans & Kingma's data-dependent initialisation of every affine weight-normalised layer
    inside ``module`` (see the module docstring), in one forward pass ``run_batch()``.

    Each layer, when first called, computes ``t`` with ``g = 1``, ``b = 0``, sets
    ``g = 1 / sigma[t]`` and ``b = -mu[t] / sigma[t]`` (``sigma = sqrt(var + eps)``, statistics
    per output unit over every other output axis) and passes the normalised ``(t - mu) / sigma``
    on. Layers called more than once in the pass keep their first initialisation. The pass
    changes no other state (:func:`~gankit.layers.recompute.no_state_updates`: no spectral-norm
    power iteration, no batch-norm running statistics); without affine layers it does not run.

    Returns:
        The number of layers initialised.
    """
    targets = [(m, p) for m, p in weight_norms(module) if p.affine]
    if not targets:
        return 0
    hooks = []

    def pre_hook(layer: nn.Module, args: Any) -> None:
        norm = layer.parametrizations.weight[0]
        if norm.init_pending:
            norm.g.fill_(1.0)
            if layer.bias is not None:
                layer.bias.zero_()

    def post_hook(layer: nn.Module, args: Any, t: torch.Tensor) -> torch.Tensor | None:
        norm = layer.parametrizations.weight[0]
        if not norm.init_pending:
            return None
        norm.init_pending = False
        axes = [a for a in range(t.dim()) if a != 1]
        t32 = t.to(torch.promote_types(t.dtype, torch.float32))  # statistics in >= fp32
        mu = t32.mean(dim=axes)
        sigma = (t32.var(dim=axes, unbiased=False) + eps).sqrt()
        norm.g.copy_((1 / sigma).view_as(norm.g))
        if layer.bias is not None:
            layer.bias.copy_(-mu / sigma)
        shape = [1] * t.dim()
        shape[1] = -1
        return ((t - mu.view(shape)) / sigma.view(shape)).to(t.dtype)

    for layer, norm in targets:
        norm.init_pending = True
        hooks.append(layer.register_forward_pre_hook(pre_hook))
        hooks.append(layer.register_forward_hook(post_hook))
    try:
        with no_state_updates(module):
            run_batch()
    finally:
        for h in hooks:
            h.remove()
        for _, norm in targets:
            norm.init_pending = False
    return len(targets)
