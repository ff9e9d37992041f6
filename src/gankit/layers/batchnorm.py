"""Batch norm that can normalise a batch made of several independent sub-batches at once.

Running a network once on ``k`` batches stacked along the batch dimension costs a fraction of
the ops of ``k`` separate runs, but plain batch norm would then use the statistics of the whole
stack. :class:`BatchNorm2d` with ``chunks = k`` computes what ``k`` separate training-mode
forwards of ``nn.BatchNorm2d`` compute (Ioffe & Szegedy 2015, Alg. 1), in one pass:

- output: chunk ``j`` of ``x: (k * B, C, H, W)`` is normalised with its own mean and biased
  variance, ``(x - mu_j) / sqrt(var_j + eps)`` (then the affine map, if any);
- running statistics: the ``k`` sequential updates ``r <- (1 - m) r + m s_j`` in closed form,
  ``r_k = (1 - m)^k r_0 + sum_j m (1 - m)^(k - 1 - j) s_j`` (``s_j`` = mean, or unbiased
  variance ``var_j * n / (n - 1)`` with ``n = B H W``), and ``num_batches_tracked += k``.

``chunks = 1`` (the default) and evaluation mode are exactly ``nn.BatchNorm2d``. Chunking
needs a momentum (``momentum=None``, the cumulative average, would need the host to read
``num_batches_tracked``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ["BatchNorm2d", "can_chunk", "chunked"]


class BatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` plus ``chunks`` (see the module docstring); same parameters, buffers
    and state dict."""

    chunks: int = 1

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._folds: dict[
            tuple, tuple[torch.Tensor, torch.Tensor]
        ] = {}  # closed-form update weights per setting

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.chunks == 1 or not self.training:
            return super().forward(x)
        return self._chunked_forward(x)

    def _fold_weights(
        self, k: int, n: int, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(k,)`` each: the closed-form update weights of the mean and the unbiased
        variance."""
        key = (k, n, self.momentum, device)
        if key not in self._folds:
            m = self.momentum
            w = [m * (1 - m) ** (k - 1 - j) for j in range(k)]
            unbiased = [x * n / max(n - 1, 1) for x in w]
            self._folds[key] = (
                torch.tensor(w, device=device),
                torch.tensor(unbiased, device=device),
            )
        return self._folds[key]

    def _chunked_forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x: (k * B, C, H, W)`` -> normalised per chunk, same shape."""
        k, c = self.chunks, x.shape[1]
        x5 = x.unflatten(0, (k, -1))  # (k, B, C, H, W)
        xf = x5.float()
        var, mean = torch.var_mean(xf, dim=(1, 3, 4), correction=0, keepdim=True)
        y = ((xf - mean) * torch.rsqrt(var + self.eps)).flatten(0, 1)
        if self.affine:
            y = torch.addcmul(self.bias.view(1, c, 1, 1), y, self.weight.view(1, c, 1, 1))
        if self.track_running_stats:
            n = x5.shape[1] * x5.shape[3] * x5.shape[4]
            w_mean, w_var = self._fold_weights(k, n, x.device)
            beta = (1 - self.momentum) ** k
            with torch.no_grad():
                self.running_mean.addmv_(mean.view(k, c).t(), w_mean, beta=beta)
                self.running_var.addmv_(var.view(k, c).t(), w_var, beta=beta)
                self.num_batches_tracked.add_(k)
        return y.to(x.dtype)


def can_chunk(module: nn.Module) -> bool:
    """Whether every batch norm in ``module`` is a :class:`BatchNorm2d` with a momentum."""
    bns = [m for m in module.modules() if isinstance(m, _BatchNorm)]
    return all(isinstance(m, BatchNorm2d) and m.momentum is not None for m in bns)


@contextlib.contextmanager
def chunked(module: nn.Module, chunks: int) -> Iterator[None]:
    """Inside the block every :class:`BatchNorm2d` of ``module`` treats its input as ``chunks``
    independent sub-batches (check :func:`can_chunk` first)."""
    bns = [m for m in module.modules() if isinstance(m, BatchNorm2d)]
    for m in bns:
        m.chunks = chunks
    try:
        yield
    finally:
        for m in bns:
            m.chunks = 1
