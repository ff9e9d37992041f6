"""On-disk cache of reference features: ``$GANKIT_CACHE/stats/<key>.npz``.

``GANKIT_CACHE`` defaults to ``~/.cache/gankit``. Its sub-folders: ``inception/`` (the FID
Inception weights, placed there by the user), ``stats/`` (reference features, this module) and
``classifiers/`` (gankit's offline classifiers, :mod:`gankit.metrics.classifier`).

A reference entry holds every array the feature extractors produced for the reference images
(e.g. Inception ``pool3``/``logits``) plus the labels, so that FID, KID, PRDC, intra-class FID
can all be computed from one pass over the data. The key hashes the data source, resolution,
number of images and the feature extractor's id (which names the weights and the protocol).
An entry that cannot be used (damaged, other arrays) is logged and recomputed; one that cannot
be written is logged and skipped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from gankit.io_utils import atomic_write

log = logging.getLogger(__name__)


def cache_root() -> Path:
    """``$GANKIT_CACHE`` or ``~/.cache/gankit``."""
    return Path(os.environ.get("GANKIT_CACHE") or Path.home() / ".cache" / "gankit")


def cache_key(**fields: object) -> str:
    """Stable 16-hex-digit key of keyword fields (order-independent)."""
    text = json.dumps(fields, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


DIGEST_ROWS = 64


def data_digest(x: Any, y: Any, source: str = "") -> str:
    """A fingerprint of a data set's contents for cache keys: the shape of ``x (N, ...)``, every
    label of ``y (N,)``, :data:`DIGEST_ROWS` evenly spaced rows of ``x`` and, when ``source``
    names a file, its size and modification time. A data file replaced by other images of the
    same size and count gets another key (its path alone would not); the rows are few enough
    to read from a memory map or an HDF5 file at once. (An image folder edited in place keeps
    its key unless a sampled image or a label changed.)"""
    n = len(x)
    rows = np.unique(np.linspace(0, n - 1, min(n, DIGEST_ROWS)).round().astype(np.int64))
    stat = os.stat(source) if source and os.path.isfile(source) else None
    file = [stat.st_size, stat.st_mtime_ns] if stat is not None else None
    h = hashlib.sha256(json.dumps([list(x.shape), file]).encode())
    h.update(np.ascontiguousarray(np.asarray(y, dtype=np.int64)).tobytes())
    h.update(np.ascontiguousarray(x[rows]).tobytes())
    return h.hexdigest()[:16]


def stats_path(key: str) -> Path:
    return cache_root() / "stats" / f"{key}.npz"


def discard_entry(path: Path, problem: str) -> None:
    """Log in one line that the cache entry ``path`` cannot be used and will be recomputed."""
    log.warning("eval cache %s: %s; recomputing it", path, problem)


def write_entry(path: Path, write: Callable[[BinaryIO], None]) -> Path | None:
    """Write a cache entry atomically (:func:`gankit.io_utils.atomic_write`) and return its
    path; where it cannot be written (a read-only cache, a folder in its place) log that and
    return ``None``: the caller goes on without it."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return atomic_write(path, write)
    except OSError as err:
        log.warning("eval cache %s: not written (%s)", path, err.strerror or err)
        return None


def load_reference(
    key: str, names: Sequence[str] = (), rows: int | None = None
) -> dict[str, np.ndarray] | None:
    """The cached arrays for ``key``; ``None`` if there is no entry, or (logged) if it cannot be
    used: unreadable, without one of ``names``, or holding an array that is not finite numbers
    or (given ``rows``) has another number of rows."""
    path = stats_path(key)
    if not path.is_file():
        return None
    try:
        with np.load(path) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        return discard_entry(path, f"unreadable ({type(err).__name__}: {err})")
    missing = [name for name in names if name not in arrays]
    if missing:
        return discard_entry(path, f"no array {', '.join(missing)}")
    for name, a in arrays.items():
        if a.dtype.kind not in "iuf" or not np.isfinite(a).all():
            return discard_entry(path, f"{name}: not finite numbers")
        if rows is not None and a.shape[:1] != (rows,):
            return discard_entry(path, f"{name}: shape {a.shape}, expected {rows} rows")
    return arrays


def save_reference(key: str, arrays: dict[str, np.ndarray]) -> Path | None:
    """Write ``arrays`` as the entry of ``key`` (:func:`write_entry`)."""
    return write_entry(stats_path(key), lambda f: np.savez(f, **arrays))
