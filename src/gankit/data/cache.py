"""``data.cache``: the preprocessed uint8 arrays written once and reused on the next run.

``PATH.npy`` (memory-mapped on reuse; labels in ``PATH.labels.npy``, metadata in
``PATH.meta.json``, both written before ``PATH`` itself) or ``PATH.h5``/``PATH.hdf5`` (needs
h5py; read into memory; metadata inside). The metadata records the resolution, channel count,
source, class names, image count and the skipped files; a cache made for another request, or
whose files do not read back, is rebuilt (with a log message) instead of being trusted. A file
at the cache path without gankit's metadata (and without an unfinished build beside it) is not
gankit's and is never replaced: an error names it.
Builds of one cache file are serialised by a lock file ``.PATH.lock`` (POSIX ``flock``), so
processes that start together (``torchrun``) build it once and the others wait for it.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gankit.data.arrays import (
    StoredArrays,
    import_h5py,
    npy_siblings,
    read_h5,
    read_npy,
    to_dataset,
)
from gankit.data.cache_writer import create_writer, partial_path, progress_path, remove_cache
from gankit.data.dataset import ImageDataset
from gankit.errors import GankitError

try:
    import fcntl
except ImportError:  # Windows: builds of one cache are not serialised
    fcntl = None

log = logging.getLogger(__name__)

CACHE_SUFFIXES = (".npy", ".h5", ".hdf5")
_WRITE_BLOCK = 1024  # images per write when saving an in-memory data set


def check_cache_path(path: Path, name: str = "data.cache") -> None:
    """``path`` must end in ``.npy``, ``.h5`` or ``.hdf5`` and not be a folder; the error names
    ``name``."""
    if path.suffix.lower() not in CACHE_SUFFIXES:
        raise GankitError(
            f"{name} = '{path}': expected a file name ending in {', '.join(CACHE_SUFFIXES)}"
        )
    if path.is_dir():
        raise GankitError(f"{name} = '{path}': is a folder; expected a cache file to write")


def _read(path: Path) -> StoredArrays:
    return read_npy(path) if path.suffix.lower() == ".npy" else read_h5(path)


_META_KEYS = frozenset(("resolution", "channels", "source", "images"))
"""Keys of :func:`cache_meta` that data stored by other means does not hold together."""


def _written_by_gankit(path: Path, stored: StoredArrays | None) -> bool:
    """Whether the file ``path`` (read as ``stored``, ``None`` if unreadable) is a cache gankit
    wrote: an unfinished build lies beside it, or its metadata (a ``.npy``'s ``meta.json``,
    written before the ``.npy`` is renamed into place; an HDF5 file's attributes) is a build's.
    A user's own ``X.npy`` with ``X.labels.npy`` and a ``meta.json`` of class names is not."""
    if partial_path(path).exists() or progress_path(path).exists():
        return True
    if path.suffix.lower() != ".npy":
        return stored is not None and _META_KEYS <= stored.meta.keys()
    try:
        meta = json.loads(npy_siblings(path)[2].read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and _META_KEYS <= meta.keys()


def load_cache(path: Path, resolution: int, channels: int, source: str) -> ImageDataset | None:
    """The cached dataset if ``path`` is complete and matches the request, else ``None``.

    Raises:
        GankitError: ``path`` is a file gankit did not write (it is never replaced).
    """
    check_cache_path(path)
    if not path.is_file():
        return None
    if path.suffix.lower() != ".npy":
        import_h5py(path)  # without h5py the file cannot be told from a foreign one
    try:
        stored, problem = _read(path), None
    except GankitError as err:
        stored, problem = None, err
    if not _written_by_gankit(path, stored):
        raise GankitError(
            f"{path}: exists and is not a gankit data cache; choose another path or remove it"
        )
    if stored is None:
        log.warning("data.cache: %s; rebuilding it", problem)
        return None
    wanted = {"resolution": resolution, "channels": channels, "source": source}
    found = {key: stored.meta.get(key) for key in wanted}
    if found != wanted or stored.x.shape[1:] != (channels, resolution, resolution):
        log.info("data.cache %s was made for %s, need %s; rebuilding it", path, found, wanted)
        return None
    return to_dataset(stored, path, resolution, channels)


def cache_meta(
    resolution: int,
    channels: int,
    source: str,
    class_names: list[str],
    skipped: int,
    images: int,
    **extra: Any,
) -> dict[str, Any]:
    """The metadata of a cache: what :func:`load_cache` checks (``resolution``, ``channels``,
    ``source``), what :func:`~gankit.data.arrays.to_dataset` reads back (``class_names``,
    ``skipped``), the image count and any ``extra`` fields."""
    return {"resolution": resolution, "channels": channels, "source": source,
            "class_names": class_names, "skipped": skipped, "images": images, **extra}  # fmt: skip


def save_cache(path: Path, dataset: ImageDataset, source: str) -> None:
    """Write the in-memory ``dataset`` (read from ``source``) to ``path`` block by block, with
    the metadata that :func:`load_cache` checks written last."""
    check_cache_path(path)
    ds = dataset
    meta = cache_meta(ds.resolution, ds.channels, source, ds.class_names, ds.skipped, len(ds))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_cache(path)
        writer = create_writer(path, tuple(ds.x.shape))
        try:
            for start in range(0, len(ds), _WRITE_BLOCK):
                writer.write(ds.x[start : start + _WRITE_BLOCK])
            writer.finish(ds.y, meta)
        finally:
            writer.close()
            partial_path(path).unlink(missing_ok=True)
    except OSError as err:
        raise GankitError(f"data.cache: cannot write {path} ({err})") from None


def lock_path(path: Path) -> Path:
    """``DIR/NAME`` → ``DIR/.NAME.lock``."""
    return path.with_name(f".{path.name}.lock")


@contextlib.contextmanager
def cache_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``.PATH.lock`` (waiting, with a log line, if another process
    holds it); a no-op where ``fcntl`` is missing."""
    if fcntl is None:
        yield
        return
    try:
        handle = open(lock_path(path), "a+b")
    except OSError as err:
        reason = err.strerror or err
        raise GankitError(
            f"{path}: cannot write the cache there ({lock_path(path)}: {reason})"
        ) from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.warning("%s: another process is building this cache; waiting for it", path)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
