"""Kernel Inception Distance (Bińkowski et al. 2018, "Demystifying MMD GANs", §4 / eq. 4).

KID is the unbiased estimate of the squared MMD with the cubic polynomial kernel
``k(x, y) = (xᵀy / d + 1)³`` (``d`` = feature dimension), averaged over random subsets::

    MMD²_u = Σ_{i≠j} [k(x_i, x_j) + k(y_i, y_j)] / (m(m−1)) − 2 Σ_{i,j} k(x_i, y_j) / m²

Subsets are drawn without replacement with ``numpy.random.RandomState(seed)`` (first from
``feats1`` then from ``feats2``, for every subset) as torch-fidelity does, so numbers agree.
"""

from __future__ import annotations

import numpy as np

from gankit.errors import GankitError
from gankit.metrics.registry import Features, register_metric


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``(xᵀy / d + 1)³`` for all pairs: ``(N, d), (M, d) -> (N, M)``, float64."""
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD² between two equally sized samples ``x``, ``y`` ``(m, d)``."""
    m = len(x)
    k_xx, k_yy, k_xy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(within - 2.0 * k_xy.sum() / (m * m))


def kernel_inception_distance(
    feats1: np.ndarray,
    feats2: np.ndarray,
    subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 2020,
) -> tuple[float, float]:
    """KID between ``feats1`` ``(N1, d)`` and ``feats2`` ``(N2, d)``.

    Returns:
        ``(mean, std)`` of MMD²_u over ``subsets`` random subsets of ``subset_size`` rows each.
    Raises:
        GankitError: ``subset_size`` exceeds ``N1`` or ``N2``.
    """
    f1, f2 = np.asarray(feats1, np.float64), np.asarray(feats2, np.float64)
    if subset_size > min(len(f1), len(f2)) or subset_size < 2:
        raise GankitError(
            f"KID subset_size {subset_size} must be in [2, min(N1, N2) = {min(len(f1), len(f2))}]"
        )
    rng = np.random.RandomState(seed)
    mmds = np.empty(subsets)
    for i in range(subsets):
        a = f1[rng.choice(len(f1), subset_size, replace=False)]
        b = f2[rng.choice(len(f2), subset_size, replace=False)]
        mmds[i] = mmd2_unbiased(a, b)
    return float(mmds.mean()), float(mmds.std())


@register_metric("kid", extractor="inception")
def _kid(fake: Features, real: Features | None) -> dict[str, float]:
    # Standard protocol: 100 subsets of 1000; smaller sets use all their rows per subset.
    size = min(1000, len(fake["pool3"]), len(real["pool3"]))
    mean, std = kernel_inception_distance(fake["pool3"], real["pool3"], subset_size=size)
    return {"kid_mean": mean, "kid_std": std}
