"""ResNet generator and projection discriminator shared by ``biggan``, ``sagan`` and ``sngan``.

The three architectures differ only in their channel tables (:class:`ResNetSpec`), the kind of
self-attention, the D block width and the conditioning of G (per-class CBN vs shared embedding
and hierarchical z); everything else is this one pair of modules (BigGAN Fig. 15 / Table 4-5,
SAGAN Sec. 5, SNGAN App. B). The layer switches of :mod:`gankit.models.style` apply to both, and
``model.G_block`` / ``model.D_block = "reversible"`` swaps in RevNet blocks
(:mod:`gankit.models.revblocks`) where a block keeps its channel count.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from gankit.config import ConfigError, ModelConfig
from gankit.models.base import (
    ConditionalGenerator,
    ProjectionDiscriminator,
    check_attention_resolutions,
    make_attention,
)
from gankit.models.blocks import DBlock, GBlock
from gankit.models.revblocks import RevDBlock, RevGBlock, run_blocks
from gankit.models.style import NetStyle

__all__ = [
    "ResNetDiscriminator",
    "ResNetGenerator",
    "ResNetSpec",
    "build_resnet",
    "resnet_resolutions",
    "spec_for",
]

RESOLUTION_STEP = 8


@dataclass(frozen=True)
class ResNetSpec:
    """Channel multipliers of one resolution.

    Attributes:
        g_widths: multipliers of ``G_ch``: the input of G's first block, then each block's
            output (``len - 1`` upsampling blocks from ``resolution / 2^(len-1)``).
        d_widths: multipliers of ``D_ch``: each D block's output.
        d_down: whether each D block halves the resolution.
    """

    g_widths: tuple[int, ...]
    d_widths: tuple[int, ...]
    d_down: tuple[bool, ...]


def spec_for(tables: dict[int, ResNetSpec], resolution: int) -> ResNetSpec | None:
    """The table for ``resolution``: its own, else the largest table ``T < resolution`` whose
    ``n = len(g_widths) - 1`` upsampling blocks divide it (``resolution / 2^n`` is G's bottom
    width; every table starts at 4, so it is >= 4). ``None`` when no table fits.

    With the 32/64/128/256 tables: 40-56 use 32's multipliers (3 blocks, bottom 5-7), 80, 96, 112
    use 64's (4 blocks, bottom 5-7), 160, 192, 224 use 128's (5 blocks, bottom 5-7); sizes that
    the nearest lower table does not divide fall back to a smaller table (72 → 32's, bottom 9;
    200 → 32's, bottom 25). Every multiple of 8 from the smallest to the largest table fits.
    """
    if resolution in tables:
        return tables[resolution]
    for size in sorted((t for t in tables if t < resolution), reverse=True):
        spec = tables[size]
        if resolution % (1 << (len(spec.g_widths) - 1)) == 0:
            return spec
    return None


def resnet_resolutions(tables: dict[int, ResNetSpec]) -> tuple[int, ...]:
    """Every multiple of :data:`RESOLUTION_STEP` from the smallest to the largest table that
    :func:`spec_for` finds a table for (an arch's declared resolutions)."""
    sizes = range(min(tables), max(tables) + 1, RESOLUTION_STEP)
    return tuple(r for r in sizes if spec_for(tables, r) is not None)


class ResNetGenerator(ConditionalGenerator):
    """``G(z: (B, dim_z), y: (B,)) -> (B, channels, R, R)`` in [-1, 1].

    ``linear(z_0) -> (B, w_0, R/2^n, R/2^n)``, then ``n`` :class:`GBlock` s (each followed by
    self-attention where its output resolution is in ``G_attn``), then
    ``BN-ReLU-conv3-tanh``. Spectral norm on every conv/linear when ``cfg.G_sn``; layer
    switches in :mod:`gankit.models.style`; :class:`RevGBlock` s with ``G_block = reversible``.
    """

    def __init__(self, cfg: ModelConfig, spec: ResNetSpec, arch: str, attention: str):
        widths = [cfg.G_ch * m for m in spec.g_widths]
        n = len(widths) - 1
        style = NetStyle.of(cfg, "G")
        super().__init__(
            cfg.dim_z, cfg.n_classes, cfg.resolution, cfg.channels, n_cbn=n,
            shared_dim=cfg.shared_dim, hier=cfg.hier, sn=cfg.G_sn, sn_eps=cfg.sn_eps,
            style=style,
        )  # fmt: skip
        self.bottom_width = cfg.resolution >> n
        resolutions = [self.bottom_width << (i + 1) for i in range(n)]
        attn = check_attention_resolutions(arch, "model.G_attn", cfg.G_attn, resolutions)
        self.linear = style.linear(self.z_in, widths[0] * self.bottom_width**2)
        if cfg.G_block == "reversible":
            check_reversible(arch, "G", [(widths[i], widths[i + 1]) for i in range(n)])
            blocks = [RevGBlock(widths[i], self.make_cbn, style) for i in range(n)]
        else:
            blocks = [
                GBlock(widths[i], widths[i + 1], self.make_cbn(widths[i]),
                       self.make_cbn(widths[i + 1]), style)
                for i in range(n)
            ]  # fmt: skip
        self.blocks = nn.ModuleList(blocks)
        self.attn = nn.ModuleList(
            make_attention(cfg, "model.G_attn", widths[i + 1], attention, cfg.G_sn)
            if r in attn
            else nn.Identity()
            for i, r in enumerate(resolutions)
        )
        self.out_bn = style.norm2d(widths[-1])
        self.out_act = style.act(widths[-1])
        self.out_conv = style.conv2d(widths[-1], cfg.channels, 3, padding=1, last=True)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        z0, conds = self.conditions(z, y)
        h = self.linear(z0).view(z.shape[0], -1, self.bottom_width, self.bottom_width)
        h = run_blocks(self.blocks, self.attn, h, conds)
        return torch.tanh(self.out_conv(self.out_act(self.out_bn(h))))


class ResNetDiscriminator(ProjectionDiscriminator):
    """``D(x: (B, channels, R, R), y: (B,)) -> (B,)`` logits (projection discriminator).

    ``phi``: :class:`DBlock` s (the first without pre-activation; self-attention after a block
    whose output resolution is in ``D_attn``), then ReLU and a sum over positions (SNGAN).
    ``wide`` selects BigGAN/SAGAN's hidden width ``C_out`` instead of SNGAN's ``C_in``. With
    ``D_block = reversible`` every block after the first is a :class:`RevDBlock`.
    """

    def __init__(self, cfg: ModelConfig, spec: ResNetSpec, arch: str, attention: str, wide: bool):
        widths = [cfg.D_ch * m for m in spec.d_widths]
        style = NetStyle.of(cfg, "D")
        super().__init__(
            widths[-1], cfg.n_classes, cfg.resolution, cfg.channels, style=style,
            aux_classifier=cfg.aux_classifier,
        )  # fmt: skip
        ins = [cfg.channels, *widths[:-1]]
        resolutions, r = [], cfg.resolution
        for down in spec.d_down:
            r = style.down_size(r) if down else r
            resolutions.append(r)
        attn = check_attention_resolutions(arch, "model.D_attn", cfg.D_attn, resolutions)
        blocks: list[nn.Module] = [
            DBlock(ins[i], widths[i], widths[i] if wide or i == 0 else ins[i], spec.d_down[i],
                   preactivation=i > 0, style=style)
            for i in range(len(widths))
        ]  # fmt: skip
        if cfg.D_block == "reversible":
            check_reversible(arch, "D", [(ins[i], widths[i]) for i in range(1, len(widths))], 1)
            blocks[1:] = [
                RevDBlock(widths[i], spec.d_down[i], style) for i in range(1, len(widths))
            ]
        self.blocks = nn.ModuleList(blocks)
        self.attn = nn.ModuleList(
            make_attention(cfg, "model.D_attn", widths[i], attention, cfg.D_sn)
            if r in attn
            else nn.Identity()
            for i, r in enumerate(resolutions)
        )
        self.out_act = style.act(widths[-1])

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W) -> (B, D_ch * d_widths[-1])``: blocks, ReLU, sum over H, W."""
        h = run_blocks(self.blocks, self.attn, x, [None] * len(self.blocks))
        return self.out_act(h).sum(dim=(2, 3))


def check_reversible(arch: str, net: str, in_out: list[tuple[int, int]], first: int = 0) -> None:
    """ConfigError unless every block ``(C_in, C_out)`` keeps an even channel count (a
    reversible block splits its input into two halves and returns as many channels)."""
    for i, (c_in, c_out) in enumerate(in_out, start=first):
        if c_in != c_out or c_in % 2:
            raise ConfigError(
                f"config key 'model.{net}_block': a reversible block keeps an even channel "
                f"count, but {net} block {i} of {arch} maps {c_in} -> {c_out} channels; "
                f"use model.{net}_block=resnet"
            )


def build_resnet(
    cfg: ModelConfig,
    arch: str,
    tables: dict[int, ResNetSpec],
    attention: str,
    wide_D: bool,
    shared_ok: bool,
) -> tuple[ResNetGenerator, ResNetDiscriminator]:
    """Build the G/D pair of ``arch`` from its per-resolution ``tables`` (the table
    :func:`spec_for` picks for ``cfg.resolution``, which :func:`gankit.models.build` checked
    against :func:`resnet_resolutions`), with ``attention`` blocks.

    Raises:
        ConfigError: an attention resolution without a feature map, or shared embedding /
            hierarchical z on an arch that does not use them (``shared_ok=False``).
    """
    if not shared_ok and (cfg.shared_dim or cfg.hier):
        raise ConfigError(
            f"config keys 'model.shared_dim'/'model.hier': arch '{arch}' uses per-class "
            "conditional BN; expected shared_dim = 0 and hier = false (use arch 'biggan')"
        )
    spec = spec_for(tables, cfg.resolution)
    G = ResNetGenerator(cfg, spec, arch, attention)
    D = ResNetDiscriminator(cfg, spec, arch, attention, wide_D)
    return G, D
