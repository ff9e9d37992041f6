"""Shared helpers of the training tests: a tiny config and a small random .npz data set."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from gankit.checkpoint import save_checkpoint, step_dir_name
from gankit.config import Config, apply_overrides
from gankit.models import build

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


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """torch on one thread inside the block: on a shared 2-core machine 2 threads are often
    much slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


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


def settle(G: torch.nn.Module, D: torch.nn.Module, batches: int = 3) -> None:
    """Training-mode forwards on random inputs, as training would do: spectral-norm vectors
    converge and G's batch-norm running statistics become the average over these batches (an
    initialised G in eval mode otherwise saturates its tanh output)."""
    norms = [m for m in G.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.momentum = None  # cumulative average
        m.reset_running_stats()
    G.train(), D.train()
    with torch.no_grad():
        for _ in range(batches):
            y = torch.randint(G.n_classes, (16,))
            D(G(torch.randn(16, G.dim_z), y), y)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    G.eval(), D.eval()


def saved_run(run_dir: Path, cfg: Config, seed: int = 0) -> Path:
    """A run directory with one checkpoint of an untrained but settled G, D (G_ema = G):
    enough for anything that loads a run, in a fraction of a second."""
    torch.manual_seed(seed)
    G, D = build(cfg.model)
    settle(G, D)
    weights = {"G": G.state_dict(), "D": D.state_dict(), "G_ema": G.state_dict()}
    save_checkpoint(run_dir / "checkpoints", step_dir_name(1), weights, {"step": 1}, cfg)
    return run_dir


def d_inputs(trainer) -> list[torch.Tensor]:
    """Every input D gets during one ``trainer.train_iteration()`` (D steps, then G step)."""
    seen: list[torch.Tensor] = []
    handle = trainer.D.register_forward_pre_hook(lambda mod, args: seen.append(args[0].detach()))
    trainer.train_iteration()
    handle.remove()
    return seen
