"""Exponential moving average of G's weights, and BigGAN's standing BN statistics.

BigGAN (Brock et al. 2019, §4 and App. C) samples from an EMA of G's weights,
``theta_ema <- decay * theta_ema + (1 - decay) * theta`` after every G step, starting at step
``ema_start`` (before it the EMA simply copies G). Buffers — batch-norm running statistics and
the spectral-norm power-iteration vectors ``u``/``v`` — are copied from G, not averaged.

"Standing statistics" (BigGAN App. C) replace the BN running averages of the sampling network
by the plain average of the batch statistics over several forward passes of G.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


class EMA:
    """An EMA copy of ``G`` (``self.module``, kept in eval mode, no gradients).

    Args:
        G: the generator being trained (unwrapped, not DDP).
        decay: averaging factor per G step (``train.ema_decay``).
        start: first G step at which the average is taken (``train.ema_start``).
    """

    def __init__(self, G: nn.Module, decay: float, start: int = 0):
        self.decay, self.start = decay, start
        self.module = copy.deepcopy(G).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, G: nn.Module, step: int) -> None:
        """Average G's parameters into the copy (plain copy while ``step < start``) and copy its
        buffers: two multi-tensor ops (``_foreach_lerp_``/``_foreach_copy_``, then
        ``_foreach_copy_``) whatever the number of tensors, instead of one op per tensor."""
        ema_params, params = list(self.module.parameters()), list(G.parameters())
        if step < self.start:
            torch._foreach_copy_(ema_params, params)
        else:
            torch._foreach_lerp_(ema_params, params, 1.0 - self.decay)
        ema_buffers, buffers = list(self.module.buffers()), list(G.buffers())
        if buffers:
            torch._foreach_copy_(ema_buffers, buffers)


@torch.no_grad()
def standing_stats(
    G: nn.Module,
    n_batches: int,
    make_inputs: Callable[[], tuple[torch.Tensor, torch.Tensor]],
) -> None:
    """Reset G's BN running statistics and set them to the mean over ``n_batches`` batches.

    Only the batch-norm layers run in training mode (with ``momentum=None``, i.e. a cumulative
    average); spectral-norm vectors and everything else stay as they are. ``G`` is left in eval
    mode.

    Args:
        G: the sampling generator (usually the EMA copy).
        n_batches: forward passes to average over (``train.standing_stats``).
        make_inputs: returns one batch ``(z (B, dim_z), y (B,))``.
    """
    bns = [m for m in G.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    if not bns or n_batches <= 0:
        return
    G.eval()
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
        bn.train()
    for _ in range(n_batches):
        G(*make_inputs())
    for bn, momentum in zip(bns, momenta):
        bn.momentum = momentum
        bn.eval()
