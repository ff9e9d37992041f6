"""The run directory: what a training run writes, and how to find and load what it wrote.

Layout of ``RUN/`` (written by :func:`gankit.train`, read by every other command)::

    config.toml                    the resolved config (``resume`` reads it)
    checkpoints/step_XXXXXXXX/     G, D, G_ema .safetensors + state.pt + config.toml
                                   (:mod:`gankit.checkpoint`)
    checkpoints/best/              the lowest FID-like eval value (``eval.every > 0``)
    samples/step_XXXXXXXX.png      fixed-z snapshot grids
    metrics.jsonl                  one JSON object per line: training logs, eval rows, warnings
    tb/                            TensorBoard events
    plots/                         written by ``gankit inspect``

:func:`load_generator` (``gankit.load``) and :func:`load_discriminator` take a run directory
(its latest checkpoint) or one checkpoint directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gankit import checkpoint as ckpt_io
from gankit.config import Config, keys_set_in, load_toml, model_differences
from gankit.device import resolve_device
from gankit.errors import GankitError, check_bool, check_path
from gankit.models import build

try:
    import fcntl
except ImportError:  # Windows: no flock; the writer lock is not taken there
    fcntl = None

__all__ = ["RunDir", "check_same_model", "find_checkpoint", "load_discriminator", "load_generator"]

CHECKPOINTS = "checkpoints"
METRICS_FILE = "metrics.jsonl"
BEST = "best"
READ_TRIES = 3
"""Loading a run's latest checkpoint picks the newest again this many times in all when a
training run prunes the one being read."""


def as_path(value: object, param: str) -> Path:
    """A run or checkpoint directory argument as a Path (:func:`gankit.errors.check_path`)."""
    return check_path(value, param, "a run or checkpoint directory path")


class RunDir:
    """Paths and files of one run directory (nothing is created by the constructor).

    Use :meth:`create` for a new run (checks it is writable, refuses one with checkpoints) and
    :meth:`open` for an existing one (checks it has a ``config.toml``).
    """

    def __init__(self, path: str | Path):
        self.path = as_path(path, "run_dir")

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    # -- paths -------------------------------------------------------------------------------
    @property
    def config_file(self) -> Path:
        return self.path / ckpt_io.CONFIG_FILE

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS

    @property
    def samples(self) -> Path:
        return self.path / "samples"

    @property
    def metrics_file(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def tb(self) -> Path:
        return self.path / "tb"

    @property
    def plots(self) -> Path:
        return self.path / "plots"

    def sample_grid(self, step: int) -> Path:
        """``samples/step_XXXXXXXX.png``: the snapshot grid of G step ``step``."""
        return self.samples / f"{ckpt_io.step_dir_name(step)}.png"

    # -- creating and opening ----------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path) -> RunDir:
        """A new run at ``path``: created (with parents) and checked writable.

        Raises:
            GankitError: it cannot be created or written, it already holds checkpoints
                (continue those with ``resume``), or another tool's ``config.toml`` or
                ``metrics.jsonl``.
        """
        run = cls(path).ensure_writable()
        if run.list_checkpoints():
            raise GankitError(
                f"run dir {run.path} already has checkpoints; continue it with `gankit resume "
                f"{run.path}` (gankit.resume) or choose another run directory"
            )
        run._check_no_foreign_files()
        return run

    def _check_no_foreign_files(self) -> None:
        """Refuse a ``config.toml`` that is not a gankit config, or a ``metrics.jsonl`` without
        a ``config.toml`` (a run writes that first): another tool's files, which a new run
        would overwrite."""
        if self.config_file.exists():
            try:
                self.load_config()
            except GankitError as err:
                raise GankitError(
                    f"run dir {self.path} holds a config.toml that is not a gankit config "
                    f"({err}); choose another run directory or remove that file"
                ) from None
        elif self.metrics_file.exists():
            raise GankitError(
                f"run dir {self.path} holds a metrics.jsonl but no config.toml, so not a gankit "
                "run's log; choose another run directory or remove that file"
            )

    @classmethod
    def open(cls, path: str | Path) -> RunDir:
        """An existing run; raises a one-line :class:`GankitError` without ``config.toml``."""
        run = cls(path)
        if run.path.parent.name == CHECKPOINTS and ckpt_io.is_complete(run.path):
            raise GankitError(
                f"{run.path}: a checkpoint, not a run directory; pass the run directory "
                f"{run.path.parent.parent}"
            )
        if run.config_file.exists() and not run.config_file.is_file():
            raise GankitError(f"{run.config_file}: not a file (expected the run's config)")
        if not run.config_file.is_file():
            raise GankitError(f"{run.path}: not a run directory (no config.toml)")
        return run

    @contextlib.contextmanager
    def writer(self, enabled: bool = True) -> Iterator[RunDir]:
        """Hold the run's writer lock for the block: an exclusive ``flock`` on the directory
        itself, taken at once or not at all, so that two ``train``/``resume`` never write one
        run. The kernel drops it when the holder exits, even on SIGKILL (no stale lock).
        ``enabled=False`` (the ranks of a DDP run that do not write) takes nothing, but refuses
        a run whose lock a process of another job holds (:func:`_same_job`; else such a rank
        would wait for a main rank that has already stopped); a system or file system without
        ``flock`` (Windows, some network mounts) takes nothing.

        Raises:
            GankitError: another process holds it (the message names its pid where known).
        """
        holder = None if enabled else self.writer_pid()
        if holder is not None and not _same_job(holder):
            raise self._busy(holder)
        if not enabled or fcntl is None:
            yield self
            return
        fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise self._busy(_flock_holder(fd)) from None
            except OSError:  # a file system without flock (some network mounts): no lock
                pass
            yield self
        finally:
            os.close(fd)  # releases the lock

    def _busy(self, holder: int | None) -> GankitError:
        return GankitError(
            f"run dir {self.path} is being written by another gankit process"
            f"{f' (pid {holder})' if holder else ''}; wait for it to end or stop it, "
            "or choose another run directory"
        )

    def writer_pid(self) -> int | None:
        """The pid of the process holding the run's writer lock (a ``train``/``resume`` at
        work), read from ``/proc/locks`` without touching the lock; ``None`` when nobody holds
        it, the directory is missing, or the system cannot tell (no ``/proc/locks``)."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            return None
        try:
            return _flock_holder(fd)
        finally:
            os.close(fd)

    def ensure_writable(self, hint: str = "choose another run directory") -> RunDir:
        """Create the directory (and parents) and check it is writable, or raise one line
        ending with ``hint`` (what the user can do)."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            # a name of its own per process: the ranks of a DDP run probe the same directory
            with tempfile.TemporaryFile(dir=self.path, prefix=".gankit-write-test-"):
                pass
        except OSError as err:
            raise GankitError(
                f"run dir {self.path}: cannot create or write it ({err.strerror or err}); {hint}"
            ) from None
        return self

    def load_config(self) -> Config:
        """The run's ``config.toml`` (:func:`gankit.config.load_toml`: a one-line
        :class:`~gankit.config.ConfigError` when it is missing, unreadable or invalid)."""
        return load_toml(self.config_file)

    # -- checkpoints -------------------------------------------------------------------------
    def list_checkpoints(self) -> list[Path]:
        """Complete ``checkpoints/step_*`` directories, oldest first."""
        return ckpt_io.list_checkpoints(self.checkpoints)

    def latest_checkpoint(self) -> Path | None:
        ckpts = self.list_checkpoints()
        return ckpts[-1] if ckpts else None

    def best_checkpoint(self) -> Path | None:
        """``checkpoints/best`` if complete (written by the eval hook), else ``None`` (a ``best``
        moved aside by a replace that was killed is put back first)."""
        if self.checkpoints.is_dir():
            ckpt_io.restore_old_copies(self.checkpoints)
        best = self.checkpoints / BEST
        return best if ckpt_io.is_complete(best) else None

    # -- metrics.jsonl -----------------------------------------------------------------------
    def read_metrics(self) -> list[dict[str, Any]]:
        """Records of ``metrics.jsonl`` in file order; lines that are not a record
        (:meth:`parse_record`: a truncated last line, bytes that are not UTF-8) are skipped.

        Raises:
            GankitError: there is no ``metrics.jsonl``, or it is not a regular file.
        """
        if not self.metrics_file.is_file():
            if self.metrics_file.exists():  # a FIFO would block, a directory cannot be read
                raise GankitError(f"{self.metrics_file}: not a regular file")
            raise GankitError(f"{self.path}: no metrics.jsonl; expected a gankit run directory")
        lines = self.metrics_file.read_text(encoding="utf-8", errors="replace").splitlines()
        return [r for r in map(self.parse_record, lines) if r is not None]

    def append_metrics(self, record: dict[str, Any]) -> None:
        """Append one JSON line to ``metrics.jsonl`` (for writers other than the training
        monitor, which keeps the file open), on a line of its own after a cut-off last line.

        Raises:
            OSError: it cannot be written, or it exists and is not a regular file.
        """
        if self.metrics_file.exists() and not self.metrics_file.is_file():
            raise OSError("not a regular file")  # opening a FIFO would block
        with open(self.metrics_file, "a+b") as f:
            end = f.seek(0, os.SEEK_END)
            cut_off = end > 0 and f.seek(end - 1) >= 0 and f.read(1) != b"\n"
            f.write(("\n" * cut_off + json.dumps(record) + "\n").encode())

    @staticmethod
    def parse_record(line: str) -> dict[str, Any] | None:
        """One ``metrics.jsonl`` line as a record (a JSON object), or ``None`` for a line that
        cannot be used: not JSON, not an object, nested too deeply, or holding an integer too
        large for a float (as plots and TensorBoard need)."""

        def small_int(text: str) -> int:
            value = int(text)
            float(value)  # OverflowError when too large
            return value

        try:
            record = json.loads(line, parse_int=small_int)
        except (ValueError, RecursionError, OverflowError):
            return None
        return record if isinstance(record, dict) else None

    @classmethod
    def of_checkpoint(cls, ckpt: str | Path) -> RunDir | None:
        """The run a checkpoint directory belongs to (``RUN/checkpoints/NAME``), or ``None``
        for a checkpoint directory outside a run."""
        ckpt = Path(ckpt)
        if ckpt.parent.name != CHECKPOINTS:
            return None
        return cls(ckpt.parent.parent)


_JOB_VARIABLES = (b"MASTER_ADDR", b"MASTER_PORT", b"TORCHELASTIC_RUN_ID")
"""What the launcher (torchrun) gives every process of one job alike."""


def _same_job(pid: int) -> bool:
    """Whether process ``pid`` is of this process's multi-process job: started by the same
    parent, or with the same launcher variables in its start-up environment (another node's
    launcher). True where that cannot be read: only a process known to be another's counts."""

    def start_up(which: int | str) -> dict[bytes, bytes]:
        items = Path(f"/proc/{which}/environ").read_bytes().split(b"\0")
        return dict(item.split(b"=", 1) for item in items if b"=" in item)

    try:
        parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        theirs, ours = start_up(pid), start_up("self")
    except (OSError, ValueError, IndexError):
        return True
    return parent == os.getppid() or all(theirs.get(k) == ours.get(k) for k in _JOB_VARIABLES)


def _flock_holder(fd: int) -> int | None:
    """The pid holding a ``flock`` on the file of ``fd``, from ``/proc/locks`` (Linux), or
    ``None`` where it cannot be read."""
    st = os.fstat(fd)
    inode = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as f:
            for line in f:
                fields = line.split()
                if len(fields) > 5 and fields[1] == "FLOCK" and fields[5] == inode:
                    return int(fields[4])
    except (OSError, ValueError):
        pass
    return None


def find_checkpoint(source: str | Path) -> Path:
    """Resolve a run directory (→ its latest checkpoint) or a checkpoint directory.

    Raises:
        GankitError: ``source`` is missing, or is neither a run with a complete checkpoint nor a
            complete checkpoint directory.
    """
    source = as_path(source, "source")
    if source.parent.name == CHECKPOINTS and source.parent.is_dir():
        ckpt_io.restore_old_copies(source.parent)  # e.g. best, replaced by a killed writer
    if not source.exists():
        raise GankitError(f"{source}: no such run or checkpoint directory")
    if ckpt_io.is_complete(source):
        return source
    missing = ckpt_io.missing_files(source)
    present = set(ckpt_io.CHECKPOINT_FILES) - set(missing) - {ckpt_io.CONFIG_FILE}
    if source.is_dir() and present:  # weights or state: a checkpoint, not a run directory
        raise GankitError(f"{source}: incomplete checkpoint directory (no {', '.join(missing)})")
    latest = RunDir(source).latest_checkpoint()
    steps = sorted((source / CHECKPOINTS).glob("step_*")) if source.is_dir() else []
    if latest is None and steps:  # all incomplete: name the newest and what it lacks
        lacks = ", ".join(ckpt_io.missing_files(steps[-1]))
        raise GankitError(
            f"{source}: no complete checkpoint; the newest, {steps[-1].name}, has no {lacks}"
        )
    if latest is None:
        raise GankitError(
            f"{source}: expected a run directory with checkpoints/step_*/ or a checkpoint "
            "directory holding G.safetensors, G_ema.safetensors and state.pt; found none"
        )
    newer = [  # (a complete one is new since the listing above: training runs)
        p
        for p in steps
        if ckpt_io.checkpoint_step(p) > ckpt_io.checkpoint_step(latest)
        and not ckpt_io.is_complete(p)
    ]
    if newer:  # a writer renames only complete checkpoints into place: these were damaged
        bad = newer[-1]
        lacks = f"no {', '.join(ckpt_io.missing_files(bad))}" if bad.is_dir() else "not a folder"
        print(
            f"gankit: warning: {len(newer)} newer checkpoint(s) are incomplete (newest: "
            f"{bad.name}, {lacks}); using {latest.name}",
            file=sys.stderr,
        )
    return latest


def check_same_model(run: RunDir, ckpt: Path, cfg: Config) -> None:
    """Refuse checkpoint ``ckpt`` of ``run`` whose config ``cfg`` holds another model than the
    run's ``config.toml`` (e.g. copied in from another run), naming the differing keys. A
    checkpoint directory passed by itself is used with its own config, and so is the run's
    latest when the run's ``config.toml`` does not load (the commands that need it say so)."""
    try:
        differing = model_differences(cfg, run.load_config())
        missing = [k for k in differing if k not in keys_set_in(run.config_file)]
    except GankitError:
        return
    if missing:  # (the file's default fills the gap, so it reads as another model)
        raise GankitError(
            f"{run.config_file}: no {', '.join(missing)} (cut short?); restore it, e.g. from "
            f"{ckpt / ckpt_io.CONFIG_FILE}, and change settings by editing their values"
        )
    if differing:
        raise GankitError(
            f"{ckpt}: its model differs from the run's {run.config_file} ({', '.join(differing)});"
            " a checkpoint of another run? pass the checkpoint directory itself to use it"
        )


def _load(source: str | Path, which: str, index: int, device: str | torch.device) -> nn.Module:
    source = as_path(source, "source")
    for attempt in range(READ_TRIES):
        ckpt = find_checkpoint(source)
        try:
            cfg = ckpt_io.load_config(ckpt)
            net = build(cfg.model, init=False)[index]  # weights are loaded next
            ckpt_io.load_into(net, ckpt, which)  # one line for a damaged file or another model
            break
        except ckpt_io.CheckpointFileMissing:
            # a run's latest checkpoint pruned by its training between listing and reading:
            # take the newest again (a checkpoint named by the caller is not replaced)
            if ckpt == source or attempt == READ_TRIES - 1:
                raise
    if ckpt != source:
        check_same_model(RunDir(source), ckpt, cfg)
    net = net.to(resolve_device(device)).eval().requires_grad_(False)
    net.config, net.checkpoint = cfg, ckpt
    return net


def load_generator(
    source: str | Path, device: str | torch.device = "cpu", ema: bool = True
) -> nn.Module:
    """The generator of a run directory (latest checkpoint) or of one checkpoint directory.

    Args:
        source: ``RUN`` or ``RUN/checkpoints/step_XXXXXXXX`` (or ``.../best``).
        device: ``cpu``, ``cuda``, ``auto`` or a torch device.
        ema: the EMA weights (default) or the raw G weights.

    Returns:
        ``G`` in eval mode, ``G(z (B, dim_z), y (B,)) -> (B, C, H, W)`` in [-1, 1], with
        ``G.config`` the run's Config and ``G.checkpoint`` the checkpoint directory read (a
        run's latest is picked again when training prunes it during the read).

    Raises:
        GankitError: as :func:`find_checkpoint`; a damaged or unreadable checkpoint file, or
            weights that do not fit the model of the checkpoint's ``config.toml`` (one line
            naming the file).
    """
    return _load(source, "G_ema" if check_bool("ema", ema) else "G", 0, device)


def load_discriminator(source: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """The discriminator of a run directory or checkpoint, in eval mode, with ``D.config`` and
    ``D.checkpoint`` (as :func:`load_generator`): ``D(x (B, C, H, W), y (B,)) -> (B,)`` logits.

    Raises:
        GankitError: as :func:`find_checkpoint`; a checkpoint with generator weights but no
            ``D.safetensors`` is named as such.
    """
    source = as_path(source, "source")
    try:
        return _load(source, "D", 1, device)
    except GankitError:
        generator_only = [
            d
            for d in (source, *sorted(source.glob("checkpoints/step_*")))
            if (d / "G_ema.safetensors").is_file() and not (d / "D.safetensors").is_file()
        ]
        if generator_only:
            raise GankitError(
                f"{generator_only[-1]}: no D.safetensors (discriminator weights); expected a "
                "training checkpoint with G, D and G_ema"
            ) from None
        raise
