"""Batch norm that can normalise a batch made of several independent sub-batches at once.

Running a network once on ``k`` batches stacked along the batch dimension costs a fraction of
the ops of ``k`` separate runs, but plain batch norm would then use the statistics of the whole
stack. :class:`BatchNorm2d` with ``chunks = k`` normalises each of the ``k`` sub-batches of
``x: (k * B, C, H, W)`` with its own statistics and updates the running statistics once per
sub-batch, in order: ``k`` separate training-mode forwards of ``nn.BatchNorm2d`` (Ioffe &
Szegedy 2015, Alg. 1), bit for bit: it runs exactly those ``k`` batch norms. With grad it
concatenates their outputs; without grad it writes each into its rows of one output tensor as
soon as it is computed, so that no per-chunk outputs pile up in memory.
Everything around the batch norms (convolutions, activations, the conditional gains) then
runs once for all sub-batches.

``chunks = 1`` (the default) and evaluation mode are exactly ``nn.BatchNorm2d``. Chunking
needs a momentum (``momentum=None``, the cumulative average, makes the host read
``num_batches_tracked`` once per sub-batch).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ["BatchNorm2d", "can_chunk", "chunked"]


class BatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` plus ``chunks`` (see the module docstring); same parameters, buffers
    and state dict."""

    chunks: int = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x: (chunks * B, C, H, W) -> (chunks * B, C, H, W)``."""
        if self.chunks == 1 or not self.training:
            return super().forward(x)
        k = self.chunks
        if x.shape[0] % k:
            raise ValueError(f"chunked batch norm: batch {x.shape[0]} is not {k} equal sub-batches")
        parts = x.chunk(k)
        if self.track_running_stats:
            self.num_batches_tracked.add_(k)
        if torch.is_grad_enabled():  # differentiable: k batch norms, concatenated
            return torch.cat([self.normalize(part) for part in parts])
        # no grad: each sub-batch's output goes into its rows of one output as soon as it is
        # computed, so no more than one sub-batch's output is held besides it
        out = torch.empty_like(x)
        for rows, part in zip(out.chunk(k), parts):
            rows.copy_(self.normalize(part))
        return out

    def normalize(self, part: torch.Tensor) -> torch.Tensor:
        """One training-mode batch norm of ``part`` (its statistics, a running-stat update)."""
        return F.batch_norm(
            part, self.running_mean, self.running_var, self.weight, self.bias, True,
            self.momentum, self.eps,
        )  # fmt: skip


def can_chunk(module: nn.Module) -> bool:
    """Whether every batch norm in ``module`` is a :class:`BatchNorm2d` with a momentum."""
    bns = [m for m in module.modules() if isinstance(m, _BatchNorm)]
    return all(isinstance(m, BatchNorm2d) and m.momentum is not None for m in bns)


@contextlib.contextmanager
def chunked(module: nn.Module, chunks: int) -> Iterator[None]:
    """Inside the block every :class:`BatchNorm2d` of ``module`` treats its input as ``chunks``
    equal, independent sub-batches (check :func:`can_chunk` first)."""
    bns = [m for m in module.modules() if isinstance(m, BatchNorm2d)]
    for m in bns:
        m.chunks = chunks
    try:
        yield
    finally:
        for m in bns:
            m.chunks = 1
