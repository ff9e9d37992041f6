"""Device names: ``auto`` | ``cpu`` | ``cuda`` (a config's ``train.device``, a ``device=`` argument)
to a :class:`torch.device`."""

from __future__ import annotations

import torch

from gankit.config import DEVICES
from gankit.errors import ParameterError

__all__ = ["DEVICES", "resolve_device", "synchronize"]


def resolve_device(name: str | torch.device, local_rank: int = 0) -> torch.device:
    """``auto`` → ``cuda:LOCAL_RANK`` when CUDA is available, else ``cpu``; ``cuda`` checks that
    a device exists. A :class:`torch.device` or another torch device string (``cuda:1``) is
    returned as that device, if this torch can run on it.

    Raises:
        ParameterError: ``device`` unknown or not a string, ``meta`` (no values to compute
            on), CUDA requested without CUDA, or ``cuda:N`` (or ``local_rank``) past this
            machine's devices.
    """
    expected = f"expected {', '.join(DEVICES)} or a torch device"
    if not isinstance(name, (str, torch.device)):
        raise ParameterError("device", f"{expected}, got {type(name).__name__}")
    if name not in DEVICES:
        try:
            device = torch.device(name)
        except RuntimeError:
            raise ParameterError("device", f"{expected}, got {name!r}") from None
        if device.type == "meta":
            raise ParameterError("device", f"{expected} that holds values, got 'meta'")
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ParameterError("device", f"{name} requested but no CUDA device is available")
        if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
            count = torch.cuda.device_count()
            raise ParameterError(
                "device",
                f"{name} requested but this machine's CUDA devices are cuda:0..{count - 1}",
            )
        return device
    if name == "cuda" and not torch.cuda.is_available():
        raise ParameterError("device", "cuda requested but no CUDA device is available")
    if name == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    if local_rank >= torch.cuda.device_count():  # torchrun started more processes than GPUs
        raise ParameterError(
            "device",
            f"process of local rank {local_rank} needs cuda:{local_rank}, but this machine's "
            f"CUDA devices are cuda:0..{torch.cuda.device_count() - 1}; start at most "
            f"{torch.cuda.device_count()} processes per node",
        )
    return torch.device("cuda", local_rank)


def synchronize(device: torch.device) -> None:
    """Wait for the kernels queued on ``device`` so that a clock reading covers them (no-op on
    the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
