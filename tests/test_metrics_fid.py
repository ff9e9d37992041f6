"""FID: closed forms for Gaussians, FID(x, x) = 0, numerical stability, intra-class FID, peer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from golden.make_golden import golden_features

from gankit.errors import GankitError
from gankit.metrics import (
    compute,
    fid_from_features,
    frechet_distance,
    gaussian_stats,
    intra_class_fid,
)

GOLDEN = Path(__file__).parent / "golden" / "inception_golden.npz"


def test_diagonal_closed_form():
    rng = np.random.RandomState(0)
    a, b = rng.rand(6) + 0.1, rng.rand(6) + 0.1
    mu1, mu2 = rng.randn(6), rng.randn(6)
    expected = np.sum((np.sqrt(a) - np.sqrt(b)) ** 2) + np.sum((mu1 - mu2) ** 2)
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-10)


def test_commuting_full_covariances_closed_form():
    # Σ1 = Q diag(a) Qᵀ, Σ2 = Q diag(b) Qᵀ share eigenvectors: FID = Σ(√a − √b)² + |Δμ|².
    rng = np.random.RandomState(1)
    q, _ = np.linalg.qr(rng.randn(5, 5))
    a, b = rng.rand(5) + 0.5, rng.rand(5) * 3
    s1, s2 = q @ np.diag(a) @ q.T, q @ np.diag(b) @ q.T
    mu = rng.randn(5)
    expected = np.sum((np.sqrt(a) - np.sqrt(b)) ** 2) + mu @ mu
    assert frechet_distance(mu, s1, np.zeros(5), s2) == pytest.approx(expected, rel=1e-9)


def test_general_covariances_against_trace_sqrt_of_product():
    # tr((Σ1Σ2)^½) = Σ sqrt(eigenvalues of Σ1Σ2) (real, non-negative for PSD Σ1, Σ2).
    rng = np.random.RandomState(2)
    a, b = rng.randn(7, 7), rng.randn(7, 7)
    s1, s2 = a @ a.T, b @ b.T
    tr = np.sqrt(np.linalg.eigvals(s1 @ s2).real.clip(0)).sum()
    expected = np.trace(s1) + np.trace(s2) - 2 * tr
    assert frechet_distance(np.zeros(7), s1, np.zeros(7), s2) == pytest.approx(expected, rel=1e-8)


def test_fid_of_identical_features_is_zero_and_finite_when_rank_deficient():
    feats = np.random.RandomState(3).randn(50, 64)  # N < D: singular covariance
    fid = fid_from_features(feats, feats)
    assert np.isfinite(fid) and abs(fid) < 1e-6


def test_gaussian_stats_unbiased_covariance():
    feats = np.random.RandomState(4).randn(30, 3).astype(np.float32)
    mu, sigma = gaussian_stats(feats)
    centered = feats.astype(np.float64) - feats.mean(0)
    np.testing.assert_allclose(sigma, np.einsum("ni,nj->ij", centered, centered) / 29)
    assert mu.dtype == np.float64


def test_matches_torch_fidelity_golden():
    fake, real, _ = golden_features()
    with np.load(GOLDEN) as g:
        # the peer averages float32 features in float32; we accumulate in float64
        assert fid_from_features(fake, real) == pytest.approx(float(g["fid"]), rel=1e-6)


def test_intra_class_fid_is_mean_of_per_class_fids():
    rng = np.random.RandomState(5)
    real, fake = rng.randn(60, 4), rng.randn(60, 4) + 0.5
    yr, yf = np.arange(60) % 3, np.arange(60) % 3
    expected = np.mean([fid_from_features(fake[yf == c], real[yr == c]) for c in range(3)])
    assert intra_class_fid(real, yr, fake, yf) == pytest.approx(expected)
    with pytest.raises(GankitError):
        intra_class_fid(real, yr, fake[:1], yf[:1])


def test_registry_fid_key():
    rng = np.random.RandomState(6)
    fake = {"pool3": rng.randn(20, 3), "labels": np.zeros(20, np.int64)}
    real = {"pool3": rng.randn(20, 3), "labels": np.zeros(20, np.int64)}
    assert compute(["fid"], fake, real) == {"fid": fid_from_features(fake["pool3"], real["pool3"])}
    with pytest.raises(GankitError, match="unknown metric 'fdi'"):
        compute(["fdi"], fake, real)
