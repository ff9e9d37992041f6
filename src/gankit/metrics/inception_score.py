"""Inception Score (Salimans et al. 2016, "Improved techniques for training GANs", §4)::

    IS = exp( E_x KL(p(y|x) ‖ p(y)) ),   p(y) = E_x p(y|x)

computed per split (10 by default) and reported as mean and (population) std over splits.

Protocol as the original code and torch-fidelity: ``p(y|x)`` is the softmax over **all 1008**
logits of the FID Inception (including its 8 unused classes), taken from ``pool3 @ W`` *without*
the fc bias; the images are shuffled with ``numpy.random.RandomState(2020)`` before splitting.
"""

from __future__ import annotations

import numpy as np
import torch

from gankit.metrics.registry import Features, register_metric


def inception_score(
    logits: np.ndarray | torch.Tensor, splits: int = 10, shuffle_seed: int | None = 2020
) -> tuple[float, float]:
    """Inception Score of class logits.

    Args:
        logits: ``(N, K)`` unnormalised class scores (K = 1008 for the FID Inception).
        splits: number of disjoint chunks (``N // splits`` images each, remainder spread).
        shuffle_seed: seed of the permutation applied before splitting; ``None``: keep order.
    Returns:
        ``(mean, std)`` over the splits.
    """
    logits = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    n = logits.shape[0]
    if logits.dim() != 2 or n < splits:
        raise ValueError(f"need logits (N >= splits={splits}, K), got {tuple(logits.shape)}")
    if shuffle_seed is not None:
        logits = logits[torch.from_numpy(np.random.RandomState(shuffle_seed).permutation(n))]
    log_p = logits.log_softmax(dim=1)
    p = log_p.exp()
    scores = []
    for i in range(splits):
        chunk = slice(i * n // splits, (i + 1) * n // splits)
        lp, pc = log_p[chunk], p[chunk]
        log_q = pc.mean(dim=0, keepdim=True).log()
        # 0 · log 0 = 0: classes with p(y|x) = 0 contribute nothing even where p(y) = 0.
        kl = torch.where(pc > 0, pc * (lp - log_q), torch.zeros_like(pc)).sum(dim=1)
        scores.append(kl.mean().exp().item())
    return float(np.mean(scores)), float(np.std(scores))


@register_metric("is", extractor="inception", needs_real=False)
def _is(fake: Features, real: Features | None) -> dict[str, float]:
    mean, std = inception_score(fake["logits"])
    return {"is_mean": mean, "is_std": std}
