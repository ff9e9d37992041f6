"""Architectures by name: ``@register("biggan", resolutions=..., attention=...)`` on a factory
``(model_cfg, attention) -> (G, D)``.

Each arch declares the resolutions it supports and its own attention block (what
``model.attn_type = "auto"`` means for it). :func:`build` checks the model section
(:func:`gankit.config.validate_section`) and the resolution, resolves the attention type, builds
the pair and applies ``model.init`` to both (:func:`gankit.layers.init.init_weights`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from gankit.config import ConfigError, ModelConfig, validate_section
from gankit.layers.init import init_weights

__all__ = [
    "ArchSpec",
    "attention_type",
    "build",
    "count_params",
    "describe_resolutions",
    "get_arch",
    "list_archs",
    "register",
]

Factory = Callable[[ModelConfig, str], tuple[nn.Module, nn.Module]]


@dataclass(frozen=True)
class ArchSpec:
    """A registered architecture: its factory, supported resolutions and own attention type."""

    name: str
    factory: Factory
    resolutions: tuple[int, ...]
    attention: str


_ARCHS: dict[str, ArchSpec] = {}


def register(
    name: str, resolutions: tuple[int, ...], attention: str
) -> Callable[[Factory], Factory]:
    """Decorator registering ``factory(model_cfg, attention) -> (G, D)`` as arch ``name``.

    Args:
        resolutions: the output sizes the arch has tables/layouts for.
        attention: its own attention type (``model.attn_type = "auto"``), e.g. ``"sagan"``.
    """

    def deco(factory: Factory) -> Factory:
        if name in _ARCHS:
            raise ValueError(f"arch '{name}' is already registered")
        _ARCHS[name] = ArchSpec(name, factory, tuple(sorted(resolutions)), attention)
        return factory

    return deco


def list_archs() -> list[str]:
    return sorted(_ARCHS)


def get_arch(name: str) -> ArchSpec:
    """The registered arch ``name``; ConfigError listing the valid ones otherwise."""
    if name not in _ARCHS:
        raise ConfigError(
            f"config key 'model.arch': unknown arch '{name}'; valid: {', '.join(list_archs())}"
        )
    return _ARCHS[name]


def attention_type(cfg: ModelConfig) -> str:
    """``model.attn_type`` with ``auto`` replaced by the arch's own attention type."""
    return get_arch(cfg.arch).attention if cfg.attn_type == "auto" else cfg.attn_type


def build(cfg: ModelConfig, init: bool = True) -> tuple[nn.Module, nn.Module]:
    """``(G, D)`` for ``cfg.arch``, initialised with ``cfg.init`` (contract in
    docs/architecture.md). Raises ConfigError for unknown archs or invalid settings.

    ``init=False`` skips ``cfg.init`` (PyTorch's default values stay) for modules whose
    weights are about to be loaded or never used (``gankit info``, EMA copies, checkpoints):
    orthogonal init of biggan-128 takes tens of seconds on a CPU (one QR per weight)."""
    spec = get_arch(cfg.arch)
    validate_section("model", cfg)
    if cfg.resolution not in spec.resolutions:
        raise ConfigError(
            f"config key 'model.resolution': arch '{cfg.arch}' does not support "
            f"{cfg.resolution}; supported: {describe_resolutions(spec.resolutions)}"
        )
    try:
        G, D = spec.factory(cfg, attention_type(cfg))
    except RuntimeError as err:  # the allocator (torch.OutOfMemoryError is one too)
        if "alloc" not in str(err) and not isinstance(err, torch.OutOfMemoryError):
            raise
        raise ConfigError(
            f"model: the networks of this config do not fit in memory (model.G_ch={cfg.G_ch}, "
            f"model.D_ch={cfg.D_ch}, model.n_classes={cfg.n_classes}, model.resolution="
            f"{cfg.resolution}); use smaller values"
        ) from None
    if init:
        init_weights(G, cfg.init)
        init_weights(D, cfg.init)
    return G, D


def describe_resolutions(resolutions: tuple[int, ...]) -> str:
    """``"32, 64"`` or, for a run of 5+ sizes with one step, ``"32, 40, ..., 256 (every multiple
    of 8)"``: the valid set, short enough for a one-line error."""
    steps = {b - a for a, b in zip(resolutions, resolutions[1:])}
    if len(resolutions) < 5 or len(steps) != 1:
        return ", ".join(map(str, resolutions))
    first, second, last, step = resolutions[0], resolutions[1], resolutions[-1], steps.pop()
    return f"{first}, {second}, ..., {last} (every multiple of {step})"


def count_params(module: nn.Module) -> int:
    """Sum of ``numel()`` over ``module.parameters()`` (how BigGAN-PyTorch counts)."""
    return sum(p.numel() for p in module.parameters())
