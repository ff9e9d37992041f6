"""Reversible G and D blocks (RevNet, Gomez et al. 2017, arXiv:1707.04585) for the ResNet
architectures (``model.G_block`` / ``model.D_block = "reversible"``).

A reversible block keeps its channel count ``C`` (even) and replaces the ResNet block's residual
function by an additive coupling (:class:`~gankit.layers.reversible.AdditiveCoupling`) whose
``F`` and ``G`` each have the residual function's layout on ``C/2`` channels:

- G: ``2x nearest upsampling`` (invertible), then the coupling with
  ``F, G = CN-act-conv3-CN-act-conv3`` (``CN``: G's conditional norm, taking the block's
  condition). The whole block is invertible, so consecutive G blocks form one chain.
- D: the down-sampling (average pooling or fractional max-pooling; not invertible, so it runs
  outside the chain, as RevNet's non-reversible down-sampling layers), then the coupling with
  ``F, G = norm-act-conv3-norm-act-conv3`` (norm per ``model.D_norm``).

:func:`run_blocks` runs a network's blocks and attention layers, joining consecutive reversible
steps into one :func:`~gankit.layers.reversible.reversible_sequence` (memory independent of its
length); attention layers and D's pooling separate chains.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gankit.layers.cond_norm import ConditionalNorm2d
from gankit.layers.reversible import AdditiveCoupling, Upsample2x, reversible_sequence
from gankit.models.style import NetStyle

__all__ = ["ReversibleBlock", "RevDBlock", "RevGBlock", "run_blocks"]


class _GResidual(nn.Module):
    """``h: (B, c, H, W)``, condition -> ``conv2(act(CN(conv1(act(CN(h))))))``, same shape."""

    def __init__(self, c: int, make_cn: Callable[[int], ConditionalNorm2d], style: NetStyle):
        super().__init__()
        self.bn1, self.act1 = make_cn(c), style.act(c)
        self.conv1 = style.conv2d(c, c, 3, padding=1)
        self.bn2, self.act2 = make_cn(c), style.act(c)
        self.conv2 = style.conv2d(c, c, 3, padding=1)

    def forward(self, h: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.conv1(self.act1(self.bn1(h, cond)))
        return self.conv2(self.act2(self.bn2(h, cond)))


class _DResidual(nn.Module):
    """``h: (B, c, H, W) -> conv2(act(norm(conv1(act(norm(h))))))``, same shape."""

    def __init__(self, c: int, style: NetStyle):
        super().__init__()
        self.norm1, self.act1 = style.norm2d(c), style.act(c)
        self.conv1 = style.conv2d(c, c, 3, padding=1)
        self.norm2, self.act2 = style.norm2d(c), style.act(c)
        self.conv2 = style.conv2d(c, c, 3, padding=1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = self.conv1(self.act1(self.norm1(h)))
        return self.conv2(self.act2(self.norm2(h)))


class ReversibleBlock(nn.Module):
    """A non-invertible prefix ``pre`` (or ``None``) followed by invertible ``steps``.

    ``memory_saving`` (default True) runs the steps without storing activations; ``False`` is
    the plain-autograd reference (same values and gradients).
    """

    memory_saving: bool = True

    def __init__(self, pre: Callable[[torch.Tensor], torch.Tensor] | None, steps: list[nn.Module]):
        super().__init__()
        self.pre = pre
        self.steps = nn.ModuleList(steps)

    def forward(self, x: torch.Tensor, cond: Any = None) -> torch.Tensor:
        """The block alone: ``pre`` then its steps as one chain."""
        return run_blocks([self], [nn.Identity()], x, [cond])


class RevGBlock(ReversibleBlock):
    """``x: (B, C, H, W)``, condition -> ``(B, C, 2H, 2W)``: upsampling then the coupling.

    Args:
        channels: C (even).
        make_cn: the generator's conditional-norm factory (``ConditionalGenerator.make_cbn``).
        style: G's convs and activations.
    """

    def __init__(self, channels: int, make_cn: Callable[[int], ConditionalNorm2d], style: NetStyle):
        half = channels // 2
        f, g = _GResidual(half, make_cn, style), _GResidual(half, make_cn, style)
        super().__init__(None, [Upsample2x(), AdditiveCoupling(f, g, conditional=True)])


class _AvgPool2x(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, 2)


class RevDBlock(ReversibleBlock):
    """``x: (B, C, H, W) -> (B, C, H', W')``: down-sampling (when ``downsample``) then the
    coupling; ``H'`` is ``H/2`` (average pooling) or the fractional max-pooling size."""

    def __init__(self, channels: int, downsample: bool, style: NetStyle):
        half = channels // 2
        pre = (style.pool() or _AvgPool2x()) if downsample else None
        super().__init__(pre, [AdditiveCoupling(_DResidual(half, style), _DResidual(half, style))])


def run_blocks(
    blocks: Sequence[nn.Module],
    attns: Sequence[nn.Module],
    h: torch.Tensor,
    conds: Sequence[Any],
) -> torch.Tensor:
    """``h`` through ``blocks[i]`` (called with ``conds[i]`` unless it is ``None``) and then
    ``attns[i]`` for each ``i``; consecutive reversible steps run as one chain."""
    steps: list[nn.Module] = []
    step_conds: list[Any] = []
    saving = True

    def flush(h: torch.Tensor) -> torch.Tensor:
        if not steps:
            return h
        h = reversible_sequence(steps, h, step_conds, memory_saving=saving)
        steps.clear()
        step_conds.clear()
        return h

    for block, attn, c in zip(blocks, attns, conds):
        if isinstance(block, ReversibleBlock):
            if block.pre is not None:
                h = block.pre(flush(h))
            saving = block.memory_saving
            steps.extend(block.steps)
            step_conds.extend([c] * len(block.steps))
            if isinstance(attn, nn.Identity):
                continue
            h = flush(h)
        else:
            h = block(flush(h)) if c is None else block(flush(h), c)
        h = attn(h)
    return flush(h)
