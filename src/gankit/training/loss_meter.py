"""Loss bookkeeping: the means over one iteration's D steps (:class:`DStepStats`), and between
two logs device-side sums (no host sync per iteration), the NaN/Inf flag, and their reduction
over ranks under DDP (:class:`LossMeter`)."""

from __future__ import annotations

import time

import torch
import torch.distributed

from gankit.errors import GankitError
from gankit.training.distributed import DistInfo

__all__ = ["LOSS_KEYS", "DStepStats", "LossMeter", "TrainingDivergedError"]

LOSS_KEYS = ("loss_D", "loss_G", "D_real", "D_fake")
"""The scalars :meth:`gankit.training.loop.Trainer.train_iteration` returns, in log order."""


class TrainingDivergedError(GankitError):
    """A loss became NaN or Inf; the message names the step range and the last checkpoint."""


class DStepStats:
    """Means over an iteration's D-step micro-batches of ``loss_D`` and of D's logits on the
    real and the fake half, reduced once at the end (two ops per micro-batch)."""

    def __init__(self) -> None:
        self.losses: list[torch.Tensor] = []
        self.logits: list[torch.Tensor] = []

    def add(self, loss_D: torch.Tensor, logits: torch.Tensor) -> None:
        """``loss_D``: scalar; ``logits: (2B,)``, real images first."""
        self.losses.append(loss_D.detach())
        self.logits.append(logits.detach())

    def means(self) -> dict[str, torch.Tensor]:
        """``{"loss_D", "D_real", "D_fake"}``, scalar tensors (no host sync)."""
        real, fake = torch.stack(self.logits).unflatten(1, (2, -1)).mean(dim=(0, 2)).unbind()
        return {"loss_D": torch.stack(self.losses).mean(), "D_real": real, "D_fake": fake}


class LossMeter:
    """Running sums of :data:`LOSS_KEYS` since the last :meth:`means`, kept on ``device``.

    Args:
        device: where the iteration's losses live.
        dist: this process's place in the job (reductions are collective under DDP).
    """

    def __init__(self, device: torch.device, dist: DistInfo):
        self.device, self.dist = device, dist
        self.finite = torch.ones((), dtype=torch.bool, device=device)
        self.reset()

    def reset(self) -> None:
        """Forget the sums (not the NaN flag) and restart the clock."""
        self.sum: torch.Tensor | None = None
        self.count = 0
        self.since = time.perf_counter()

    def add(self, losses: dict[str, torch.Tensor]) -> None:
        """Add one iteration's scalars; any NaN/Inf clears :attr:`finite` (on the device)."""
        stacked = torch.stack([losses[k] for k in LOSS_KEYS])
        self.finite &= torch.isfinite(stacked).all()
        self.sum = stacked if self.sum is None else self.sum + stacked
        self.count += 1

    def all_finite(self) -> bool:
        """True when every loss since the start (or :meth:`clear_nan`) was finite on EVERY rank.

        Under DDP the flag is all-reduced (minimum) first, so that all ranks agree and raise
        together; a rank that stopped alone would leave the others waiting in a collective."""
        flag = self.finite.to(torch.int32)
        if self.dist.enabled:
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MIN)
        return bool(flag)

    def clear_nan(self) -> None:
        self.finite.fill_(True)

    def means(self) -> tuple[dict[str, float], int, float]:
        """``(means over the iterations and ranks, iterations, seconds since the last reset)``,
        then :meth:`reset`. One host sync; collective under DDP."""
        means = self.sum / self.count
        if self.dist.enabled:
            torch.distributed.all_reduce(means)
            means /= self.dist.world_size
        count, seconds = self.count, time.perf_counter() - self.since
        values = dict(zip(LOSS_KEYS, means.tolist()))
        self.reset()
        return values, count, seconds
