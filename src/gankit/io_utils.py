"""Small file helpers shared by the run directory, the data cache and the metric and classifier
caches."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_write", "fsync_dir", "fsync_file", "process_alive"]


def _umask() -> int:
    """The process's umask: from ``/proc`` (Linux), else by setting it and putting it back
    (which briefly changes it for every thread)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()
"""Mode of the files written here: what ``open`` would give (mkstemp's temporary files are
0600, readable by their owner only)."""


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (as far as this process can tell; always on Windows,
    where ``os.kill`` would not just probe it)."""
    if os.name == "nt":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):  # e.g. PermissionError: alive, someone else's
        pass
    return True


def fsync_file(path: Path) -> None:
    """Flush ``path``'s data to the disk (written by a library that does not fsync)."""
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def fsync_dir(path: Path) -> None:
    """Flush folder ``path``'s entries (files created or renamed in it) to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


STALE_TEMP_S = 600
"""A temporary file is left alone for this long after its last write even when no process
here has its pid: on a folder shared between machines it may be another machine's write."""


def _remove_stale_temp_files(path: Path) -> None:
    """Remove the temporary files of ``path`` whose writer no longer runs (it was killed): no
    process here has its pid, and it was not written to for :data:`STALE_TEMP_S`."""
    pattern = re.compile(re.escape(f".{path.name}.") + r"(\d+)\.[^.]+\.tmp")
    idle_since = time.time() - STALE_TEMP_S
    with contextlib.suppress(OSError), os.scandir(path.parent) as entries:
        for entry in entries:
            m = pattern.fullmatch(entry.name)
            if m and not process_alive(int(m.group(1))):
                with contextlib.suppress(OSError):
                    if entry.stat().st_mtime < idle_since:
                        os.unlink(entry.path)


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None]) -> Path:
    """Write ``path`` atomically: ``write(f)`` fills a temporary file ``.NAME.<pid>.<random>.tmp``
    in the same folder, which is flushed, fsynced and ``os.replace``-d onto ``path`` (removed if
    ``write`` fails). Readers see the old file or the complete new one, never a partial one. The
    temporary files of ``path`` left by killed writers are removed first. Returns ``path``."""
    path = Path(path)
    _remove_stale_temp_files(path)
    try:
        fd, tmp = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp"
        )
    except OSError as err:  # named after ``path``, not the temp file it could not create
        raise type(err)(err.errno, err.strerror, str(path)) from err
    try:
        os.chmod(tmp, FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError) and err.filename is None and err.errno is not None:
            # e.g. ENOSPC from write(): name the file the user asked for
            raise type(err)(err.errno, err.strerror, str(path)) from err
        raise
    return path
