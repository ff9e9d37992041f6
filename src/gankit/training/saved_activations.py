"""The activations autograd keeps for backward: the memory a step spends between its forward
and its backward, measurable on any device (the memory counterpart of the op count).

:class:`SavedActivations` sees every tensor autograd saves for backward, from eager ops and
from compiled graphs alike (``torch.autograd.graph.saved_tensors_hooks``), and follows it
until autograd lets it go (after the backward that used it). It counts storages, not tensors:
views of one storage and a tensor saved by several ops count once, and the parameters and
buffers of the networks in ``exclude`` (held anyway) not at all. ``peak_bytes`` is the most it held
at any moment, which is what activation checkpointing and the compiled step's
``train.activation_memory_budget`` lower. The allocator's peak adds the weights, optimizer
state and what a backward holds while it runs, which this does not see: a compiled backward
that recomputes activations holds them inside its graph (at budget 0 all of its network's).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

__all__ = ["SavedActivations"]


class _Saved:
    """What autograd stores in place of a saved tensor while the hooks are active."""

    __slots__ = ("tensor", "__weakref__")

    def __init__(self, tensor: torch.Tensor):
        self.tensor = tensor


class SavedActivations:
    """Context manager: while active, tracks the bytes of the storages autograd holds for
    backward (see the module docstring).

    Args:
        exclude: networks whose parameters and buffers are not counted.

    Example: ``with SavedActivations([G, D]) as saved: step()``, then ``saved.peak_bytes``.
    """

    def __init__(self, exclude: Iterable[nn.Module] = ()):
        held = (t for net in exclude for t in (*net.parameters(), *net.buffers()))
        self.skip = {t.untyped_storage().data_ptr() for t in held}
        self.holders: dict[int, int] = {}  # storage address -> saved tensors holding it
        self.live_bytes = 0
        self.peak_bytes = 0
        self._hooks: Any = None

    def _pack(self, tensor: torch.Tensor) -> _Saved:
        saved = _Saved(tensor)
        storage = tensor.untyped_storage()
        ptr = storage.data_ptr()
        if ptr in self.skip or storage.nbytes() == 0:
            return saved
        if ptr not in self.holders:
            self.holders[ptr] = 0
            self.live_bytes += storage.nbytes()
            self.peak_bytes = max(self.peak_bytes, self.live_bytes)
        self.holders[ptr] += 1
        # ``saved`` keeps the storage alive until autograd drops it: the address is not reused
        weakref.finalize(saved, self._release, ptr, storage.nbytes())
        return saved

    def _release(self, ptr: int, nbytes: int) -> None:
        self.holders[ptr] -= 1
        if self.holders[ptr] == 0:
            del self.holders[ptr]
            self.live_bytes -= nbytes

    @staticmethod
    def _unpack(saved: _Saved) -> torch.Tensor:
        return saved.tensor

    def __enter__(self) -> SavedActivations:
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._hooks.__exit__(*exc)
