"""Count the ATen ops a piece of code dispatches, and the host synchronisations among them.

On a GPU each dispatched op costs a few microseconds of Python and dispatcher time and, for
most of them, a kernel launch, so when the device work per op is small (the ``cifar``
workload) the iteration is bound by the *number* of ops. That number is the same on every
device, which makes it the launch-overhead proxy a CPU-only machine can measure.

:class:`OpCounter` is a ``TorchDispatchMode``: it sees every op below autograd (forward ops,
the backward ops the autograd engine runs, optimizer and EMA ops), after composite ops are
decomposed, i.e. the ops a backend actually executes. Views (``view``, ``t``, ...) count too:
they are dispatcher round trips even without a kernel. Code compiled by ``torch.compile`` runs
its fused kernels outside the dispatcher and is not counted.

Host synchronisations: an op whose result the host must wait for (``.item()`` →
``_local_scalar_dense``, data-dependent output shapes such as ``nonzero`` or
``masked_select``, ``equal``) or a copy from an accelerator to the CPU. On a CPU every op is
synchronous anyway; the count says how many such points the same code has on a GPU.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["SYNC_OPS", "OpCounter"]

SYNC_OPS = frozenset(
    {
        "_local_scalar_dense",  # .item(), bool(t), float(t), int(t)
        "is_nonzero",
        "equal",
        "nonzero",
        "masked_select",
        "unique",
        "_unique",
        "_unique2",
        "unique_consecutive",
        "unique_dim",
        "repeat_interleave",  # without output_size
    }
)
"""ATen ops (overload packet names) that make the host wait for the device."""


def _device_to_host(name: str, args: tuple, kwargs: dict) -> bool:
    """``copy_``/``_to_copy`` from a non-CPU tensor into CPU memory."""
    if name == "copy_":
        dst, src = args[0], args[1]
        return dst.device.type == "cpu" and src.device.type != "cpu"
    if name == "_to_copy":
        target = kwargs.get("device")
        return args[0].device.type != "cpu" and target is not None and target.type == "cpu"
    return False


class OpCounter(TorchDispatchMode):
    """Context manager counting dispatched ATen ops by name.

    Attributes:
        counts: ``Counter`` of overload-packet names (``"mm"``, ``"copy_"``, ...).
        views: how many of them return a view or alias of an input (``view``, ``detach``,
            ``as_strided``, ...: dispatcher work, no kernel).
        host_syncs: how many of them were host synchronisations (see the module docstring).
    """

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter[str] = Counter()
        self.views = 0
        self.host_syncs = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None) -> Any:  # noqa: ANN001
        kwargs = kwargs or {}
        name = func.overloadpacket.__name__
        self.counts[name] += 1
        self.views += func.is_view
        if name in SYNC_OPS or _device_to_host(name, args, kwargs):
            self.host_syncs += 1
        return func(*args, **kwargs)

    @property
    def total(self) -> int:
        """All ops counted."""
        return sum(self.counts.values())

    def top(self, n: int = 20) -> dict[str, int]:
        """The ``n`` most frequent ops, most frequent first."""
        return dict(self.counts.most_common(n))
