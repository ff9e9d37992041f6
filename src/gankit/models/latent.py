"""Latent sampling with BigGAN's truncation trick (Brock et al. 2019, Sec. 3.1)."""

from __future__ import annotations

import torch

from gankit.errors import GankitError

__all__ = ["sample_z"]


def sample_z(
    n: int,
    dim_z: int,
    truncation: float = 0.0,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """``z ~ N(0, I)`` of shape ``(n, dim_z)``; with ``truncation = tau > 0`` every entry with
    ``|z| > tau`` is resampled until none is left (a truncated normal on ``[-tau, tau]``).

    Args:
        truncation: ``tau``; 0 means no truncation.
        generator: random source (its device must be ``device``).
    """
    if truncation < 0:
        raise GankitError(f"truncation must be >= 0 (0 = off), got {truncation}")
    z = torch.randn(n, dim_z, generator=generator, device=device)
    if truncation > 0:
        outside = z.abs() > truncation
        while outside.any():
            z[outside] = torch.randn(int(outside.sum()), generator=generator, device=device)
            outside = z.abs() > truncation
    return z
