"""Multi-process training through ``torchrun`` + DistributedDataParallel, and cross-replica BN.

Launch: ``torchrun --nproc-per-node M [--nnodes N ...] -m gankit.cli train ...``. torchrun sets
``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; :func:`setup` joins the process group (``nccl`` on
CUDA, ``gloo`` on CPU) and picks ``cuda:LOCAL_RANK``. Each rank reads its own shard of every batch
(the data sampler takes ``rank``/``world_size``), gradients are averaged by DDP, G's batch norms
are synchronised (BigGAN's cross-replica BN), and only rank 0 writes files.

:class:`CrossReplicaBatchNorm` is used instead of ``nn.SyncBatchNorm`` because the latter refuses
CPU tensors, and the gloo/CPU path is the one the tests can check.
"""

from __future__ import annotations

import gc
import inspect
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from gankit.device import resolve_device
from gankit.errors import GankitError, ParameterError


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job (``world_size == 1``: not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def from_env() -> DistInfo:
    """This process's place, from torchrun's ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``."""
    env = os.environ
    return DistInfo(
        int(env.get("RANK", "0")), int(env.get("WORLD_SIZE", "1")), int(env.get("LOCAL_RANK", "0"))
    )


def setup(device: str = "auto") -> tuple[DistInfo, torch.device]:
    """Join the torchrun process group if ``WORLD_SIZE > 1``; return ``(info, device)``."""
    info = from_env()
    try:
        dev = resolve_device(device, info.local_rank)
    except ParameterError as err:
        raise GankitError(f"train.device: {err.message}") from None
    if info.enabled and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return info, dev


def cleanup() -> None:
    """Destroy the default process group, after collecting unreachable objects. Call it once
    the DDP wrappers (``Trainer``) are unreferenced: a DDP reducer that outlives the group
    holds its last reference, and then destroys it holding the GIL. A gloo worker thread that
    is freeing a finished collective's tensors needs the GIL too, and the process hangs (seen
    at the end of a two-process run)."""
    if dist.is_initialized():
        gc.collect()  # reducers in reference cycles (a trainer and its bound methods)
        dist.destroy_process_group()


# Buffers (BN statistics, spectral-norm vectors) are equal on every rank by construction and kept
# so; DDP must not broadcast them on every forward. Newer torch names that keyword
# ``forward_sync_buffers`` and deprecates ``broadcast_buffers``.
_NO_BUFFER_SYNC = (
    {"forward_sync_buffers": False}
    if "forward_sync_buffers" in inspect.signature(nn.parallel.DistributedDataParallel).parameters
    else {"broadcast_buffers": False}
)


def wrap(module: nn.Module, info: DistInfo, device: torch.device) -> nn.Module:
    """DDP-wrap ``module`` when distributed (buffers are kept in sync by construction)."""
    if not info.enabled:
        return module
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=ids, **_NO_BUFFER_SYNC)


class _AllReduceSum(torch.autograd.Function):
    """Differentiable sum over ranks: forward all-reduces ``x``, backward all-reduces the
    gradient (the Jacobian of a sum over ranks is the same sum), with the public
    ``torch.distributed.all_reduce``."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        out = x.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """``sum_r x_r`` over all ranks, differentiable (see :class:`_AllReduceSum`)."""
    return _AllReduceSum.apply(x)


class CrossReplicaBatchNorm(_BatchNorm):
    """Batch norm whose training statistics are those of the batch over all ranks.

    With ``B_r`` samples on rank ``r``, ``mu = sum_r sum_i x / n`` and
    ``var = sum_r sum_i (x - mu)^2 / n`` (``n`` = all elements per channel, two all-reduces, fp32);
    ``running_var`` gets the unbiased ``var * n / (n - 1)`` as in ``nn.BatchNorm``. The
    all-reduces are differentiable, so gradients equal those of one process on the combined
    batch. Outside training, or without a process group, it is a plain batch norm.
    Input: ``(B, C, ...)``.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input, got {input.dim()}D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        dims = [0] + list(range(2, x.dim()))
        xf = x.float()
        count = torch.tensor([x.numel() / x.shape[1]], device=x.device, dtype=torch.float32)
        n = all_reduce_sum(count)
        mean = all_reduce_sum(xf.sum(dims)) / n
        shape = [1, -1] + [1] * (x.dim() - 2)
        var = all_reduce_sum((xf - mean.view(shape)).square().sum(dims)) / n
        if self.track_running_stats:
            self.num_batches_tracked.add_(1)
            momentum = (
                1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
            )
            with torch.no_grad():
                self.running_mean.lerp_(mean.detach(), momentum)
                self.running_var.lerp_(var.detach() * n / (n - 1), momentum)
        out = (xf - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out.to(x.dtype)


def convert_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every ``_BatchNorm`` in ``module`` (in place) by :class:`CrossReplicaBatchNorm`.

    Covers plain BN and conditional BN, whose normalisation is an ``nn.BatchNorm2d(affine=False)``
    child. Parameters and buffers are kept (same state-dict keys).
    """
    for name, child in module.named_children():
        if isinstance(child, _BatchNorm) and not isinstance(child, CrossReplicaBatchNorm):
            new = CrossReplicaBatchNorm(
                child.num_features,
                child.eps,
                child.momentum,
                child.affine,
                child.track_running_stats,
            ).to(next(iter(child.buffers()), torch.empty(0)).device)
            new.load_state_dict(child.state_dict())
            new.train(child.training)
            setattr(module, name, new)
        else:
            convert_batchnorm(child)
    return module
