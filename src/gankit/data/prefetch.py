"""``Prefetcher``: the next real batches gathered in a background thread while the device works.

A daemon thread draws index batches from a :class:`~gankit.data.BatchSampler`, gathers them
from the data set (``ImageDataset.batch``: on a memory-mapped cache this is where the pages are
read) and, for a CUDA device, copies them into pinned (page-locked) host memory; up to ``depth``
batches wait in a queue. The consumer's ``next()`` takes one and starts its host-to-device copy
asynchronously (``non_blocking``), so neither reading nor copying stalls the device. The
batches and their order are exactly those of the synchronous
``dataset.batch(next(sampler))``.

Resuming: the thread runs ahead of the consumer, so the sampler's own ``state_dict()`` counts
batches not yet used. :meth:`Prefetcher.state_dict` returns the sampler state right after the
last batch *handed out*, and :meth:`Prefetcher.load_state_dict` stops the thread, drops the
queued batches and restores the sampler, so a checkpoint taken through the prefetcher continues
the exact batch sequence.
"""

from __future__ import annotations

import queue
import threading
import weakref
from typing import Any

import torch

from gankit.data.dataset import ImageDataset
from gankit.data.sampler import BatchSampler

_POLL_S = 0.1  # how often a blocked producer checks whether it should stop


def _put(out: queue.Queue, stop: threading.Event, item: Any) -> None:
    """``out.put(item)``, giving up once ``stop`` is set."""
    while not stop.is_set():
        try:
            out.put(item, timeout=_POLL_S)
            return
        except queue.Full:
            continue


def _produce(
    out: queue.Queue,
    stop: threading.Event,
    dataset: ImageDataset,
    sampler: BatchSampler,
    device: torch.device,
) -> None:
    """Thread body: put ``(x, y, sampler state after drawing them)`` until ``stop`` is set;
    an exception is put in the queue for the consumer to raise. On CUDA the batches are pinned,
    with the thread's current device set first (else a new thread would open a context on
    GPU 0, one per rank under DDP)."""
    pin = device.type == "cuda"
    try:
        if pin:
            torch.cuda.set_device(device)
        while not stop.is_set():
            indices = next(sampler)
            state = sampler.state_dict()
            x, y = dataset.batch(indices)
            if pin:
                x, y = x.pin_memory(), y.pin_memory()
            _put(out, stop, (x, y, state))
    except BaseException as err:  # handed to the consumer, raised there
        _put(out, stop, err)


def _finish(stop: threading.Event, thread: threading.Thread) -> None:
    """Stop ``thread`` and wait for it (unless called from it, by a garbage collection there)."""
    stop.set()
    if threading.current_thread() is not thread:
        thread.join()


class Prefetcher:
    """Endless iterator of ``(x uint8 (B, C, H, W), y int64 (B,))`` on ``device`` (module doc).

    Args:
        dataset: the data set to gather from (in memory or memory-mapped).
        sampler: the index batches; used only by the background thread once iteration starts.
        device: where the batches go; on CUDA they are staged in pinned memory.
        depth: batches prepared ahead (>= 1).

    The thread starts at the first ``next()`` and stops on :meth:`close`, on
    :meth:`load_state_dict`, when the prefetcher is garbage-collected, or at interpreter exit
    (joined before shutdown: a daemon thread still inside torch when the process tears down
    can abort it).
    """

    def __init__(
        self,
        dataset: ImageDataset,
        sampler: BatchSampler,
        device: torch.device | str,
        depth: int = 2,
    ):
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self.dataset, self.sampler = dataset, sampler
        self.device = torch.device(device)
        if self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", torch.cuda.current_device())
        self.depth = depth
        self._thread: threading.Thread | None = None
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._finalizer: weakref.finalize | None = None
        self._state: dict[str, Any] = {}  # sampler state after the last batch handed out

    def _start(self) -> None:
        self._state = self.sampler.state_dict()
        self._queue = queue.Queue(maxsize=self.depth)
        stop = threading.Event()
        args = (self._queue, stop, self.dataset, self.sampler, self.device)
        self._thread = threading.Thread(target=_produce, args=args, daemon=True, name="prefetch")
        # runs on close(), on garbage collection (the thread holds no reference to self) or at exit
        self._finalizer = weakref.finalize(self, _finish, stop, self._thread)
        self._thread.start()

    def __iter__(self) -> Prefetcher:
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._thread is None:
            self._start()
        item = self._queue.get()
        if isinstance(item, BaseException):
            self.close()
            raise item
        x, y, self._state = item
        return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def close(self) -> None:
        """Stop the background thread, drop the batches it prepared and rewind the sampler to
        just after the last batch handed out."""
        if self._thread is None:
            return
        self._finalizer()
        self._thread = None
        self.sampler.load_state_dict(self._state)

    def state_dict(self) -> dict[str, Any]:
        """The sampler state right after the last batch returned by ``next()``."""
        return self._state if self._thread is not None else self.sampler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state`` (of :meth:`state_dict` or ``BatchSampler.state_dict``)."""
        self.close()
        self.sampler.load_state_dict(state)
