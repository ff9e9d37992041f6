"""Training: ``train(cfg, out_dir)`` starts a run, ``resume(run_dir)`` continues it exactly.

The loop lives in :mod:`gankit.training.loop` (imported on first use, so that loading
:mod:`gankit.training.checkpoint` for sampling stays light).
"""

from __future__ import annotations

import sys
from pathlib import Path

from gankit.config import Config, check_ranges, load_toml, save_toml, to_dict
from gankit.errors import GankitError
from gankit.training import checkpoint as ckpt_io

__all__ = ["prepare_run_dir", "resume", "train"]


def prepare_run_dir(path: str | Path) -> Path:
    """Create ``path`` (and parents) and check it is writable, or raise a one-line error."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".gankit-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise GankitError(
            f"run dir {path}: cannot create or write it ({err.strerror or err}); "
            "choose another --out"
        ) from None
    return path


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
    check_ranges("train", cfg.train)
    run_dir = prepare_run_dir(out_dir)
    if ckpt_io.list_checkpoints(run_dir / "checkpoints"):
        raise GankitError(
            f"run dir {run_dir} already has checkpoints; continue it with `gankit resume "
            f"{run_dir}` or choose another --out"
        )
    return _fit(cfg, run_dir, quiet)


def _fit(cfg: Config, run_dir: Path, quiet: bool, checkpoint: Path | None = None) -> Path:
    """Build the :class:`~gankit.training.loop.Trainer` (loading ``checkpoint`` if given), write
    the resolved ``config.toml`` and train up to ``cfg.train.steps``."""
    from gankit.training.distributed import cleanup
    from gankit.training.loop import Trainer

    try:
        trainer = Trainer(cfg, run_dir, quiet=quiet)
        if checkpoint is not None:
            trainer.load(checkpoint)
        elif cfg.train.init_from:
            for line in trainer.init_from(cfg.train.init_from):
                print(f"gankit: {line}", file=sys.stderr)
        if trainer.writes:
            save_toml(cfg, run_dir / "config.toml")
        trainer.fit(cfg.train.steps)
    finally:
        cleanup()
    return run_dir


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
    run_dir = Path(run_dir)
    if not (run_dir / "config.toml").is_file():
        raise GankitError(f"{run_dir}: not a run directory (no config.toml)")
    cfg = load_toml(run_dir / "config.toml")
    ckpts = ckpt_io.list_checkpoints(run_dir / "checkpoints")
    if not ckpts:
        raise GankitError(f"{run_dir}: no complete checkpoint in {run_dir / 'checkpoints'}")
    state = ckpt_io.load_state(ckpts[-1])
    saved = state["config"]["model"]
    current = to_dict(cfg)["model"]
    differing = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
    if differing:
        raise GankitError(
            f"{run_dir / 'config.toml'}: model settings differ from checkpoint {ckpts[-1].name} "
            f"({', '.join(f'model.{k}' for k in differing)}); resume needs the same model"
        )
    if steps is not None:
        cfg.train.steps = steps
    if device is not None:
        cfg.train.device = device
    if cfg.train.steps <= state["step"]:
        raise GankitError(
            f"{run_dir}: already at step {state['step']}; pass --steps N with N > {state['step']}"
            " (the total number of G steps to reach)"
        )
    prepare_run_dir(run_dir)
    return _fit(cfg, run_dir, quiet, checkpoint=ckpts[-1])
