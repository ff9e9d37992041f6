"""Training: ``train(cfg, out_dir)`` starts a run, ``resume(run_dir)`` continues it exactly.

The loop lives in :mod:`gankit.training.loop`; the run directory it writes is
:class:`gankit.run.RunDir`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from gankit import checkpoint as ckpt_io
from gankit.config import Config, from_dict, save_toml, to_dict, validate
from gankit.errors import GankitError
from gankit.run import RunDir
from gankit.training.distributed import cleanup
from gankit.training.hooks import default_hooks
from gankit.training.loop import Hook, Trainer

__all__ = ["Hook", "Trainer", "default_hooks", "resume", "train"]


def train(cfg: Config, out_dir: str | Path = "runs/default", quiet: bool = False) -> Path:
    """Train a new run into ``out_dir`` and return it.

    Writes ``config.toml`` (resolved config), ``metrics.jsonl``, ``tb/``, ``samples/`` and
    ``checkpoints/`` (see docs/architecture.md). Only rank 0 writes under torchrun.

    With ``cfg.train.init_from`` set, G, D and the EMA generator start from that run's (or
    checkpoint's) weights (:mod:`gankit.training.transfer`; what was re-initialised is printed).

    Raises:
        GankitError: unwritable ``out_dir``, a run dir that already has checkpoints (use
            :func:`resume`), data that does not fit the model, bad config values, an
            ``init_from`` source that is missing or holds a different model.
    """
    validate(cfg)
    hooks = default_hooks(cfg)  # checks the eval setup before anything is written
    return _fit(cfg, RunDir.create(out_dir), hooks, quiet)


def _fit(
    cfg: Config, run: RunDir, hooks: list[Hook], quiet: bool, checkpoint: Path | None = None
) -> Path:
    """Build the :class:`~gankit.training.loop.Trainer` (loading ``checkpoint`` if given), write
    the resolved ``config.toml`` and train up to ``cfg.train.steps``."""
    try:
        trainer = Trainer(cfg, run.path, hooks=hooks, quiet=quiet)
        if checkpoint is not None:
            trainer.load(checkpoint)
        elif cfg.train.init_from:
            for line in trainer.init_from(cfg.train.init_from):
                print(f"gankit: {line}", file=sys.stderr)
        if trainer.writes:
            save_toml(cfg, run.config_file)
        trainer.fit(cfg.train.steps)
    finally:
        cleanup()
    return run.path


def resume(
    run_dir: str | Path, steps: int | None = None, device: str | None = None, quiet: bool = False
) -> Path:
    """Continue ``run_dir`` from its latest checkpoint up to ``steps`` total G steps.

    Continuation is exact: on CPU, N steps straight and N/2 + resume + N/2 give bitwise equal
    weights. ``steps`` defaults to the run's ``train.steps``.

    Raises:
        GankitError: missing run dir/config/checkpoint, or ``config.toml`` whose ``model.*``
            differs from the checkpoint's (the message names the keys).
    """
    run = RunDir.open(run_dir)
    cfg = run.load_config()
    latest = run.latest_checkpoint()
    if latest is None:
        raise GankitError(f"{run.path}: no complete checkpoint in {run.checkpoints}")
    state = ckpt_io.load_state(latest)
    saved = to_dict(from_dict({"model": state["config"]["model"]}))["model"]  # older key names
    current = to_dict(cfg)["model"]
    differing = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
    if differing:
        raise GankitError(
            f"{run.config_file}: model settings differ from checkpoint {latest.name} "
            f"({', '.join(f'model.{k}' for k in differing)}); resume needs the same model"
        )
    if steps is not None:
        cfg.train.steps = steps
    if device is not None:
        cfg.train.device = device
    validate(cfg)
    hooks = default_hooks(cfg)
    if cfg.train.steps <= state["step"]:
        raise GankitError(
            f"{run.path}: already at step {state['step']}; pass --steps N with N > {state['step']}"
            " (the total number of G steps to reach)"
        )
    return _fit(cfg, run.ensure_writable(), hooks, quiet, checkpoint=latest)
