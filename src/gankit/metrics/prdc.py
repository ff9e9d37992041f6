"""Precision, recall, density and coverage (Naeem et al. 2020, "Reliable fidelity and diversity
metrics for generative models", eqs. 1–4), built on k-nearest-neighbour balls:

* ``r(X_i)`` = distance from real ``X_i`` to its k-th nearest *other* real sample
  (``r(Y_j)`` likewise within the fake set);
* precision = 1/M Σ_j 1[∃ i: ‖Y_j − X_i‖ < r(X_i)]
* recall    = 1/N Σ_i 1[∃ j: ‖X_i − Y_j‖ < r(Y_j)]
* density   = 1/(kM) Σ_j Σ_i 1[‖Y_j − X_i‖ < r(X_i)]
* coverage  = 1/N Σ_i 1[min_j ‖X_i − Y_j‖ < r(X_i)]

Strict ``<`` as the authors' reference implementation. Distances are computed in float64 in
row chunks, so memory is ``O(chunk · max(N, M))``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from gankit.metrics.registry import Features, register_metric


def _row_chunks(a: Tensor, b: Tensor, chunk: int):
    """Yield ``(start, cdist(a[start:start+chunk], b))``."""
    for start in range(0, len(a), chunk):
        yield start, torch.cdist(a[start : start + chunk], b)


def _knn_radii(x: Tensor, k: int, chunk: int) -> Tensor:
    """Distance of every row of ``x`` to its k-th nearest other row (self excluded)."""
    return torch.cat([d.kthvalue(k + 1, dim=1).values for _, d in _row_chunks(x, x, chunk)])


def prdc(
    real_feats: np.ndarray,
    fake_feats: np.ndarray,
    k: int = 5,
    device: str | torch.device = "cpu",
    chunk: int = 1024,
) -> dict[str, float]:
    """Precision/recall/density/coverage of fake ``(M, D)`` w.r.t. real ``(N, D)`` features.

    Returns:
        ``{"precision", "recall", "density", "coverage"}`` as floats (density may exceed 1).
    """
    x = torch.as_tensor(np.asarray(real_feats), dtype=torch.float64, device=device)
    y = torch.as_tensor(np.asarray(fake_feats), dtype=torch.float64, device=device)
    if min(len(x), len(y)) <= k:
        raise ValueError(f"PRDC with k={k} needs more than k real and fake samples")
    r_real, r_fake = _knn_radii(x, k, chunk), _knn_radii(y, k, chunk)
    in_real_balls = torch.cat([(d < r_real).sum(dim=1) for _, d in _row_chunks(y, x, chunk)])
    recall_hits, covered = [], []
    for start, d in _row_chunks(x, y, chunk):
        recall_hits.append((d < r_fake).any(dim=1))
        covered.append(d.min(dim=1).values < r_real[start : start + chunk])
    return {
        "precision": (in_real_balls > 0).double().mean().item(),
        "recall": torch.cat(recall_hits).double().mean().item(),
        "density": in_real_balls.double().mean().item() / k,
        "coverage": torch.cat(covered).double().mean().item(),
    }


@register_metric("prdc", extractor="inception")
def _prdc(fake: Features, real: Features | None) -> dict[str, float]:
    return prdc(real["pool3"], fake["pool3"])
