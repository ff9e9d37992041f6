"""Shared helpers of the training tests: a tiny config and a small random .npz data set."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gankit.config import Config, apply_overrides

TINY = [
    "model.arch=sagan",
    "model.resolution=32",
    "model.channels=1",
    "model.n_classes=3",
    "model.dim_z=8",
    "model.G_ch=8",
    "model.D_ch=8",
    "model.G_attn=[]",
    "model.D_attn=[]",
    "train.batch_size=4",
    "train.n_D=2",
    "train.steps=4",
    "train.log_every=1",
    "train.snapshot_every=2",
    "train.sigma_layers=2",
    "train.device=cpu",
    "train.ema_decay=0.9",
]


def tiny_data(path: Path, n: int = 24, n_classes: int = 3) -> Path:
    """A random uint8 (n, 32, 32) grey .npz with labels cycling over ``n_classes``."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(n, 32, 32), dtype=np.uint8)
    np.savez(path, x=x, y=np.arange(n) % n_classes)
    return path


def tiny_cfg(data: Path, *overrides: str) -> Config:
    cfg = apply_overrides(Config(), TINY + list(overrides))
    cfg.data.path = str(data)
    return cfg
