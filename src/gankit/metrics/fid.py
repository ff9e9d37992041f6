"""Fréchet Inception Distance (Heusel et al. 2017, "GANs trained by a two time-scale update
rule converge to a local Nash equilibrium", eq. 6)::

    FID = |μ1 − μ2|² + tr(Σ1) + tr(Σ2) − 2 tr((Σ1^½ Σ2 Σ1^½)^½)

The last term equals ``tr((Σ1 Σ2)^½)`` of the paper (Σ1 Σ2 is similar to the symmetric PSD
matrix Σ1^½ Σ2 Σ1^½), which we evaluate with two symmetric eigendecompositions in float64:
no complex numbers, no NaN; tiny negative eigenvalues from round-off are clamped to 0.
"""

from __future__ import annotations

import numpy as np

from gankit.metrics.registry import Features, register_metric


def gaussian_stats(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(D,)`` and unbiased covariance ``(D, D)`` (ddof=1) of ``(N, D)`` features, float64."""
    feats = np.asarray(feats, dtype=np.float64)
    if feats.ndim != 2 or len(feats) < 2:
        raise ValueError(f"need features of shape (N >= 2, D), got {feats.shape}")
    return feats.mean(axis=0), np.cov(feats, rowvar=False)


def _sqrt_psd(a: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix via ``eigh``; negatives clamped to 0."""
    w, v = np.linalg.eigh((a + a.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray
) -> float:
    """Squared Fréchet (2-Wasserstein) distance between N(μ1, Σ1) and N(μ2, Σ2).

    Args:
        mu1, mu2: means ``(D,)``.
        sigma1, sigma2: covariances ``(D, D)`` (symmetric PSD).
    Returns:
        FID as a Python float (float64 arithmetic throughout).
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != mu1.shape * 2:
        raise ValueError(f"shape mismatch: mu {mu1.shape}/{mu2.shape}, sigma {s1.shape}/{s2.shape}")
    root1 = _sqrt_psd(s1)
    inner = root1 @ s2 @ root1
    eig = np.linalg.eigvalsh((inner + inner.T) / 2)
    tr_covmean = np.sqrt(np.clip(eig, 0.0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean)


def fid_from_features(feats1: np.ndarray, feats2: np.ndarray) -> float:
    """FID between the Gaussians fitted to ``feats1`` ``(N1, D)`` and ``feats2`` ``(N2, D)``."""
    return frechet_distance(*gaussian_stats(feats1), *gaussian_stats(feats2))


@register_metric("fid", extractor="inception")
def _fid(fake: Features, real: Features | None) -> dict[str, float]:
    return {"fid": fid_from_features(fake["pool3"], real["pool3"])}
