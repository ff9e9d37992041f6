"""Device names: ``auto`` | ``cpu`` | ``cuda`` (a config's ``train.device``, a ``device=`` argument)
to a :class:`torch.device`."""

from __future__ import annotations

import torch

from gankit.config import DEVICES
from gankit.errors import ParameterError

__all__ = ["DEVICES", "resolve_device"]


def resolve_device(name: str | torch.device, local_rank: int = 0) -> torch.device:
    """``auto`` → ``cuda:LOCAL_RANK`` when CUDA is available, else ``cpu``; ``cuda`` checks that
    a device exists. A :class:`torch.device` or another torch device string (``cuda:1``) is
    returned as that device.

    Raises:
        ParameterError: ``device`` unknown, or ``cuda`` requested without a CUDA device.
    """
    if isinstance(name, torch.device):
        return name
    if name not in DEVICES:
        try:
            return torch.device(name)
        except RuntimeError:
            raise ParameterError(
                "device", f"expected {', '.join(DEVICES)} or a torch device, got {name!r}"
            ) from None
    if name == "cuda" and not torch.cuda.is_available():
        raise ParameterError("device", "cuda requested but no CUDA device is available")
    if name == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", local_rank)
