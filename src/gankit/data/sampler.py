"""Seeded, resumable, rank-sharded batches of dataset indices (an endless iterator).

Each epoch draws one permutation of ``0..N-1`` from the sampler's generator. With
``world_size = W`` ranks every rank draws the *same* permutation (give each rank a generator
seeded alike) and keeps every W-th index starting at its rank — the scheme of
``torch.utils.data.DistributedSampler`` — after cutting the permutation to a multiple of
``W × batch_size``, so ranks are disjoint, all ranks yield the same number of full batches per
epoch, and the W rank batches of step ``i`` together are entries ``i·W·B .. (i+1)·W·B - 1`` of the
permutation. The few images cut off differ from epoch to epoch.

``state_dict()`` holds the epoch, the batches already taken in it and the generator state at the
start of the epoch; ``load_state_dict`` redraws that permutation, so a resumed run continues the
exact batch sequence. The generator must be dedicated to the sampler.
"""

from __future__ import annotations

from collections.abc import Sized
from typing import Any

import torch

from gankit.errors import GankitError


class BatchSampler:
    """Endless iterator of index batches ``(batch_size,)`` int64 for one rank (module doc).

    Args:
        dataset: anything with ``len()`` (an :class:`~gankit.data.ImageDataset`) or the count N.
        batch_size: per-rank batch size B.
        generator: CPU ``torch.Generator`` used only by this sampler, seeded alike on all ranks.
        rank, world_size: this process's rank and the number of ranks (DDP).
    """

    def __init__(
        self,
        dataset: Sized | int,
        batch_size: int,
        generator: torch.Generator,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.n = dataset if isinstance(dataset, int) else len(dataset)
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, world_size = {world_size})")
        if batch_size < 1 or self.n < batch_size * world_size:
            raise GankitError(
                f"train.batch_size = {batch_size}: the data has {self.n} images, fewer than one "
                f"batch per rank ({batch_size} × {world_size} ranks)"
            )
        self.batch_size, self.rank, self.world_size = batch_size, rank, world_size
        self.generator = generator
        self.batches_per_epoch = self.n // (batch_size * world_size)
        self.epoch = 0
        self.position = 0
        self._start_epoch()

    def _start_epoch(self) -> None:
        self._epoch_state = self.generator.get_state()
        perm = torch.randperm(self.n, generator=self.generator)
        used = self.batches_per_epoch * self.batch_size * self.world_size
        self._shard = perm[self.rank : used : self.world_size]

    def __len__(self) -> int:
        """Batches per epoch (per rank)."""
        return self.batches_per_epoch

    def __iter__(self) -> BatchSampler:
        return self

    def __next__(self) -> torch.Tensor:
        if self.position == self.batches_per_epoch:
            self.epoch += 1
            self.position = 0
            self._start_epoch()
        start = self.position * self.batch_size
        self.position += 1
        return self._shard[start : start + self.batch_size]

    def state_dict(self) -> dict[str, Any]:
        """Tensors and ints only, so it loads with ``torch.load(weights_only=True)``."""
        return {
            "epoch": self.epoch,
            "position": self.position,
            "generator_state": self._epoch_state.clone(),
            "n": self.n,
            "batch_size": self.batch_size,
            "world_size": self.world_size,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue exactly where the sampler that produced ``state`` stopped."""
        settings = {
            "n": "images in the data set (data.path, data.limit)",
            "batch_size": "train.batch_size",
            "world_size": "processes (torchrun --nproc-per-node)",
        }
        for key, setting in settings.items():
            if state[key] != getattr(self, key):
                raise GankitError(
                    f"cannot resume the batch order: the checkpoint was written with {setting} "
                    f"= {state[key]}, this run has {getattr(self, key)}; resume with the same"
                )
        self.generator.set_state(state["generator_state"])
        self._start_epoch()
        self.epoch = int(state["epoch"])
        self.position = int(state["position"])
