"""Atomic, crash-safe checkpoints: safetensors weights plus a ``weights_only`` state file.

This module reads and writes ONE checkpoint directory; what a run directory holds (and which of
its checkpoints is the latest or best) is :mod:`gankit.run`.

Layout of one checkpoint, ``RUN/checkpoints/step_XXXXXXXX/``:

- ``G.safetensors``, ``D.safetensors``, ``G_ema.safetensors``: ``state_dict()`` of each network
  (spectral-norm ``u``/``v`` and batch-norm statistics included);
- ``state.pt``: optimizer states, RNG states, data-sampler state, step and monitor history —
  only tensors, dicts, lists, ints, floats and strings, so it loads with
  ``torch.load(weights_only=True)`` and never unpickles code;
- ``config.toml``: the run's resolved config, so a checkpoint directory alone can be sampled;
- ``meta.json`` (optional): a few small values (``step``, ``healthy``) readable without loading
  ``state.pt`` (:func:`load_meta`).

Writing is atomic: every file goes into a hidden temp directory ``.tmp-<name>-<pid>``, each file
is fsynced, the directory is renamed into place and the parent directory fsynced. A crash at any
point leaves either the previous checkpoints untouched plus an ignored temp directory, or the new
checkpoint complete. :func:`list_checkpoints` only returns complete ``step_*`` directories.

Replacing an existing checkpoint (``best``, or a step rewritten after a rollback) first moves it
aside to ``.tmp-old-<name>-<pid>``. If the writer dies before the new one is renamed into place,
that old copy is the only one: the next save or :func:`list_checkpoints` renames it back (once
its writer is no longer running) instead of deleting it with the other temp directories.

Reading: every reader (:func:`load_weights`, :func:`load_state`, :func:`load_meta`,
:func:`load_config`) turns a file that cannot be read or parsed (truncated,
garbage, empty, permission denied) into a one-line :class:`CheckpointReadError` naming the file
and the cause; :func:`load_into` also names the tensors of weights that do not fit the model.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from gankit.config import Config, load_toml, save_toml
from gankit.errors import GankitError, first_names
from gankit.io_utils import FILE_MODE, fsync_dir, fsync_file, process_alive

WEIGHT_FILES = ("G", "D", "G_ema")
STATE_FILE = "state.pt"
CONFIG_FILE = "config.toml"
META_FILE = "meta.json"
CHECKPOINT_FILES = (*(f"{w}.safetensors" for w in WEIGHT_FILES), STATE_FILE, CONFIG_FILE)
"""The files every complete checkpoint holds (``meta.json`` is optional)."""
_STEP_DIR = re.compile(r"^step_(\d{8})$")
_OLD_COPY = re.compile(r"^\.tmp-old-(.+)-(\d+)$")


class CheckpointWriteError(GankitError):
    """Writing a checkpoint failed (e.g. ENOSPC); nothing written before it was touched."""


class CheckpointReadError(GankitError):
    """A checkpoint file cannot be read or parsed (truncated, garbage, empty, unreadable); the
    one-line message names the file and the cause."""


class CheckpointFileMissing(CheckpointReadError, FileNotFoundError):
    """A checkpoint file vanished while it was being read (e.g. pruned by a training run)."""


def damaged(path: Path, why: str) -> CheckpointReadError:
    """The one-line error for checkpoint file ``path`` that cannot be used, because ``why``."""
    return CheckpointReadError(f"{path}: damaged or unreadable checkpoint file ({why})")


def step_dir_name(step: int) -> str:
    return f"step_{step:08d}"


def _writer_gone(pid: int) -> bool:
    """True when process ``pid`` (the writer of a temp dir) is this one or no longer runs."""
    return pid == os.getpid() or not process_alive(pid)


def restore_old_copies(root: Path) -> None:
    """Rename orphaned ``.tmp-old-<name>-<pid>`` back to ``<name>`` when ``<name>`` is missing
    and the writer is gone (it died between the two renames of a replace)."""
    for old in root.glob(".tmp-old-*"):
        m = _OLD_COPY.match(old.name)
        final = root / m.group(1) if m else None
        if final is not None and not final.exists() and _writer_gone(int(m.group(2))):
            try:
                old.rename(final)
            except OSError:  # restored concurrently
                pass


def _is_orphaned_old_copy(path: Path) -> bool:
    m = _OLD_COPY.match(path.name)
    return m is not None and not (path.parent / m.group(1)).exists()


def missing_files(ckpt: Path) -> list[str]:
    """The files of :data:`CHECKPOINT_FILES` that ``ckpt`` lacks."""
    return [n for n in CHECKPOINT_FILES if not (ckpt / n).is_file()]


def is_complete(ckpt: Path) -> bool:
    """True when ``ckpt`` holds every file a checkpoint needs."""
    return ckpt.is_dir() and not missing_files(ckpt)


def save_checkpoint(
    root: str | Path,
    name: str,
    weights: dict[str, dict[str, torch.Tensor]],
    state: dict[str, Any],
    cfg: Config,
    meta: dict[str, Any] | None = None,
) -> Path:
    """Write checkpoint ``root/name`` atomically and return its path.

    Args:
        root: the run's ``checkpoints/`` directory (created if missing).
        name: directory name, ``step_dir_name(step)`` or ``"best"``; an existing one is replaced.
        weights: ``{"G": state_dict, "D": ..., "G_ema": ...}``.
        state: the resumable state (see the module docstring for allowed types).
        cfg: the run's config, written as ``config.toml``.
        meta: small JSON-able values written as ``meta.json`` (if given).
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    restore_old_copies(root)
    # left by an earlier crash: no other writer can be saving here (a run has one writer,
    # which holds its lock), so unlike atomic_write's temp files these need no idle time
    for stale in root.glob(".tmp-*"):
        if not _is_orphaned_old_copy(stale):  # never delete the only copy of a checkpoint
            shutil.rmtree(stale, ignore_errors=True)
    tmp = root / f".tmp-{name}-{os.getpid()}"
    final = root / name
    old: Path | None = None
    try:
        tmp.mkdir()
        for key in WEIGHT_FILES:
            tensors = {k: v.detach().cpu().contiguous().clone() for k, v in weights[key].items()}
            _writing(save_file, tensors, str(tmp / f"{key}.safetensors"))
            os.chmod(tmp / f"{key}.safetensors", FILE_MODE)  # safetensors writes 0600
        _writing(torch.save, state, tmp / STATE_FILE)
        save_toml(cfg, tmp / CONFIG_FILE)
        if meta is not None:
            (tmp / META_FILE).write_text(json.dumps(meta))
        for f in tmp.iterdir():
            fsync_file(f)
        fsync_dir(tmp)
        if final.exists():  # e.g. "best", or a step rewritten after a rollback
            old = root / f".tmp-old-{name}-{os.getpid()}"
            final.rename(old)
        tmp.rename(final)
        if old is not None:  # (a stray file of that name is removed too)
            shutil.rmtree(old) if old.is_dir() else old.unlink()
        fsync_dir(root)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and old.exists() and not final.exists():
            old.rename(final)  # put the previous checkpoint back
        if isinstance(err, (OSError, _WriterError)):  # disk full, quota, permissions, I/O
            cause = _write_cause(err.__cause__ if isinstance(err, _WriterError) else err, root)
            raise CheckpointWriteError(
                f"checkpoint {final} could not be written ({cause}); the checkpoints before it "
                "are intact: make room or fix the directory, then continue with `gankit resume`"
            ) from err
        raise
    return final


class _WriterError(Exception):
    """An error of safetensors or ``torch.save`` while writing a file (its ``__cause__``): they
    report a full disk, a file size limit or an I/O error as their own types, not as OSError."""


def _writing(write: Callable[..., Any], *args: Any) -> None:
    """``write(*args)``, its errors other than ``OSError`` raised as :class:`_WriterError`."""
    try:
        write(*args)
    except (SafetensorError, RuntimeError) as err:
        raise _WriterError from err


def _write_cause(err: BaseException, root: Path) -> str:
    """A one-line cause of a failed checkpoint write: the OS error and its file, or the writer
    library's first line plus the free space left (torch.save's I/O errors do not say)."""
    if isinstance(err, OSError):
        return f"{err.strerror or err}" + (f": {err.filename}" if err.filename else "")
    lines = str(err).strip().splitlines()
    text = (lines[0].strip() if lines else "")[:200] or type(err).__name__
    try:
        free = f"; {shutil.disk_usage(root).free / 2**20:.1f} MiB free there"
    except OSError:
        free = ""
    return f"{type(err).__name__}: {text}{free}"


def list_checkpoints(root: str | Path, complete: bool = True) -> list[Path]:
    """``step_*`` checkpoints under ``root``, oldest first (temp dirs are ignored); only the
    complete ones unless ``complete`` is False (a writer renames a checkpoint into place only
    when it is complete, so an incomplete one lost files afterwards)."""
    root = Path(root)
    if not root.is_dir():
        return []
    restore_old_copies(root)
    found = [
        p
        for p in root.iterdir()
        if _STEP_DIR.match(p.name) and p.is_dir() and (is_complete(p) or not complete)
    ]
    return sorted(found, key=lambda p: p.name)


def checkpoint_step(ckpt: Path) -> int:
    m = _STEP_DIR.match(ckpt.name)
    return int(m.group(1)) if m else -1


def prune_checkpoints(root: str | Path, keep_last: int) -> None:
    """Delete all but the newest ``keep_last`` complete step checkpoints (``keep_last <= 0``:
    keep all), and every ``step_*`` directory older than those kept, complete or not (one left
    half-deleted by a kill). Each is first renamed to a temp name, so that a kill while deleting
    leaves a temp directory (removed by the next save), never a half-deleted ``step_*``."""
    root = Path(root)
    kept = list_checkpoints(root)[-keep_last:] if keep_last > 0 else []
    if not kept:
        return
    for old in sorted(root.iterdir()):
        if _STEP_DIR.match(old.name) and old.name < kept[0].name:
            doomed = root / f".tmp-pruned-{old.name}-{os.getpid()}"
            try:
                old.rename(doomed)
            except OSError:  # pruned concurrently
                continue
            shutil.rmtree(doomed, ignore_errors=True)


def _probe(path: Path) -> OSError | None:
    """The error that opening and reading ``path`` gives, if any (safetensors reports every
    I/O error, permission denied included, as "No such file or directory")."""
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as err:
        return err
    return None


def short_cause(err: BaseException) -> str:
    """A short, one-line cause of a read failure (torch appends advice after a first sentence,
    safetensors prefixes ``Error while deserializing header:``)."""
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    if isinstance(err, EOFError):
        return "unexpected end of file"
    if str(err).startswith("Weights only load failed") and err.__context__ is not None:
        return f"not a weights-only torch file: {short_cause(err.__context__)}"
    lines = str(err).strip().splitlines()
    text = lines[0].strip() if lines else type(err).__name__
    text = text.removeprefix("Error while deserializing header: ").split(". ")[0].rstrip(".")
    return text[:200] or type(err).__name__


def read_error(path: Path, err: BaseException) -> CheckpointReadError:
    """The one-line error for checkpoint file ``path`` that failed to load with ``err``."""
    if isinstance(err, OSError):
        probed = _probe(path)
        if isinstance(probed, FileNotFoundError):
            return CheckpointFileMissing(
                f"{path}: checkpoint file is missing (removed while it was being read?)"
            )
        err = probed or err
    elif path.is_file() and path.stat().st_size == 0:
        return damaged(path, "empty file")
    return damaged(path, short_cause(err))


def _reading(path: Path, load: Callable[[], Any]) -> Any:
    """``load()``, with any failure to read or parse ``path`` as a :class:`CheckpointReadError`
    (out-of-memory, interrupts and exits pass through)."""
    try:
        return load()
    except (GankitError, torch.cuda.OutOfMemoryError):
        raise
    except Exception as err:
        raise read_error(path, err) from err


def load_weights(ckpt: Path, which: str, device: str | torch.device = "cpu") -> dict:
    """``state_dict`` of network ``which`` (``G``, ``D`` or ``G_ema``) from ``ckpt``.

    Raises:
        CheckpointReadError: the file is truncated, garbage, empty or unreadable, or holds
            NaN/Inf values (a safetensors file has no checksum: damage inside its data).
    """
    path = Path(ckpt) / f"{which}.safetensors"
    weights = _reading(path, lambda: load_file(str(path), device=str(device)))
    bad = [k for k, t in weights.items() if t.is_floating_point() and not t.isfinite().all()]
    if bad:  # training stops before a non-finite step is saved: the file was damaged
        raise damaged(path, f"non-finite values in {first_names(bad)}")
    return weights


def weights_mismatch(
    found: Mapping[str, Sequence[int]], expected: Mapping[str, Sequence[int]]
) -> str | None:
    """How tensor shapes ``found`` (a file) differ from ``expected`` (a model), at most three
    names per kind, or ``None`` when they match."""
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    shapes = [
        f"{k} {tuple(found[k])} in the file, {tuple(expected[k])} in the model"
        for k in expected
        if k in found and tuple(found[k]) != tuple(expected[k])
    ]
    parts = []
    for label, names in (("missing", missing), ("unexpected", unexpected), ("shape", shapes)):
        if names:
            parts.append(f"{label}: {first_names(names)}")
    return "; ".join(parts) or None


def load_into(
    net: torch.nn.Module,
    ckpt: Path,
    which: str,
    device: str | torch.device = "cpu",
    built_from: Path | None = None,
) -> None:
    """Load ``which.safetensors`` of ``ckpt`` into ``net``, or raise a one-line
    :class:`GankitError` naming the file and the first missing, unexpected or differently
    shaped tensors (weights of another model than ``net``, built from the config file
    ``built_from``: by default the checkpoint's own ``config.toml``)."""
    weights = load_weights(ckpt, which, device)
    expected = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    differs = weights_mismatch({k: tuple(v.shape) for k, v in weights.items()}, expected)
    if differs:
        raise GankitError(
            f"{Path(ckpt) / f'{which}.safetensors'}: weights do not match the model of "
            f"{built_from or Path(ckpt) / CONFIG_FILE} ({differs})"
        )
    net.load_state_dict(weights)


def load_config(ckpt: Path) -> Config:
    """The ``config.toml`` of ``ckpt`` (a one-line error when it is unreadable or invalid;
    :class:`CheckpointFileMissing` when it is gone, as for the other files)."""
    path = Path(ckpt) / CONFIG_FILE
    try:
        return _reading(path, lambda: load_toml(path))
    except GankitError:
        if path.exists():
            raise
        raise read_error(path, FileNotFoundError(path)) from None


def load_meta(ckpt: Path) -> dict[str, Any]:
    """``meta.json`` of ``ckpt`` (``{}`` for a checkpoint written without one).

    Raises:
        CheckpointReadError: it is unreadable, not JSON or not a JSON object.
    """
    path = Path(ckpt) / META_FILE
    if not path.is_file():
        return {}
    meta = _reading(path, lambda: json.loads(path.read_text(encoding="utf-8")))
    if not isinstance(meta, dict):
        raise damaged(path, "expected a JSON object")
    return meta


def load_state(ckpt: Path) -> dict[str, Any]:
    """The resumable state of ``ckpt`` (``torch.load(weights_only=True)``, on CPU).

    Raises:
        CheckpointReadError: ``state.pt`` is truncated, garbage, empty, unreadable or not a dict.
    """
    path = Path(ckpt) / STATE_FILE
    state = _reading(path, lambda: torch.load(path, map_location="cpu", weights_only=True))
    if not isinstance(state, dict):
        raise damaged(path, "expected a dict of training state")
    return state
