"""Activation recomputation ("activation checkpointing") of residual blocks (Chen et al. 2016,
"Training Deep Nets with Sublinear Memory Cost").

A block with ``checkpoint_activations = True`` keeps only its inputs during the forward pass and
recomputes its inner activations in the backward pass, trading one more forward of the block
for their memory. The recomputation must not change any state a second time: spectral-norm
layers reuse the ``u``, ``v`` of the forward (no second power-iteration step) and batch norms
keep their running statistics (momentum 0 during the recompute, ``num_batches_tracked``
restored). Gradients, outputs and state are therefore those of the plain block (tested).

Under ``torch.compile`` the block is a plain ``checkpoint`` region (TorchDynamo does not trace
the state-preserving context above): the partitioner recomputes the region in the backward
graph, where no state is written (buffer updates are applied once, after the forward graph),
and the compiled step runs the spectral norms' power iteration before the forward
(:meth:`gankit.layers.spectral_norm.SNLayers.advance`), so the recompute reads the
``u``, ``v`` of the forward.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.checkpoint import checkpoint

from gankit.layers.spectral_norm import frozen_power_iteration

__all__ = ["RecomputableBlock", "no_state_updates"]


@contextlib.contextmanager
def no_state_updates(module: nn.Module) -> Iterator[None]:
    """Inside the block, ``module``'s spectral norms skip their power iteration and its batch
    norms (in training mode) normalise with batch statistics without updating running ones."""
    bns = [m for m in module.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    bn_saved = [(m.momentum, m.num_batches_tracked.clone()) for m in bns]
    for m in bns:
        m.momentum = 0.0
    try:
        with frozen_power_iteration(module):
            yield
    finally:
        for m, (momentum, tracked) in zip(bns, bn_saved):
            m.momentum = momentum
            m.num_batches_tracked.copy_(tracked)


class RecomputableBlock(nn.Module):
    """Base of a block whose ``block_forward(*args)`` may recompute its activations in backward.

    ``checkpoint_activations`` (default False; set by ``train.checkpoint_activations``) takes
    effect only when autograd is recording; otherwise the block runs as usual.
    """

    checkpoint_activations: bool = False

    def block_forward(self, *args: Any) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, *args: Any) -> torch.Tensor:
        if not (self.checkpoint_activations and torch.is_grad_enabled()):
            return self.block_forward(*args)
        if torch.compiler.is_compiling():  # see the module docstring
            return checkpoint(self.block_forward, *args, use_reentrant=False)
        return checkpoint(
            self.block_forward,
            *args,
            use_reentrant=False,
            context_fn=lambda: (contextlib.nullcontext(), no_state_updates(self)),
        )
