"""Inception Score and KID: closed forms, unbiasedness, agreement with torch-fidelity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from golden.make_golden import golden_features

from gankit.errors import GankitError
from gankit.metrics import inception_score, kernel_inception_distance
from gankit.metrics.kid import mmd2_unbiased

GOLDEN = Path(__file__).parent / "golden" / "inception_golden.npz"


def test_is_of_uniform_logits_is_one():
    mean, std = inception_score(np.zeros((100, 1008)))
    assert mean == pytest.approx(1.0, abs=1e-12) and std == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("k", [2, 10])
def test_is_of_one_hot_logits_over_k_balanced_classes_is_k(k):
    logits = np.zeros((200, 1008))
    logits[np.arange(200), np.arange(200) % k] = 1e4  # one-hot after softmax
    mean, std = inception_score(logits, splits=10, shuffle_seed=None)  # balanced splits
    assert mean == pytest.approx(k, rel=1e-10) and std == pytest.approx(0.0, abs=1e-9)


def test_is_against_einsum_kl():
    logits = np.random.RandomState(0).randn(40, 7) * 2
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    scores = []
    for chunk in np.split(p, 4):
        q = chunk.mean(0)
        kl = np.einsum("nk,nk->n", chunk, np.log(chunk) - np.log(q))
        scores.append(np.exp(kl.mean()))
    mean, std = inception_score(logits, splits=4, shuffle_seed=None)
    assert mean == pytest.approx(np.mean(scores)) and std == pytest.approx(np.std(scores))


def test_is_matches_torch_fidelity_golden():
    *_, logits = golden_features()
    with np.load(GOLDEN) as g:
        mean, std = inception_score(logits, splits=10, shuffle_seed=2020)
        assert mean == pytest.approx(float(g["is_mean"]), rel=1e-10)
        assert std == pytest.approx(float(g["is_std"]), rel=1e-8)


def test_mmd2_against_explicit_double_sum():
    rng = np.random.RandomState(1)
    x, y = rng.randn(6, 3), rng.randn(6, 3) + 1
    d, m = 3, 6

    def k(a, b):
        return (a @ b / d + 1) ** 3

    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j)
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j)
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m))
    expected = (xx + yy) / (m * (m - 1)) - 2 * xy / m**2
    assert mmd2_unbiased(x, y) == pytest.approx(expected, rel=1e-12)


def test_kid_is_unbiased_on_equal_distributions():
    rng = np.random.RandomState(2)
    a, b = rng.randn(2000, 8), rng.randn(2000, 8)
    mean, std = kernel_inception_distance(a, b, subsets=200, subset_size=100)
    # an unbiased estimator: |mean| within ~3 standard errors of 0 (a biased V-statistic is not)
    assert abs(mean) < 3 * std / np.sqrt(200)
    shifted, _ = kernel_inception_distance(a, b + 0.5, subsets=20, subset_size=100)
    assert shifted > 10 * std


def test_kid_matches_torch_fidelity_golden():
    fake, real, _ = golden_features()
    with np.load(GOLDEN) as g:
        mean, std = kernel_inception_distance(fake, real, subsets=10, subset_size=50, seed=2020)
        assert mean == pytest.approx(float(g["kid_mean"]), rel=1e-6)
        assert std == pytest.approx(float(g["kid_std"]), rel=1e-6)


def test_kid_subset_too_large_is_an_error():
    with pytest.raises(GankitError, match="subset_size 1000"):
        kernel_inception_distance(np.zeros((10, 2)), np.zeros((10, 2)))
