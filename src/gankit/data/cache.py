"""``data.cache``: write the preprocessed uint8 arrays once, reuse them on the next run.

``PATH.npy`` (memory-mapped on reuse; labels in ``PATH.labels.npy``, metadata in
``PATH.meta.json``) or ``PATH.h5``/``PATH.hdf5`` (needs h5py). The metadata records the
resolution, channel count and source; a cache whose metadata differs from the request, or that
cannot be read, is rebuilt (with a log message) instead of being trusted.
"""

from __future__ import annotations

import logging
from pathlib import Path

from gankit.data.arrays import StoredArrays, read_h5, read_npy, to_dataset, write_h5, write_npy
from gankit.data.dataset import ImageDataset
from gankit.errors import GankitError

log = logging.getLogger(__name__)

CACHE_SUFFIXES = (".npy", ".h5", ".hdf5")


def check_cache_path(path: Path) -> None:
    if path.suffix.lower() not in CACHE_SUFFIXES:
        raise GankitError(
            f"data.cache = '{path}': expected a file name ending in {', '.join(CACHE_SUFFIXES)}"
        )


def _read(path: Path) -> StoredArrays:
    return read_npy(path) if path.suffix.lower() == ".npy" else read_h5(path)


def load_cache(path: Path, resolution: int, channels: int, source: str) -> ImageDataset | None:
    """The cached dataset if ``path`` exists and matches the request, else ``None``."""
    check_cache_path(path)
    if not path.is_file():
        return None
    try:
        stored = _read(path)
    except GankitError as err:
        log.warning("data.cache: %s; rebuilding it", err)
        return None
    wanted = {"resolution": resolution, "channels": channels, "source": source}
    found = {key: stored.meta.get(key) for key in wanted}
    if found != wanted or stored.x.shape[1:] != (channels, resolution, resolution):
        log.info("data.cache %s was made for %s, need %s; rebuilding it", path, found, wanted)
        return None
    return to_dataset(stored, path, resolution, channels)


def save_cache(path: Path, dataset: ImageDataset, source: str) -> None:
    """Write ``dataset`` (read from ``source``) to ``path`` atomically, with the metadata that
    :func:`load_cache` checks."""
    check_cache_path(path)
    meta = {
        "resolution": dataset.resolution,
        "channels": dataset.channels,
        "source": source,
        "class_names": dataset.class_names,
        "skipped": dataset.skipped,
    }
    stored = StoredArrays(dataset.x, dataset.y, meta)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        (write_npy if path.suffix.lower() == ".npy" else write_h5)(path, stored)
    except OSError as err:
        raise GankitError(f"data.cache: cannot write {path} ({err})") from None
