"""PRDC (Naeem et al. 2020) and sliced Wasserstein distance: closed forms and a peer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from golden.make_golden import golden_features

from gankit.errors import GankitError
from gankit.metrics import compute, prdc, sliced_wasserstein, wasserstein_1d

GOLDEN = Path(__file__).parent / "golden" / "inception_golden.npz"


def test_prdc_identical_sets():
    x = np.random.RandomState(0).randn(200, 10)
    r = prdc(x, x.copy(), k=5)
    assert r["precision"] == r["recall"] == r["coverage"] == 1.0
    assert r["density"] == pytest.approx(1.0, abs=0.15)


def _prdc_bruteforce(real, fake, k):
    d_rr = np.sqrt(((real[:, None] - real[None]) ** 2).sum(-1))
    d_ff = np.sqrt(((fake[:, None] - fake[None]) ** 2).sum(-1))
    d_rf = np.sqrt(((real[:, None] - fake[None]) ** 2).sum(-1))  # (N, M)
    r_real = np.sort(d_rr, axis=1)[:, k]
    r_fake = np.sort(d_ff, axis=1)[:, k]
    inside = d_rf < r_real[:, None]
    return {
        "precision": inside.any(0).mean(),
        "recall": (d_rf < r_fake[None]).any(1).mean(),
        "density": inside.sum(0).mean() / k,
        "coverage": (d_rf.min(1) < r_real).mean(),
    }


def test_prdc_against_bruteforce_with_chunks():
    rng = np.random.RandomState(1)
    real, fake = rng.randn(70, 4), rng.randn(50, 4) * 1.4 + 0.3
    expected = _prdc_bruteforce(real, fake, 3)
    got = prdc(real, fake, k=3, chunk=16)
    for key in expected:
        assert got[key] == pytest.approx(expected[key], abs=1e-12), key


def test_offline_prdc_and_per_class_coverage_against_bruteforce():
    """cprdc = PRDC on the classifier features; ccoverage_class = coverage within each class.
    Class 1's fakes cluster on one part of its reals (mode dropping): lower coverage there."""
    rng = np.random.RandomState(2)
    labels = np.repeat([0, 1, 2], 40)
    real = rng.randn(120, 6) + 4 * labels[:, None]
    fake = rng.randn(120, 6) + 4 * labels[:, None]
    fake[labels == 1] = real[labels == 1][:5].mean(0) + 0.2 * rng.randn(40, 6)
    r = compute(
        ["cprdc", "ccoverage_class"],
        {"clf_features": fake, "labels": labels},
        {"clf_features": real, "labels": labels},
    )
    for name, value in _prdc_bruteforce(real, fake, 5).items():
        assert r[f"c{name}"] == pytest.approx(value)
    per_class = [
        _prdc_bruteforce(real[labels == c], fake[labels == c], 5)["coverage"] for c in range(3)
    ]
    assert [r[f"ccoverage_c{c}"] for c in range(3)] == pytest.approx(per_class)
    assert r["ccoverage_class_mean"] == pytest.approx(np.mean(per_class))
    assert r["ccoverage_class_min"] == r["ccoverage_c1"] < min(r["ccoverage_c0"], r["ccoverage_c2"])
    tiny = {"clf_features": real[:4], "labels": labels[:4]}
    with pytest.raises(GankitError, match="ccoverage_class needs more than 5"):
        compute(["ccoverage_class"], tiny, tiny)


def test_precision_recall_match_torch_fidelity():
    fake, real, _ = golden_features()
    r = prdc(real, fake, k=5)
    with np.load(GOLDEN) as g:
        assert r["precision"] == pytest.approx(float(g["precision_k5"]))
        assert r["recall"] == pytest.approx(float(g["recall_k5"]))


def test_w1_closed_forms():
    u = np.random.RandomState(2).randn(100, 1)
    assert wasserstein_1d(u, u + 0.7)[0] == pytest.approx(0.7)
    assert wasserstein_1d(u, u[::-1])[0] == pytest.approx(0.0, abs=1e-15)
    # unequal sizes: W1 = ∫|F − G| dx; F: mass ½ at 0 and 1, G: ⅓ at 0, ½, 1
    # |F − G| = 1/6 on [0, ½) and on [½, 1) → W1 = 1/6
    assert wasserstein_1d(np.array([[0.0], [1.0]]), np.array([[0.0], [0.5], [1.0]]))[
        0
    ] == pytest.approx(1 / 6)


def test_w1_against_cdf_integral():
    rng = np.random.RandomState(3)
    u, v = rng.rand(7), rng.rand(11) * 2
    grid = np.sort(np.concatenate([u, v]))
    f = np.searchsorted(np.sort(u), grid[:-1], side="right") / 7
    g = np.searchsorted(np.sort(v), grid[:-1], side="right") / 11
    expected = np.sum(np.abs(f - g) * np.diff(grid))
    assert wasserstein_1d(u[:, None], v[:, None])[0] == pytest.approx(expected, rel=1e-12)


def test_swd_identical_sets_and_one_dimension():
    x = np.random.RandomState(4).randn(300, 12)
    assert sliced_wasserstein(x, x.copy()) == pytest.approx(0.0, abs=1e-12)
    # in 1-D every direction is ±1, so SWD = W1
    a, b = x[:, :1], x[:, 1:2] * 2 + 1
    assert sliced_wasserstein(a, b) == pytest.approx(wasserstein_1d(a, b)[0], rel=1e-6)
