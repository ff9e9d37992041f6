"""Fractional max-pooling (Graham 2014, "Fractional Max-Pooling", arXiv:1412.6071, Sec. 2).

Down-sampling by a factor ``alpha`` in (1, 2) instead of 2. Along each spatial axis an increasing
integer sequence ``0 = a_0 < a_1 < ... < a_{N_out} = N_in - 1`` with increments
``a_i - a_{i-1}`` in {1, 2} defines the pooling intervals, and output ``(i, j)`` is the max over
the region ``P_ij = I_i x J_j`` (rows from the sequence ``a``, columns from an independent ``b``):

- disjoint: ``I_i = [a_{i-1}, a_i - 1]`` (1 or 2 pixels), as Graham's Sec. 2;
- overlapping: ``I_i = [a_{i-1}, a_i]`` (2 or 3 pixels; neighbours share their boundary pixel).

(Graham's sequences run from 1 to ``N_in``; these are the same, 0-based. As in the paper the
disjoint regions leave the last row and column out.) The output size is
``N_out = ceil((N_in - 1) / alpha)`` (:func:`fmp_output_size`): the fewest increments of 1 or 2
summing to ``N_in - 1`` with mean at most ``alpha``; ``N_in - 1 - N_out`` of them are 2s.
Sequences are

- random: a uniformly random permutation of those 1s and 2s;
- pseudo-random: ``a_i = ceil(alpha' (i + u)) - ceil(alpha' u)`` with ``u ~ U(0, 1)`` and
  ``alpha' = (N_in - 1) / N_out`` (Graham's ``ceil(alpha (i + u))``, shifted to start at 0 and
  with ``alpha'`` the ratio that makes it end exactly at ``N_in - 1``).

In training every forward draws new sequences (from the global torch RNG, so a seeded run is
reproducible and activation checkpointing replays the same regions); in eval the sequences are
fixed (drawn from a generator seeded with ``seed``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["FractionalMaxPool2d", "fmp_output_size", "fmp_sequence", "fractional_max_pool2d"]


def fmp_output_size(n_in: int, alpha: float) -> int:
    """``N_out = ceil((N_in - 1) / alpha)`` for ``N_in >= 2`` and ``alpha`` in (1, 2)."""
    if not 1 < alpha < 2:
        raise ValueError(f"fractional max-pooling alpha must lie in (1, 2), got {alpha}")
    if n_in < 2:
        raise ValueError(f"fractional max-pooling needs an input size >= 2, got {n_in}")
    return math.ceil((n_in - 1) / alpha)


def fmp_sequence(
    n_in: int,
    n_out: int,
    pseudo_random: bool,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The boundaries ``a_0 = 0, ..., a_{N_out} = N_in - 1`` (long, ``(N_out + 1,)``) with
    increments in {1, 2}, random or pseudo-random (module docstring)."""
    twos = n_in - 1 - n_out
    if not 0 <= twos <= n_out:
        raise ValueError(f"no sequence of {n_out} increments of 1 or 2 sums to {n_in - 1}")
    if pseudo_random:
        ratio = (n_in - 1) / n_out
        u = float(torch.rand((), generator=generator, dtype=torch.float64))
        i = torch.arange(n_out + 1, dtype=torch.float64)
        a = torch.ceil(ratio * (i + u)) - math.ceil(ratio * u)
        a[-1] = n_in - 1  # exact in real arithmetic; guards float rounding
        return a.long()
    steps = torch.ones(n_out, dtype=torch.long)
    steps[torch.randperm(n_out, generator=generator)[:twos]] = 2
    return torch.cat([torch.zeros(1, dtype=torch.long), steps.cumsum(0)])


def _pool_axis(x: torch.Tensor, seq: torch.Tensor, dim: int, overlapping: bool) -> torch.Tensor:
    """Max of ``x`` along ``dim`` over the intervals of ``seq`` (``(N_out,)`` along ``dim``)."""
    seq = seq.to(x.device)
    start, end = seq[:-1], seq[1:] - (0 if overlapping else 1)  # inclusive ends
    size = int((end - start).max()) + 1
    # the k-th pixel of each interval, clamped to its last pixel (a repeat does not change a max)
    taps = [x.index_select(dim, torch.minimum(start + k, end)) for k in range(size)]
    out = taps[0]
    for tap in taps[1:]:
        out = torch.maximum(out, tap)
    return out


def fractional_max_pool2d(
    x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, overlapping: bool
) -> torch.Tensor:
    """``x: (B, C, H, W) -> (B, C, len(rows) - 1, len(cols) - 1)``: the max over each region
    ``I_i x J_j`` given the row and column boundary sequences (:func:`fmp_sequence`). Max over
    a rectangle is separable, so rows are pooled first, then columns."""
    return _pool_axis(_pool_axis(x, rows, 2, overlapping), cols, 3, overlapping)


class FractionalMaxPool2d(nn.Module):
    """``x: (B, C, H, W) -> (B, C, ceil((H-1)/alpha), ceil((W-1)/alpha))``.

    Args:
        alpha: the pooling ratio in (1, 2) (Graham's experiments: ``sqrt(2)``).
        pseudo_random: pseudo-random sequences instead of random ones.
        overlapping: overlapping regions instead of disjoint ones.
        seed: seed of the fixed eval-mode sequences.
    """

    def __init__(
        self,
        alpha: float = math.sqrt(2),
        pseudo_random: bool = False,
        overlapping: bool = True,
        seed: int = 0,
    ):
        super().__init__()
        fmp_output_size(2, alpha)  # checks alpha
        self.alpha, self.pseudo_random, self.overlapping = alpha, pseudo_random, overlapping
        self.seed = seed

    def output_size(self, n_in: int) -> int:
        return fmp_output_size(n_in, self.alpha)

    def regions(self, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Row and column boundary sequences for an ``H x W`` input: fresh draws from the
        global RNG in training, the fixed ones in eval."""
        gen = None if self.training else torch.Generator().manual_seed(self.seed)
        rows = fmp_sequence(height, self.output_size(height), self.pseudo_random, gen)
        cols = fmp_sequence(width, self.output_size(width), self.pseudo_random, gen)
        return rows, cols

    def pool(self, x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """Pool ``x`` with given regions (a block pools its two paths with the same ones)."""
        return fractional_max_pool2d(x, rows, cols, self.overlapping)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(x, *self.regions(x.shape[2], x.shape[3]))

    def extra_repr(self) -> str:
        kind = "pseudo-random" if self.pseudo_random else "random"
        return f"alpha={self.alpha:.4g}, {kind}, overlapping={self.overlapping}"
