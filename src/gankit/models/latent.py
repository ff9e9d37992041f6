"""Latent sampling with BigGAN's truncation trick (Brock et al. 2019, Sec. 3.1)."""

from __future__ import annotations

import math
import numbers

import torch

from gankit.errors import ParameterError

__all__ = ["MAX_ROUNDS", "check_truncation", "sample_z"]

MAX_ROUNDS = 1000
"""Resampling rounds before the entries still outside ``[-tau, tau]`` are drawn by inversion
(only for tiny ``tau``: at ``tau = 0.1`` all of 256 x 128 entries are inside after ~150)."""


def check_truncation(truncation: object) -> float:
    """``truncation`` as a float: 0 (off) or a finite number > 0, else a ParameterError."""
    number = isinstance(truncation, numbers.Real) and not isinstance(truncation, bool)
    if not (number and math.isfinite(truncation) and truncation >= 0):
        raise ParameterError(
            "truncation", f"expected 0 (off) or a finite number > 0, got {truncation!r}"
        )
    return float(truncation)


def sample_z(
    n: int,
    dim_z: int,
    truncation: float = 0.0,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """``z ~ N(0, I)`` of shape ``(n, dim_z)``; with ``truncation = tau > 0`` every entry with
    ``|z| > tau`` is resampled until none is left (a truncated normal on ``[-tau, tau]``). After
    :data:`MAX_ROUNDS` rounds the rest are drawn exactly by inversion,
    ``Phi^-1(Phi(-tau) + u (Phi(tau) - Phi(-tau)))`` with ``u ~ U(0, 1)``, so a tiny ``tau``
    cannot loop for ever.

    Args:
        truncation: ``tau``; 0 means no truncation.
        generator: random source (its device must be ``device``).

    Raises:
        ParameterError: ``truncation`` not a number, negative, NaN or infinite.
    """
    check_truncation(truncation)
    z = torch.randn(n, dim_z, generator=generator, device=device)
    if truncation > 0:
        outside = z.abs() > truncation
        for _ in range(MAX_ROUNDS):
            if not outside.any():
                return z
            z[outside] = torch.randn(int(outside.sum()), generator=generator, device=device)
            outside = z.abs() > truncation
        z[outside] = _truncated_by_inversion(int(outside.sum()), truncation, generator, z.device)
    return z


def _truncated_by_inversion(
    k: int, tau: float, generator: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    """``k`` draws of N(0, 1) truncated to ``[-tau, tau]`` by inverting its CDF (float64)."""
    lo = 0.5 * math.erfc(tau / math.sqrt(2))  # Phi(-tau)
    u = torch.rand(k, generator=generator, device=device, dtype=torch.float64)
    z = torch.special.ndtri(lo + u * (1 - 2 * lo)).clamp(-tau, tau)
    return z.float()
