"""``loader_throughput``: images per second the training data path delivers, without a model.

It runs the real read path of training — :class:`~gankit.data.BatchSampler` order,
:class:`~gankit.data.prefetch.Prefetcher` (gather from the memory map in a background thread,
pinned memory and an asynchronous copy on CUDA) — and times ``batches`` uint8 batches arriving
on the device after ``warmup`` untimed ones, synchronising the device before each clock
reading. The uint8 → float conversion (:func:`~gankit.data.to_float`) is device compute and is
timed with the training iteration, not here. The first pass over a cache that is not in the
page cache measures the disk; later passes measure memory.
"""

from __future__ import annotations

import time

import torch

from gankit.data.dataset import ImageDataset
from gankit.data.prefetch import Prefetcher
from gankit.data.sampler import BatchSampler
from gankit.device import synchronize
from gankit.errors import GankitError


def loader_throughput(
    dataset: ImageDataset,
    batch_size: int,
    device: torch.device | str = "cpu",
    batches: int = 50,
    warmup: int = 5,
    seed: int = 0,
) -> float:
    """Images per second of ``batches`` loaded batches ``(batch_size, C, R, R)`` (module doc)."""
    if batch_size < 1 or batches < 1 or warmup < 0:
        raise GankitError(
            f"loader throughput: expected batch_size >= 1, batches >= 1, warmup >= 0, got "
            f"{batch_size}, {batches}, {warmup}"
        )
    device = torch.device(device)
    sampler = BatchSampler(dataset, batch_size, torch.Generator().manual_seed(seed))
    loader = Prefetcher(dataset, sampler, device)
    try:
        for _ in range(warmup):
            next(loader)
        synchronize(device)
        start = time.perf_counter()
        for _ in range(batches):
            next(loader)
        synchronize(device)
        seconds = time.perf_counter() - start
    finally:
        loader.close()
    return batches * batch_size / seconds
