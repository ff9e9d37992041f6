"""On-disk cache of reference features: ``$GANKIT_CACHE/stats/<key>.npz``.

``GANKIT_CACHE`` defaults to ``~/.cache/gankit``. Its sub-folders: ``inception/`` (the FID
Inception weights, placed there by the user), ``stats/`` (reference features, this module) and
``classifiers/`` (gankit's offline classifiers, :mod:`gankit.metrics.classifier`).

A reference entry holds every array the feature extractors produced for the reference images
(e.g. Inception ``pool3``/``logits``) plus the labels, so that FID, KID, PRDC, intra-class FID
can all be computed from one pass over the data. The key hashes the data source, resolution,
number of images and the feature extractor's id (which names the weights and the protocol).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from gankit.io_utils import atomic_write


def cache_root() -> Path:
    """``$GANKIT_CACHE`` or ``~/.cache/gankit``."""
    return Path(os.environ.get("GANKIT_CACHE") or Path.home() / ".cache" / "gankit")


def cache_key(**fields: object) -> str:
    """Stable 16-hex-digit key of keyword fields (order-independent)."""
    text = json.dumps(fields, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def stats_path(key: str) -> Path:
    return cache_root() / "stats" / f"{key}.npz"


def load_reference(key: str) -> dict[str, np.ndarray] | None:
    """The cached arrays for ``key``, or ``None`` if absent or unreadable."""
    path = stats_path(key)
    if not path.is_file():
        return None
    try:
        with np.load(path) as f:
            return {k: f[k] for k in f.files}
    except (OSError, ValueError):
        return None


def save_reference(key: str, arrays: dict[str, np.ndarray]) -> Path:
    """Write ``arrays`` atomically (:func:`gankit.io_utils.atomic_write`) and return the path."""
    path = stats_path(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda f: np.savez(f, **arrays))
