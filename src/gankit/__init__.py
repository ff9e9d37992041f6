"""gankit: class-conditional image GANs in the Non-local -> SAGAN -> BigGAN line.

``gankit.train(cfg, out_dir)`` and ``gankit.load(run_dir)`` are imported lazily, so that
``import gankit`` stays light.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["load", "train"]


def __getattr__(name: str) -> Any:
    if name == "load":
        from gankit.sampling import load

        return load
    if name == "train":
        from gankit.training import train

        return train
    raise AttributeError(f"module 'gankit' has no attribute {name!r}")
