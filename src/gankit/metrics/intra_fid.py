"""Intra-class FID for conditional models: the mean over classes of the FID between the
generated and real images of that class (Miyato & Koyama 2018, "cGANs with projection
discriminator", §5). Used for class-conditional ImageNet results in SNGAN/SAGAN/BigGAN papers.
"""

from __future__ import annotations

import numpy as np

from gankit.errors import GankitError
from gankit.metrics.fid import fid_from_features
from gankit.metrics.registry import Features, register_metric


def intra_class_fid(
    real_feats: np.ndarray,
    real_labels: np.ndarray,
    fake_feats: np.ndarray,
    fake_labels: np.ndarray,
) -> float:
    """Mean of per-class FIDs over the classes with ≥ 2 real and ≥ 2 generated images.

    Args:
        real_feats: ``(N, D)``; real_labels: int ``(N,)``.
        fake_feats: ``(M, D)``; fake_labels: int ``(M,)`` (the conditioning classes).
    """
    real_labels, fake_labels = np.asarray(real_labels), np.asarray(fake_labels)
    fids = []
    for c in np.unique(fake_labels):
        r, f = real_feats[real_labels == c], fake_feats[fake_labels == c]
        if len(r) >= 2 and len(f) >= 2:
            fids.append(fid_from_features(f, r))
    if not fids:
        raise GankitError("intra_fid needs at least 2 real and 2 generated images of a class")
    return float(np.mean(fids))


@register_metric("intra_fid", extractor="inception", needs_labels=True, min_per_class=2)
def _intra_fid(fake: Features, real: Features | None) -> dict[str, float]:
    return {
        "intra_fid": intra_class_fid(real["pool3"], real["labels"], fake["pool3"], fake["labels"])
    }
