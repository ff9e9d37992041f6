"""Architectures by name: ``@register("biggan")`` on a factory ``ModelConfig -> (G, D)``.

:func:`build` looks the name up, builds the pair and applies ``model.init`` to both
(:func:`gankit.layers.init.init_weights`).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from gankit.config import ConfigError, ModelConfig, check_ranges
from gankit.layers.init import init_fn, init_weights

__all__ = ["build", "count_params", "list_archs", "register"]

Factory = Callable[[ModelConfig], tuple[nn.Module, nn.Module]]
_ARCHS: dict[str, Factory] = {}


def register(name: str) -> Callable[[Factory], Factory]:
    """Decorator registering ``factory(model_cfg) -> (G, D)`` as arch ``name``."""

    def deco(factory: Factory) -> Factory:
        if name in _ARCHS:
            raise ValueError(f"arch '{name}' is already registered")
        _ARCHS[name] = factory
        return factory

    return deco


def list_archs() -> list[str]:
    return sorted(_ARCHS)


def build(cfg: ModelConfig, init: bool = True) -> tuple[nn.Module, nn.Module]:
    """``(G, D)`` for ``cfg.arch``, initialised with ``cfg.init`` (contract in
    docs/architecture.md). Raises ConfigError for unknown archs or invalid settings.

    ``init=False`` skips ``cfg.init`` (PyTorch's default values stay) for modules whose
    weights are about to be loaded or never used (``gankit info``, EMA copies, checkpoints):
    orthogonal init of biggan-128 takes tens of seconds on a CPU (one QR per weight)."""
    if cfg.arch not in _ARCHS:
        raise ConfigError(
            f"config key 'model.arch': unknown arch '{cfg.arch}'; valid: {', '.join(list_archs())}"
        )
    check_ranges("model", cfg)
    init_fn(cfg.init)  # an unknown style fails before the (slow) construction
    G, D = _ARCHS[cfg.arch](cfg)
    if init:
        init_weights(G, cfg.init)
        init_weights(D, cfg.init)
    return G, D


def count_params(module: nn.Module) -> int:
    """Sum of ``numel()`` over ``module.parameters()`` (how BigGAN-PyTorch counts)."""
    return sum(p.numel() for p in module.parameters())
