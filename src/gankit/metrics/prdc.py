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

Registered as ``prdc`` (Inception pool3 features) and, offline, ``cprdc`` → ``cprecision``,
``crecall``, ``cdensity``, ``ccoverage`` in the 128-d feature space of gankit's own classifier
(:mod:`gankit.metrics.classifier`), plus ``ccoverage_class``: coverage within each class (real
and generated images of class ``c`` only) as ``ccoverage_c<c>``, with their mean
``ccoverage_class_mean`` and minimum ``ccoverage_class_min``. ``gankit eval`` reports the same
numbers for the classifier's held-out real images (``*_real_heldout``, the real-vs-real
ceiling); coverage depends on the sample counts, so compare equal ``--n``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from gankit.errors import GankitError
from gankit.metrics.registry import Features, register_metric

PRDC_K = 5
"""Nearest neighbours of PRDC's k-NN balls (Naeem et al. 2020 use k = 5)."""


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
    k: int = PRDC_K,
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


def class_coverage(
    real_feats: np.ndarray,
    real_labels: np.ndarray,
    fake_feats: np.ndarray,
    fake_labels: np.ndarray,
    k: int = PRDC_K,
) -> dict[int, float]:
    """Coverage of each class ``c`` between ``real_feats[real_labels == c]`` and
    ``fake_feats[fake_labels == c]``, for the classes with more than ``k`` images of each."""
    out = {}
    for c in np.unique(real_labels):
        r, f = real_feats[real_labels == c], fake_feats[fake_labels == c]
        if min(len(r), len(f)) > k:
            out[int(c)] = prdc(r, f, k)["coverage"]
    return out


@register_metric("cprdc", extractor="classifier")
def _cprdc(fake: Features, real: Features | None) -> dict[str, float]:
    return {f"c{k}": v for k, v in prdc(real["clf_features"], fake["clf_features"]).items()}


@register_metric(
    "ccoverage_class", extractor="classifier", needs_labels=True, min_per_class=PRDC_K + 1
)
def _ccoverage_class(fake: Features, real: Features | None) -> dict[str, float]:
    per_class = class_coverage(
        real["clf_features"], real["labels"], fake["clf_features"], fake["labels"]
    )
    if not per_class:
        raise GankitError(
            f"ccoverage_class needs more than {PRDC_K} real and generated images of a class "
            f"(eval.n / --n: at least {PRDC_K + 1} per class of the data)"
        )
    values = list(per_class.values())
    return {
        "ccoverage_class_mean": float(np.mean(values)),
        "ccoverage_class_min": float(np.min(values)),
        **{f"ccoverage_c{c}": v for c, v in per_class.items()},
    }
