"""Batched feature extraction: uint8 image batches → :data:`~gankit.metrics.registry.Features`.

An *extractor* is any callable ``extractor(images_uint8 (B, C, H, W)) -> dict[str, Tensor]``
with an ``id`` string naming its weights and protocol (used in cache keys): the FID Inception
(:class:`gankit.metrics.inception.InceptionExtractor`), gankit's classifier
(:class:`gankit.metrics.classifier.ClassifierExtractor`) and the SWD pixel projector
(:class:`gankit.metrics.swd.PixelProjector`). All extractors see each batch once.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from gankit.metrics.registry import Extractor, Features


def array_batches(
    x: np.ndarray | Tensor,
    y: np.ndarray | Tensor,
    batch_size: int = 100,
    indices: np.ndarray | None = None,
) -> Iterator[tuple[Tensor, Tensor]]:
    """Yield ``(uint8 (B, C, H, W), int64 (B,))`` batches of an in-memory (or memmap) array,
    optionally only the rows ``indices`` (read batch by batch, never all at once)."""
    rows = np.arange(len(x)) if indices is None else np.asarray(indices)
    for start in range(0, len(rows), batch_size):
        idx = rows[start : start + batch_size]
        xb = torch.as_tensor(np.asarray(x[idx]))
        yb = torch.as_tensor(np.asarray(y[idx]), dtype=torch.int64)
        yield xb, yb


@torch.no_grad()
def extract(
    batches: Iterable[tuple[Tensor, Tensor]],
    extractors: Sequence[Extractor],
    total: int | None = None,
    quiet: bool = True,
    desc: str = "features",
) -> Features:
    """Run every extractor on every batch and concatenate the outputs.

    Args:
        batches: ``(images uint8 (B, C, H, W), labels (B,))`` pairs.
        extractors: the feature extractors to run.
        total: number of images, for the progress bar.
        quiet: disable the tqdm progress bar.
    Returns:
        ``{"labels": int64 (N,), <output name>: float32 (N, ...)}`` as numpy arrays.
    """
    parts: dict[str, list[np.ndarray]] = {"labels": []}
    with tqdm(total=total, desc=desc, unit="img", disable=quiet) as bar:
        for images, labels in batches:
            parts["labels"].append(labels.cpu().numpy().astype(np.int64))
            for extractor in extractors:
                for name, value in extractor(images).items():
                    parts.setdefault(name, []).append(value.float().cpu().numpy())
            bar.update(len(images))
    return {name: np.concatenate(chunks) for name, chunks in parts.items()}
