"""Training: ``train(cfg, out_dir)`` starts a run, ``resume(run_dir)`` continues it exactly.

The loop lives in :mod:`gankit.training.loop`; the run directory it writes is
:class:`gankit.run.RunDir`.
"""

from __future__ import annotations

import shutil
import sys
import traceback
from pathlib import Path

import torch

from gankit import checkpoint as ckpt_io
from gankit.config import (
    DEVICES,
    MAX_STEPS,
    RENAMED,
    Config,
    from_dict,
    keys_set_in,
    model_differences,
    save_toml,
)
from gankit.data.folder import folder_id, reading_folder
from gankit.data.sources import is_image_folder
from gankit.device import resolve_device
from gankit.errors import (
    GankitError,
    ParameterError,
    check_bool,
    check_int,
    check_path,
    first_names,
)
from gankit.run import RunDir
from gankit.training.distributed import cleanup, from_env
from gankit.training.hooks import default_hooks, eval_pending
from gankit.training.loop import Hook, Trainer
from gankit.training.state import check_state
from gankit.validation import validate

__all__ = ["Hook", "Trainer", "default_hooks", "resume", "train"]


def train(cfg: Config, out_dir: str | Path = "runs/default", quiet: bool = False) -> Path:
    """Train a new run into ``out_dir`` and return it.

    Writes ``config.toml`` (resolved config), ``metrics.jsonl``, ``tb/``, ``samples/`` and
    ``checkpoints/`` (see docs/architecture.md). Only rank 0 writes under torchrun.

    With ``cfg.train.init_from`` set, G, D and the EMA generator start from that run's (or
    checkpoint's) weights (:mod:`gankit.training.transfer`; what was re-initialised is printed).

    Raises:
        ParameterError: ``cfg`` not a Config, ``out_dir`` not a path, under a file or inside
            the image folder trained on (unless hidden there), ``quiet`` not a bool.
        GankitError: unwritable ``out_dir``, a run dir that already has checkpoints (use
            :func:`resume`) or that another process is writing, data that does not fit the
            model, bad config values, an ``init_from`` source that is missing or holds a
            different model.
    """
    if not isinstance(cfg, Config):  # (validate would name itself, not this argument)
        got = type(cfg).__name__
        raise ParameterError("cfg", f"expected a gankit.Config (gankit.load_preset), got {got}")
    out = _check_out_dir(out_dir)
    check_bool("quiet", quiet)
    validate(cfg)
    _check_out_of_data(out, cfg.data.path)
    hooks = default_hooks(cfg)  # checks the eval setup before anything is written
    new = not out.exists()
    run = RunDir(out).ensure_writable()
    with run.writer(enabled=from_env().is_main):
        try:
            RunDir.create(out)  # refuses a run with checkpoints, checked under the lock
            return _fit(cfg, run, hooks, quiet)
        except BaseException:  # (under the lock: never the folder another process now uses)
            if new and from_env().is_main:
                _remove_if_no_files(run.path)
            raise


def _check_out_dir(out_dir: object) -> Path:
    """``out_dir`` as a Path that is, or can become, a directory (no file in its place or above)."""
    out = check_path(out_dir, "out_dir", "a run directory path")
    blocker = next((p for p in (out, *out.parents) if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise ParameterError(
            "out_dir", f"expected a directory for the run, but {blocker} is not a directory"
        )
    return out


def _check_out_of_data(out: Path, data_path: str) -> None:
    """Refuse a run directory inside the image folder it trains on, where its files would be
    read as images (a hidden run directory there is not read: allowed)."""
    data = Path(data_path).expanduser().resolve() if data_path else None
    run_file = out.resolve() / ckpt_io.CONFIG_FILE  # as every file the run writes
    if is_image_folder(data) and reading_folder(run_file, {folder_id(data)}) is not None:
        raise ParameterError(
            "out_dir",
            f"{out} is inside the image folder {data_path} (data.path), whose files are all "
            "read as images; choose a run directory outside it",
        )


def _remove_if_no_files(path: Path) -> None:
    """Remove the run directory a failed start created, if nothing was written into it (only
    empty folders), so that a corrected command can use the same ``--out``."""
    if path.is_dir() and not any(p.is_file() or p.is_symlink() for p in path.rglob("*")):
        shutil.rmtree(path, ignore_errors=True)


def _fit(
    cfg: Config, run: RunDir, hooks: list[Hook], quiet: bool, checkpoint: Path | None = None
) -> Path:
    """Build the :class:`~gankit.training.loop.Trainer` (loading ``checkpoint`` if given), write
    the resolved ``config.toml`` and train up to ``cfg.train.steps``."""
    trainer = None
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
    except BaseException as err:
        if from_env().enabled:  # the failed frames' locals hold the trainer too
            traceback.clear_frames(err.__traceback__)
            if _peer_lost(err):
                rank = from_env().rank
                raise GankitError(
                    f"rank {rank}: a collective with the job's other processes failed "
                    f"({str(err).splitlines()[0][:160]}); one of them stopped or failed: see its "
                    "output, then resume the run"
                ) from None
        raise
    finally:
        del trainer  # its DDP wrappers go before the process group they use (see cleanup)
        cleanup()
    return run.path


_PEER_LOST = ("Connection reset by peer", "Connection closed by peer", "NCCL error", "gloo/")
"""What the messages of a collective whose peer process died hold (gloo's are plain
RuntimeErrors, NCCL's ``DistBackendError``)."""


def _peer_lost(err: BaseException) -> bool:
    """Whether ``err`` is a collective that failed because another process of the job went."""
    return isinstance(err, torch.distributed.DistError) or (
        isinstance(err, RuntimeError) and any(s in str(err) for s in _PEER_LOST)
    )


def _check_loadable(ckpt: Path) -> dict:
    """The state of ``ckpt`` after checking that ``state.pt`` and the weight files can be read
    (every tensor, finite; the trainer reads them again, from the page cache).

    Raises:
        CheckpointReadError: a file is damaged or unreadable, or an entry of ``state.pt`` is
            missing or ill-typed (:func:`~gankit.training.state.check_state`).
    """
    state = ckpt_io.load_state(ckpt)
    check_state(state, ckpt)
    for which in ckpt_io.WEIGHT_FILES:  # read whole: damage inside the data (NaN) counts too
        ckpt_io.load_weights(ckpt, which)
    return state


def _newest_loadable(run: RunDir) -> tuple[Path, dict, list[Path]]:
    """The newest checkpoint of ``run`` that loads, its state and the newer ones that do not
    or miss files (named in one warning line on stderr).

    Raises:
        GankitError: no checkpoint, or none that loads.
    """
    ckpts = ckpt_io.list_checkpoints(run.checkpoints, complete=False)
    if not ckpts:
        raise GankitError(
            f"{run.path}: no complete checkpoint in {run.checkpoints}; a run that never wrote "
            f"one starts again with `gankit train --out {run.path}` and its settings"
        )
    damaged: list[tuple[Path, str]] = []
    for ckpt in reversed(ckpts):
        if missing := ckpt_io.missing_files(ckpt):
            damaged.append((ckpt, f"{ckpt}: incomplete checkpoint (no {', '.join(missing)})"))
            continue
        try:
            state = _check_loadable(ckpt)
        except ckpt_io.CheckpointReadError as err:
            damaged.append((ckpt, str(err)))
            continue
        if damaged and from_env().is_main:  # once under torchrun
            print(
                f"gankit: warning: {len(damaged)} newer checkpoint(s) cannot be loaded "
                f"({'; '.join(why for _, why in damaged)}); resuming from {ckpt} (the damaged "
                f"ones are kept as {DAMAGED_PREFIX}step_* beside it)",
                file=sys.stderr,
            )
        return ckpt, state, [path for path, _ in damaged]
    raise GankitError(
        f"{run.checkpoints}: none of the {len(ckpts)} checkpoint(s) can be loaded (newest: "
        f"{damaged[0][1]})"
    )


def _check_whole_config(run: RunDir, saved: dict, ckpt: Path) -> None:
    """Refuse a run ``config.toml`` that lacks keys the checkpoint's saved config has: it is
    written whole with every checkpoint, so missing keys mean a file cut short, whose gaps
    would silently become defaults (edit a value to change a setting, never delete its key)."""
    present = keys_set_in(run.config_file)
    missing = [
        f"{section}.{key}"
        for section, keys in saved.items()
        if isinstance(keys, dict)
        for key in keys
        if f"{section}.{key}" not in present and f"{section}.{key}" not in RENAMED
    ]
    if missing:
        raise GankitError(
            f"{run.config_file}: no {first_names(missing, 4)} (cut short?); restore it, e.g. "
            f"from {ckpt / ckpt_io.CONFIG_FILE}, and change settings by editing their values"
        )


DAMAGED_PREFIX = "damaged-"
"""Resume renames a checkpoint that does not load to ``damaged-step_XXXXXXXX`` (ignored by the
listing and by pruning, which would otherwise keep it as the newest and delete intact ones)."""


def _set_aside(damaged: list[Path]) -> None:
    """Rename each checkpoint of ``damaged`` to ``damaged-<name>`` (``-N`` added if taken)."""
    for ckpt in damaged:
        target, n = ckpt.with_name(DAMAGED_PREFIX + ckpt.name), 1
        while target.exists():
            target, n = ckpt.with_name(f"{DAMAGED_PREFIX}{ckpt.name}-{n}"), n + 1
        try:
            ckpt.rename(target)
        except OSError as err:
            raise GankitError(
                f"{ckpt}: cannot move this damaged checkpoint aside ({err.strerror or err}); "
                "move or delete it, then resume again"
            ) from None


def resume(
    run_dir: str | Path, steps: int | None = None, device: str | None = None, quiet: bool = False
) -> Path:
    """Continue ``run_dir`` from its latest checkpoint up to ``steps`` total G steps.

    Continuation is exact: on CPU, N steps straight and N/2 + resume + N/2 give bitwise equal
    weights. ``steps`` defaults to the run's ``train.steps``. Newer checkpoints that cannot be
    loaded (damaged or unreadable files) are skipped with one warning line on stderr naming them
    and the checkpoint resumed from, and renamed to ``damaged-step_XXXXXXXX``.

    Raises:
        ParameterError: ``steps`` outside 1..10**9 or not past the run's step, ``device``
            not auto/cpu/cuda/None (or cuda without CUDA), ``quiet`` not a bool.
        GankitError: missing run dir/config/checkpoint, a run another process is writing
            (``train`` or ``resume``), no checkpoint that loads, weights that
            do not fit the model, or ``config.toml`` whose ``model.*`` differs from the
            checkpoint's (the message names the keys).
    """
    if steps is not None:
        expected = "an integer in 1..10**9 (total G steps to reach) or None"
        steps = check_int("steps", steps, 1, MAX_STEPS, expected=expected)
    if device is not None and not (isinstance(device, str) and device in DEVICES):
        raise ParameterError("device", f"expected 'cpu', 'cuda', 'auto' or None, got {device!r}")
    if device is not None:
        resolve_device(device)  # ParameterError for cuda without CUDA
    check_bool("quiet", quiet)
    run = RunDir.open(run_dir)
    with run.writer(enabled=from_env().is_main):
        return _resume(run, steps, device, quiet)


def _resume(run: RunDir, steps: int | None, device: str | None, quiet: bool) -> Path:
    """:func:`resume` of ``run``, whose writer lock this process holds."""
    cfg = run.load_config()
    latest, state, damaged = _newest_loadable(run)
    _check_whole_config(run, state["config"], latest)
    saved = from_dict({"model": state["config"]["model"]})  # (older key names too)
    differing = model_differences(saved, cfg)
    if differing:
        raise GankitError(
            f"{run.config_file}: model settings differ from checkpoint {latest.name} "
            f"({', '.join(differing)}); resume needs the same model"
        )
    if steps is not None:
        cfg.train.steps = steps
    if device is not None:
        cfg.train.device = device
    validate(cfg)
    hooks = default_hooks(cfg)
    done = cfg.train.steps == state["step"] and not eval_pending(cfg, run, state["step"])
    if cfg.train.steps < state["step"] or done:  # (at the step: only to add a missing eval)
        raise ParameterError(  # the CLI shows it under --steps
            "steps",
            f"{run.path} is already at step {state['step']}; expected a total number of G steps "
            f"to reach > {state['step']}",
        )
    run.ensure_writable("make it writable to continue it")
    if from_env().is_main:
        _set_aside(damaged)
    return _fit(cfg, run, hooks, quiet, checkpoint=latest)
