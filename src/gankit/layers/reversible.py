"""Reversible residual blocks (Gomez et al. 2017, "The Reversible Residual Network:
Backpropagation Without Storing Activations", arXiv:1707.04585, Eq. 1-2 and Alg. 1).

An :class:`AdditiveCoupling` splits ``x: (B, C, H, W)`` into channel halves ``(x1, x2)`` and
computes (Eq. 1)

    ``y1 = x1 + F(x2)``,  ``y2 = x2 + G(y1)``,

which inverts exactly (Eq. 2): ``x2 = y2 - G(y1)``, ``x1 = y1 - F(x2)``. A chain of invertible
steps (couplings and :class:`Upsample2x`) run by :func:`reversible_sequence` keeps only the
chain's *output*: in the backward pass each step recovers its input from its output and
recomputes ``F`` and ``G`` with grad (Alg. 1): with ``dy = (dy1, dy2)``,

    ``dy1' = dy1 + (dG/dy1)^T dy2``,  ``dx1 = dy1'``,  ``dx2 = dy2 + (dF/dx2)^T dy1'``,
    ``dtheta_G = (dG/dtheta_G)^T dy2``,  ``dtheta_F = (dF/dtheta_F)^T dy1'``,

so activation memory does not grow with the number of steps. The recomputation must not change
state twice: it runs under :func:`gankit.layers.recompute.no_state_updates` (spectral norms
reuse their ``u``, ``v``; batch norms normalise with the batch statistics, which the recovered
inputs reproduce, without updating the running ones), and under the autocast state of the
forward. ``memory_saving=False`` runs the same steps with plain autograd (stored activations):
the reference the tests compare against. Operations with randomness must stay outside ``F``/``G``.
Double backward (e.g. a gradient penalty) is not supported through the memory-saving path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gankit.layers.recompute import no_state_updates

__all__ = ["AdditiveCoupling", "InvertibleStep", "Upsample2x", "reversible_sequence"]

Grads = dict[nn.Parameter, torch.Tensor]


class InvertibleStep(nn.Module):
    """A step ``y = f(x, cond)`` with an exact inverse and a backward from its output alone."""

    def forward(self, x: torch.Tensor, cond: Any = None) -> torch.Tensor:
        raise NotImplementedError

    def inverse(self, y: torch.Tensor, cond: Any = None) -> torch.Tensor:
        raise NotImplementedError

    def backward_from_output(
        self, y: torch.Tensor, dy: torch.Tensor, cond: Any
    ) -> tuple[torch.Tensor, torch.Tensor, Grads, torch.Tensor | None]:
        """``(x, dx, parameter grads, cond grad or None)`` from the output ``y`` and ``dy``."""
        raise NotImplementedError


class Upsample2x(InvertibleStep):
    """Nearest-neighbour 2x upsampling ``(B, C, H, W) -> (B, C, 2H, 2W)``; its inverse keeps
    every other pixel, its input gradient sums each 2x2 block."""

    def forward(self, x: torch.Tensor, cond: Any = None) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2, mode="nearest")

    def inverse(self, y: torch.Tensor, cond: Any = None) -> torch.Tensor:
        return y[:, :, ::2, ::2]

    def backward_from_output(self, y, dy, cond):
        return self.inverse(y), F.avg_pool2d(dy, 2) * 4, {}, None


def _leaf(t: Any) -> Any:
    """A detached copy that records its gradient (floating tensors needing one), else ``t``."""
    if isinstance(t, torch.Tensor) and t.requires_grad:
        return t.detach().requires_grad_(True)
    return t


class AdditiveCoupling(InvertibleStep):
    """RevNet block ``(x1, x2) -> (x1 + F(x2), x2 + G(y1))`` over channel halves.

    Args:
        f, g: residual functions ``(B, C/2, H, W) -> (B, C/2, H, W)``, called as ``f(h)`` or,
            with ``conditional``, ``f(h, cond)``.
        conditional: pass the condition to ``f`` and ``g``.
    """

    def __init__(self, f: nn.Module, g: nn.Module, conditional: bool = False):
        super().__init__()
        self.f, self.g, self.conditional = f, g, conditional

    def _call(self, fn: nn.Module, h: torch.Tensor, cond: Any) -> torch.Tensor:
        return fn(h, cond) if self.conditional else fn(h)

    def forward(self, x: torch.Tensor, cond: Any = None) -> torch.Tensor:
        x1, x2 = x.chunk(2, dim=1)
        y1 = x1 + self._call(self.f, x2, cond)
        return torch.cat([y1, x2 + self._call(self.g, y1, cond)], dim=1)

    def inverse(self, y: torch.Tensor, cond: Any = None) -> torch.Tensor:
        y1, y2 = y.chunk(2, dim=1)
        x2 = y2 - self._call(self.g, y1, cond)
        return torch.cat([y1 - self._call(self.f, x2, cond), x2], dim=1)

    def _vjp(
        self, fn: nn.Module, h: torch.Tensor, cond: Any, dout: torch.Tensor, grads: Grads
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``fn(h)`` recomputed with grad: ``(value, (dfn/dh)^T dout, cond grad)``; parameter
        grads are added to ``grads``."""
        with torch.enable_grad():
            h_leaf = h.detach().requires_grad_(True)
            out = self._call(fn, h_leaf, cond)
        params = [p for p in fn.parameters() if p.requires_grad]
        use_cond = isinstance(cond, torch.Tensor) and cond.requires_grad
        inputs = [h_leaf, *params, *([cond] if use_cond else [])]
        got = torch.autograd.grad(out, inputs, dout.to(out.dtype), allow_unused=True)
        for p, gp in zip(params, got[1 : 1 + len(params)]):
            if gp is not None:
                grads[p] = grads[p] + gp if p in grads else gp
        d_h = got[0] if got[0] is not None else torch.zeros_like(h)
        return out.detach(), d_h.to(dout.dtype), got[-1] if use_cond else None

    def backward_from_output(self, y, dy, cond):
        y1, y2 = y.detach().chunk(2, dim=1)
        dy1, dy2 = dy.chunk(2, dim=1)
        c = _leaf(cond)
        grads: Grads = {}
        g_out, dy1_via_g, dc_g = self._vjp(self.g, y1, c, dy2, grads)
        x2 = y2 - g_out
        dy1_total = dy1 + dy1_via_g
        f_out, dx2_via_f, dc_f = self._vjp(self.f, x2, c, dy1_total, grads)
        x1 = y1 - f_out
        dcs = [d for d in (dc_g, dc_f) if d is not None]
        dcond = sum(dcs[1:], dcs[0]) if dcs else None
        dx = torch.cat([dy1_total, dy2 + dx2_via_f], dim=1)
        return torch.cat([x1, x2], dim=1), dx, grads, dcond


class _ReversibleFunction(torch.autograd.Function):
    """Runs ``steps`` without storing activations; see :func:`reversible_sequence`."""

    @staticmethod
    def forward(ctx, x, steps, conds, *tensors):  # tensors: one per condition, then parameters
        ctx.steps, ctx.conds, ctx.params = steps, conds, tensors[len(conds) :]
        ctx.autocast = (x.device.type, torch.is_autocast_enabled(x.device.type),
                        torch.get_autocast_dtype(x.device.type))  # fmt: skip
        with torch.no_grad():
            y = x
            for step, cond in zip(steps, conds):
                y = step(y, cond)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, dy):
        (y,) = ctx.saved_tensors
        device_type, enabled, dtype = ctx.autocast
        cond_grads: dict[int, torch.Tensor] = {}
        param_grads: Grads = {}
        with torch.autocast(device_type, dtype=dtype, enabled=enabled):
            for step, cond in zip(reversed(ctx.steps), reversed(ctx.conds)):
                with no_state_updates(step):
                    y, dy, grads, dcond = step.backward_from_output(y, dy, cond)
                for p, g in grads.items():
                    param_grads[p] = param_grads[p] + g if p in param_grads else g
                if dcond is not None:
                    key = id(cond)
                    cond_grads[key] = cond_grads[key] + dcond if key in cond_grads else dcond
        out_conds = []
        seen: set[int] = set()
        for cond in ctx.conds:  # one gradient per distinct condition tensor
            grad = None
            if isinstance(cond, torch.Tensor) and id(cond) not in seen:
                grad = cond_grads.get(id(cond))
                seen.add(id(cond))
            out_conds.append(grad)
        return (dy, None, None, *out_conds, *(param_grads.get(p) for p in ctx.params))


def reversible_sequence(
    steps: Sequence[InvertibleStep],
    x: torch.Tensor,
    conds: Sequence[Any],
    memory_saving: bool = True,
) -> torch.Tensor:
    """Apply ``steps`` in order (``step(h, cond)`` with ``conds[i]`` for step ``i``).

    With ``memory_saving`` and autograd recording, only the final output is stored and the
    backward pass recovers every intermediate activation by inversion (module docstring);
    otherwise the steps run with plain autograd. Both give the same values and gradients.
    """
    if len(conds) != len(steps):
        raise ValueError(f"{len(steps)} steps need {len(steps)} conditions, got {len(conds)}")
    params = list(dict.fromkeys(p for step in steps for p in step.parameters()))
    needs_grad = (
        x.requires_grad
        or any(p.requires_grad for p in params)
        or any(isinstance(c, torch.Tensor) and c.requires_grad for c in conds)
    )
    if not (memory_saving and torch.is_grad_enabled() and needs_grad):
        for step, cond in zip(steps, conds):
            x = step(x, cond)
        return x
    tensors = [c if isinstance(c, torch.Tensor) else None for c in conds]
    return _ReversibleFunction.apply(x, list(steps), list(conds), *tensors, *params)
