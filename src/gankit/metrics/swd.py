"""Sliced Wasserstein distance on pixels (offline metric; Rabin et al. 2011, Bonneel et al.
2015)::

    SWD(X, Y) = 1/L Σ_l W1(θ_lᵀX, θ_lᵀY)

with ``L`` random unit directions ``θ_l`` in pixel space (images flattened, scaled to
``[0, 1]``) and the exact 1-D Wasserstein-1 distance between the projected empirical
distributions. The directions come from a fixed seed, so generated and reference images (and
different runs) are projected identically; the projections ``(N, L)`` are the "features" and
are computed batch by batch. This is *whole-image* SWD on raw pixels, not the multi-scale
Laplacian-patch SWD of Karras et al. (2018); it is gankit-specific and not comparable with
Inception-FID or with published SWD numbers.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from gankit.metrics.registry import ExtractorSetup, Features, register_extractor, register_metric

SWD_DIRECTIONS = 256
SWD_SEED = 0


def wasserstein_1d(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Exact W1 between empirical distributions, column by column.

    ``W1 = ∫_0^1 |F_u⁻¹(t) − F_v⁻¹(t)| dt``; both quantile functions are step functions, so
    the integral is a finite sum over the merged breakpoints ``{i/n} ∪ {j/m}``.

    Args:
        u: ``(n, L)``; v: ``(m, L)`` (sizes may differ).
    Returns:
        ``(L,)`` distances.
    """
    u, v = np.sort(np.asarray(u, np.float64), axis=0), np.sort(np.asarray(v, np.float64), axis=0)
    n, m = len(u), len(v)
    t = np.union1d(np.arange(n + 1) / n, np.arange(m + 1) / m)
    mid, width = (t[1:] + t[:-1]) / 2, np.diff(t)
    iu = np.minimum((mid * n).astype(np.int64), n - 1)
    iv = np.minimum((mid * m).astype(np.int64), m - 1)
    return (np.abs(u[iu] - v[iv]) * width[:, None]).sum(axis=0)


def random_directions(dim: int, n_directions: int = SWD_DIRECTIONS, seed: int = SWD_SEED) -> Tensor:
    """``(dim, L)`` unit columns, uniform on the sphere (normalised Gaussians), CPU float32."""
    g = torch.Generator().manual_seed(seed)
    theta = torch.randn(dim, n_directions, generator=g)
    return theta / theta.norm(dim=0, keepdim=True)


class PixelProjector:
    """Feature extractor for SWD: uint8 ``(B, C, H, W)`` → ``{"swd_proj": (B, L)}``."""

    def __init__(self, n_directions: int = SWD_DIRECTIONS, seed: int = SWD_SEED) -> None:
        self.n_directions, self.seed = n_directions, seed
        self.id = f"swd-pixels01-L{n_directions}-seed{seed}"
        self._theta: Tensor | None = None

    def __call__(self, images: Tensor) -> dict[str, Tensor]:
        flat = images.reshape(len(images), -1).float() / 255.0
        if self._theta is None or self._theta.shape[0] != flat.shape[1]:
            self._theta = random_directions(flat.shape[1], self.n_directions, self.seed)
        return {"swd_proj": flat @ self._theta.to(flat.device)}


@register_extractor("swd", outputs=("swd_proj",), offline=True)
def _swd_extractor(setup: ExtractorSetup) -> tuple[PixelProjector, dict]:
    """Random projections of the pixels (no weights)."""
    return PixelProjector(), {}


def sliced_wasserstein(
    x: np.ndarray, y: np.ndarray, n_directions: int = SWD_DIRECTIONS, seed: int = SWD_SEED
) -> float:
    """SWD between point sets ``x`` ``(N, D)`` and ``y`` ``(M, D)`` (any features)."""
    theta = random_directions(np.shape(x)[1], n_directions, seed).double().numpy()
    return float(wasserstein_1d(np.asarray(x) @ theta, np.asarray(y) @ theta).mean())


@register_metric("swd", extractor="swd")
def _swd(fake: Features, real: Features | None) -> dict[str, float]:
    return {"swd": float(wasserstein_1d(fake["swd_proj"], real["swd_proj"]).mean())}
