"""Speed levers of the training step, each switched by a ``train.*`` flag (README "Performance").

- ``train.amp``: bf16 autocast on CUDA with fp32 master weights (the optimizers and the EMA see
  fp32 parameters; spectral norm's power iteration runs in fp32 outside autocast). fp32 on CPU,
  where bf16 matmuls are far slower than fp32.
- ``train.sdpa``: attention layers take the fused ``scaled_dot_product_attention`` path (else
  the explicit-softmax reference, which stores the ``N x M`` score matrix).
- ``train.channels_last``: weights and images in NHWC layout (oneDNN / cuDNN's fast layout).
- ``train.fused_optim``: Adam's ``fused=True`` kernel on CUDA, ``foreach=True`` (one multi-tensor
  op per state update) on CPU; else the per-parameter for-loop.
- ``train.fused_resample``: the ResNet blocks' "upsample, 3x3 conv" (G) and "3x3 conv, avg-pool"
  (D) run as one stride-2 (transposed) conv with a composed 4x4 kernel
  (:mod:`gankit.layers.resample_conv`): exact, ~2.2x fewer multiply-adds for those convs.
- ``train.checkpoint_activations`` (off by default: it costs one more forward of each block):
  the ResNet blocks of G and D keep only their inputs and recompute the rest in backward
  (:mod:`gankit.layers.checkpointing`), without a second SN power iteration or BN update.
- ``train.sn_once``: G's weights do not change during the D steps, so G's spectral-norm power
  iteration runs only in the first D step's fake forward; the other ``n_D - 1`` no-grad
  forwards reuse its ``u``, ``v`` (:func:`frozen_power_iteration`). Exact for ``n_D = 1``; for
  ``n_D > 1`` G's ``u`` takes 2 instead of ``n_D + 1`` power-iteration steps per G step (still
  at least SNGAN's one per update).
- ``train.optimizer`` (not a speed lever; built here with the implementation above): ``adam``
  or ``amsgrad`` (Reddi et al. 2018, "On the Convergence of Adam and Beyond", Alg. 2): Adam
  whose denominator uses the running maximum ``v_hat_t = max(v_hat_{t-1}, v_t)`` of the second
  moment, here with Adam's bias corrections (``torch.optim.Adam(amsgrad=True)``: the step is
  ``lr m_t / (1 - beta1^t) / (sqrt(v_hat_t / (1 - beta2^t)) + eps)``).
- ``train.compile``: ``torch.compile`` of G and D (forward and, through AOTAutograd, backward).
  If compilation fails, :class:`CompileOrEager` warns once and runs eagerly from then on.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from gankit.config import ConfigError, TrainConfig
from gankit.layers.spectral_norm import frozen_power_iteration

__all__ = [
    "OPTIMIZERS",
    "CompileOrEager",
    "adam",
    "configure_modules",
    "flags",
    "frozen_power_iteration",
]


def configure_modules(modules: Iterable[nn.Module], t: TrainConfig) -> None:
    """Apply ``train.channels_last``, ``train.sdpa``, ``train.fused_resample`` and
    ``train.checkpoint_activations`` to G and D in place."""
    for module in modules:
        if t.channels_last:
            module.to(memory_format=torch.channels_last)
        for m in module.modules():
            if hasattr(m, "fused") and isinstance(m.fused, bool):  # attention layers
                m.fused = t.sdpa
            if hasattr(m, "fused_resample"):  # ResNet blocks
                m.fused_resample = t.fused_resample
                m.checkpoint_activations = t.checkpoint_activations


OPTIMIZERS = ("adam", "amsgrad")


def _adam_impl(t: TrainConfig, device: torch.device) -> dict[str, bool]:
    if not t.fused_optim:
        return {"foreach": False}
    return {"fused": True} if device.type == "cuda" else {"foreach": True}


def adam(
    params: Iterable[nn.Parameter],
    lr: float,
    betas: list[float],
    eps: float,
    t: TrainConfig,
    device: torch.device,
) -> torch.optim.Adam:
    """Adam (or AMSGrad, ``train.optimizer``) with the implementation chosen by
    ``train.fused_optim`` (see module docstring)."""
    if t.optimizer not in OPTIMIZERS:
        raise ConfigError(
            f"config key 'train.optimizer': unknown value {t.optimizer!r}; "
            f"valid: {', '.join(OPTIMIZERS)}"
        )
    return torch.optim.Adam(
        params,
        lr=lr,
        betas=tuple(float(b) for b in betas),
        eps=eps,
        amsgrad=t.optimizer == "amsgrad",
        **_adam_impl(t, device),
    )


class CompileOrEager:
    """Callable running ``torch.compile(module)``; on the first failure it warns once (one
    line) and calls ``module`` eagerly from then on. Parameters are shared with ``module``.

    Args:
        module: the network (possibly DDP-wrapped) to run.
        name: used in the warning, e.g. ``"D"``.
        enabled: ``False`` skips compilation entirely.
    """

    def __init__(self, module: nn.Module, name: str, enabled: bool):
        self.module, self.name = module, name
        self.compiled: Any = torch.compile(module) if enabled else None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.compiled is not None:
            try:
                return self.compiled(*args, **kwargs)
            except Exception as err:  # noqa: BLE001 - any compiler failure means: run eagerly
                msg = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
                warnings.warn(
                    f"torch.compile of {self.name} failed ({type(err).__name__}: {msg}); "
                    "running eagerly (set train.compile=false to skip compiling)",
                    RuntimeWarning,
                    stacklevel=2,
                )
                self.compiled = None
        return self.module(*args, **kwargs)

    @property
    def is_compiled(self) -> bool:
        return self.compiled is not None


def flags(t: TrainConfig, device: torch.device, amp: torch.dtype | None) -> dict[str, Any]:
    """The levers in force, as reported by ``gankit bench`` (``flags`` key)."""
    impl = _adam_impl(t, device)
    return {
        "amp": "bf16" if amp == torch.bfloat16 else "fp32",
        "sdpa": t.sdpa,
        "channels_last": t.channels_last,
        "optimizer": "fused" if impl.get("fused") else "foreach" if impl["foreach"] else "for-loop",
        "sn_once": t.sn_once,
        "fused_resample": t.fused_resample,
        "checkpoint_activations": t.checkpoint_activations,
        "compile": t.compile,
        "host_syncs_per_iter": 0,
        "num_threads": torch.get_num_threads(),
    }
