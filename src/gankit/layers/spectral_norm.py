"""Spectral normalisation (Miyato et al. 2018, SNGAN; used in G and D by SAGAN and BigGAN).

``W_SN = W / sigma(W)`` where ``sigma`` is the largest singular value of ``W`` reshaped to
``(out, fan_in)``, estimated by power iteration. The iteration's vectors ``u`` (out,) and
``v`` (fan_in,) are buffers, so they are saved in the state dict and a resumed run continues the
same estimate. The power iteration always runs in fp32 (outside autocast) and without grad;
the gradient flows through ``sigma = u^T W v`` with ``u, v`` held fixed, as in the paper.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize


def power_iterate(w2d: torch.Tensor, u: torch.Tensor, v: torch.Tensor, n: int, eps: float) -> None:
    """``n`` steps ``v <- W^T u / ||.||``, ``u <- W v / ||.||`` with ``W = w2d`` (out, fan_in),
    written into ``u`` (out,) and ``v`` (fan_in,) in place; fp32, also inside an autocast
    region. Call it without grad."""
    with torch.autocast(w2d.device.type, enabled=False):
        w = w2d.detach().float()
        u_new, v_new = u.float(), v.float()
        for _ in range(n):
            v_new = F.normalize(w.t() @ u_new, dim=0, eps=eps)
            u_new = F.normalize(w @ v_new, dim=0, eps=eps)
        u.copy_(u_new)
        v.copy_(v_new)


def power_iterate_all(
    weights: list[torch.Tensor],
    us: list[torch.Tensor],
    vs: list[torch.Tensor],
    steps: list[int],
    eps: list[float],
) -> None:
    """:func:`power_iterate` for each layer (the ``i``-th entries of the lists together): plain
    tensors and numbers, so that ``torch.compile`` traces it as one graph."""
    for w, u, v, n, e in zip(weights, us, vs, steps, eps):
        power_iterate(w.flatten(1), u, v, n, e)


class SpectralNorm(nn.Module):
    """Parametrization ``W -> W / sigma(W)``; register with :func:`spectral_norm`.

    Args:
        weight: the weight to normalise, any shape ``(out, ...)``.
        n_power_iterations: power-iteration steps per training forward.
        eps: added to norms when normalising ``u`` and ``v``.
    """

    def __init__(self, weight: torch.Tensor, n_power_iterations: int = 1, eps: float = 1e-6):
        super().__init__()
        if n_power_iterations < 1:
            raise ValueError(f"n_power_iterations must be >= 1, got {n_power_iterations}")
        self.n_power_iterations = n_power_iterations
        self.eps = eps
        w = weight.detach().flatten(1).float()
        u = F.normalize(torch.randn(w.shape[0], device=w.device), dim=0, eps=eps)
        v = F.normalize(w.t() @ u, dim=0, eps=eps)
        self.register_buffer("u", u)
        self.register_buffer("v", v)
        # set by gankit.layers.spectral_norm_batched while a batched pass is active: the object
        # that computes this layer's W / sigma together with the other layers of its bucket
        self.batch: Any = None

    @torch.no_grad()
    def power_iteration(self, w2d: torch.Tensor, n: int) -> None:
        """Run ``n`` steps of :func:`power_iterate` on this layer's ``u``, ``v``."""
        power_iterate(w2d, self.u, self.v, n, self.eps)

    def sigma(self, weight: torch.Tensor) -> torch.Tensor:
        """Current estimate ``u^T W v`` (differentiable in ``weight``), fp32 scalar."""
        # clones: autograd saves u, v for backward, and a later training forward (e.g. the
        # gradient penalty's second D pass) updates the buffers in place before that backward
        u, v = self.u.clone().float(), self.v.clone().float()
        return torch.dot(u, weight.flatten(1).float() @ v)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        if self.batch is not None:
            return self.batch.weight(self)
        return self.normalized(weight)

    def normalized(self, weight: torch.Tensor) -> torch.Tensor:
        """``W / sigma`` of this layer alone (the per-layer path, and the reference of
        :mod:`gankit.layers.spectral_norm_batched`)."""
        with torch.autocast(weight.device.type, enabled=False):
            if self.training:
                self.power_iteration(weight.flatten(1), self.n_power_iterations)
            return (weight.float() / self.sigma(weight)).to(weight.dtype)


def spectral_norm(
    module: nn.Module, name: str = "weight", n_power_iterations: int = 1, eps: float = 1e-6
) -> nn.Module:
    """Register :class:`SpectralNorm` on ``module.<name>`` and return ``module``.

    The raw weight lives at ``module.parametrizations.<name>.original``; the buffers ``u``/``v``
    at ``module.parametrizations.<name>.0.u`` / ``.v``.
    """
    weight = getattr(module, name)
    parametrize.register_parametrization(
        module, name, SpectralNorm(weight, n_power_iterations, eps), unsafe=False
    )
    return module


def spectral_norms(module: nn.Module) -> list[tuple[str, SpectralNorm]]:
    """All ``(qualified name, SpectralNorm)`` pairs inside ``module``."""
    return [(name, m) for name, m in module.named_modules() if isinstance(m, SpectralNorm)]


def sn_holders(module: nn.Module) -> list[parametrize.ParametrizationList]:
    """The parametrization lists of the spectral-norm layers in ``module`` (raw weight at
    ``.original``, the :class:`SpectralNorm` at ``[0]``)."""
    return [
        m
        for m in module.modules()
        if isinstance(m, parametrize.ParametrizationList)
        and len(m) == 1
        and isinstance(m[0], SpectralNorm)
    ]


class SNLayers:
    """The spectral-norm layers of ``module``, found once. A walk over the modules costs
    0.06-0.6 ms on BigGAN at 32-128 px (CPU), which a compiled call would otherwise pay twice
    (:meth:`advance`, then :meth:`frozen`). Layers registered on ``module`` later are not seen.
    """

    def __init__(self, module: nn.Module):
        self.holders = sn_holders(module)
        self.norms = [m for _, m in spectral_norms(module)]

    @torch.no_grad()
    def advance(self, run: Callable[..., None] = power_iterate_all) -> None:
        """Run the power iteration of every layer that is in training mode, as the module's
        next training forward would. Followed by that forward under :meth:`frozen`, it gives the
        same ``W / sigma`` (``sigma = u^T W v`` with the new ``u``, ``v``) with the buffer
        updates kept out of the forward: what a compiled forward needs so that a backward that
        recomputes activations reads the vectors the forward used. Unlike a forward, it also
        advances layers that the forward would not reach (e.g. an unused auxiliary head); their
        vectors are not used by the loss.

        ``run`` (:func:`power_iterate_all` or a compiled form of it) gets only the layers'
        tensors and numbers, and is not called when no layer is in training mode."""
        layers = [(h.original, h[0]) for h in self.holders if h[0].training]
        if layers:
            run(
                [w.detach() for w, _ in layers],  # one graph whether or not W requires grad
                [sn.u for _, sn in layers],
                [sn.v for _, sn in layers],
                [sn.n_power_iterations for _, sn in layers],
                [sn.eps for _, sn in layers],
            )

    @contextlib.contextmanager
    def frozen(self, enabled: bool = True) -> Iterator[None]:
        """Inside the block the layers skip their power iteration and use the stored ``u``,
        ``v`` (their ``training`` flag is cleared; other layers, e.g. batch norm, keep their
        mode). A no-op when ``enabled`` is False."""
        sns = self.norms if enabled else []
        modes = [m.training for m in sns]
        for m in sns:
            m.train(False)
        try:
            yield
        finally:
            for m, mode in zip(sns, modes):
                m.train(mode)


def frozen_power_iteration(
    module: nn.Module, enabled: bool = True
) -> contextlib.AbstractContextManager[None]:
    """:meth:`SNLayers.frozen` of the spectral-norm layers of ``module``."""
    return SNLayers(module).frozen(enabled)


def sn_conv2d(*args, sn: bool = True, eps: float = 1e-6, **kwargs) -> nn.Module:
    """``nn.Conv2d`` with optional spectral norm."""
    conv = nn.Conv2d(*args, **kwargs)
    return spectral_norm(conv, eps=eps) if sn else conv


def sn_linear(*args, sn: bool = True, eps: float = 1e-6, **kwargs) -> nn.Module:
    """``nn.Linear`` with optional spectral norm."""
    lin = nn.Linear(*args, **kwargs)
    return spectral_norm(lin, eps=eps) if sn else lin


def sn_embedding(*args, sn: bool = True, eps: float = 1e-6, **kwargs) -> nn.Module:
    """``nn.Embedding`` with optional spectral norm (projection discriminator's class embedding)."""
    emb = nn.Embedding(*args, **kwargs)
    return spectral_norm(emb, eps=eps) if sn else emb
