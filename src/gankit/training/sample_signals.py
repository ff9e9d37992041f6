"""Collapse signals computed from what G produces (no data pass, no gradients).

Each signal is measured on the fixed latent batch of the snapshot grids (one row per class) and
divided by the same number for a batch of real images of the same size, measured once when
training starts, so ``1.0`` means "as varied as real data" and ``0.0`` means "every sample is the
same image":

- ``pixel_std``: mean over pixels of the standard deviation across samples,
  ``mean_{c,h,w} std_n x[n, c, h, w]`` (0 for identical samples, e.g. all-black grids);
- ``pairwise``: mean pairwise RMS distance ``mean_{i<j} ‖x_i − x_j‖₂ / sqrt(C·H·W)``;
- ``class_spread`` (models with an auxiliary classifier head): the entropy of the histogram of
  predicted classes divided by the entropy of the histogram of the conditioning classes (1: the
  samples are spread over as many classes as they were asked for; 0: all look like one class).
"""

from __future__ import annotations

import math

import torch

__all__ = ["class_spread", "histogram_entropy", "pairwise_distance", "pixel_std"]


def pixel_std(x: torch.Tensor) -> float:
    """``x: (N, C, H, W)`` float → mean over pixels of the (biased) std over the N samples."""
    return float(x.float().std(dim=0, unbiased=False).mean())


def pairwise_distance(x: torch.Tensor) -> float:
    """``x: (N, C, H, W)`` float → mean over pairs ``i < j`` of ``‖x_i − x_j‖₂ / sqrt(C·H·W)``."""
    flat = x.float().flatten(1)
    n = len(flat)
    if n < 2:
        return 0.0
    dist = torch.cdist(flat[None], flat[None])[0]
    return float(dist.triu(diagonal=1).sum() / (n * (n - 1) / 2) / math.sqrt(flat.shape[1]))


def histogram_entropy(labels: torch.Tensor) -> float:
    """Entropy (nats) of the empirical distribution of the integer ``labels (N,)``."""
    p = torch.bincount(labels.flatten().long()).float()
    p = p[p > 0] / p.sum()
    return float(-(p * p.log()).sum()) + 0.0  # + 0.0: never -0.0


def class_spread(class_logits: torch.Tensor, conditioning: torch.Tensor) -> float:
    """``class_logits: (N, K)``, ``conditioning: (N,)`` → H(predicted) / H(conditioning).

    1.0 when the predicted classes are as spread out as the requested ones; 0.0 when every
    sample is predicted as one class. Conditioning on a single class gives 1.0 by definition.
    """
    ideal = histogram_entropy(conditioning)
    if ideal == 0.0:
        return 1.0
    return histogram_entropy(class_logits.argmax(dim=1)) / ideal
