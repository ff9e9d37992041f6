"""gankit: class-conditional image GANs in the Non-local -> SAGAN -> BigGAN line.

The Python workflow (attributes are imported on first use, so ``import gankit`` stays light):

- :class:`Config`, :func:`load_preset` (:mod:`gankit.config`), :func:`validate` (the whole
  check, :mod:`gankit.validation`);
- :func:`train`, :func:`resume` (:mod:`gankit.training`);
- :func:`load` (the generator of a run, :func:`gankit.run.load_generator`);
- :func:`generate` (batched samples of a generator, :mod:`gankit.generation`);
- :func:`evaluate` (metrics of a run, :mod:`gankit.evaluation`).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_API = {
    "Config": ("gankit.config", "Config"),
    "load_preset": ("gankit.config", "load_preset"),
    "validate": ("gankit.validation", "validate"),
    "train": ("gankit.training", "train"),
    "resume": ("gankit.training", "resume"),
    "load": ("gankit.run", "load_generator"),
    "generate": ("gankit.generation", "generate"),
    "evaluate": ("gankit.evaluation", "evaluate"),
}
__all__ = list(_API)


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'gankit' has no attribute {name!r}")
    module, attr = _API[name]
    return getattr(importlib.import_module(module), attr)


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
