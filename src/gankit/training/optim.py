"""The optimizers of G and D: Adam (Kingma & Ba 2015) or AMSGrad (``train.optimizer``), with the
implementation ``train.fused_optim`` chooses.

- ``adam``: ``torch.optim.Adam``.
- ``amsgrad`` (Reddi et al. 2018, "On the Convergence of Adam and Beyond", Alg. 2): Adam whose
  denominator uses the running maximum ``v_hat_t = max(v_hat_{t-1}, v_t)`` of the second
  moment, here with Adam's bias corrections (``torch.optim.Adam(amsgrad=True)``: the step is
  ``lr m_t / (1 - beta1^t) / (sqrt(v_hat_t / (1 - beta2^t)) + eps)``).
- ``train.fused_optim`` (a speed lever, :mod:`gankit.training.speed`): ``fused=True``, one op
  per optimizer step on CUDA and CPU; else the per-parameter for-loop (``foreach=False``).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from gankit.config import TrainConfig

__all__ = ["OPTIMIZERS", "adam"]

OPTIMIZERS = ("adam", "amsgrad")
"""``train.optimizer`` values (checked by :func:`gankit.config.validate`)."""


def adam(
    params: Iterable[nn.Parameter], lr: float, betas: list[float], eps: float, t: TrainConfig
) -> torch.optim.Adam:
    """Adam (or AMSGrad, ``train.optimizer``) over ``params``, fused or for-loop as
    ``train.fused_optim`` says (module docstring)."""
    return torch.optim.Adam(
        params,
        lr=lr,
        betas=tuple(float(b) for b in betas),
        eps=eps,
        amsgrad=t.optimizer == "amsgrad",
        **({"fused": True} if t.fused_optim else {"foreach": False}),
    )
