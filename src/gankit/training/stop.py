"""Graceful stop: SIGINT/SIGTERM during training end it at the next iteration boundary, after a
final checkpoint (what pre-emptible cluster jobs need).

Inside :class:`StopSignals` the first SIGINT or SIGTERM only records the signal; the training
loop polls :meth:`StopSignals.requested` between iterations, writes a checkpoint and raises
:class:`TrainingStopped`. The first signal gives both back their previous handlers, so a second
one, of either kind, acts as usual (for SIGINT: an immediate ``KeyboardInterrupt``; under the
CLI either ends the command at once). Handlers are only installed from the main thread;
elsewhere (e.g. a trainer driven from a worker thread) signals keep their usual effect.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

import torch
import torch.distributed as dist

from gankit.errors import GankitError

__all__ = ["StopSignals", "TrainingStopped"]

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingStopped(GankitError):
    """Training ended on a stop signal after writing a checkpoint; ``exit_code`` is the
    shell's convention for the signal (128 + its number)."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum


class StopSignals:
    """Context manager recording the first SIGINT/SIGTERM (module doc)."""

    def __init__(self) -> None:
        self.signum = 0
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signum = signum
        self._restore()  # a second signal, of either kind, acts as usual

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        self._restore()

    def _restore(self) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}

    def requested(self, distributed: bool) -> int:
        """The recorded signal number (0: none). Under DDP every rank must call this at the
        same step: the largest number over the ranks is returned, so all stop together."""
        if not distributed:
            return self.signum
        flag = torch.tensor([self.signum], dtype=torch.int64)
        if dist.get_backend() == "nccl":
            flag = flag.cuda()
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return int(flag.item())

    @staticmethod
    def name(signum: int) -> str:
        return signal.Signals(signum).name
