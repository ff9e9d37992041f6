"""CIFAR-10 / CIFAR-100 "python version" batches (Krizhevsky 2009), read without running code.

The official files are Python pickles of dicts holding a uint8 ``data`` array ``(N, 3072)`` (1024
red, then green, then blue values per image, rows of 32) and a label list. They are unpickled with
:class:`SafeUnpickler`, whose ``find_class`` resolves only the numpy array-reconstruction
callables, so a tampered file cannot import or call anything else.

Layouts: CIFAR-10 ``data_batch_1..5`` (+ ``batches.meta`` with ``label_names``); CIFAR-100
``train`` (+ ``meta`` with ``fine_label_names``), using the 100 fine labels.
"""

from __future__ import annotations

import importlib
import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from gankit.data.arrays import check_class_names, check_y
from gankit.data.dataset import ImageDataset
from gankit.data.preprocess import fit_array
from gankit.errors import GankitError

CIFAR10_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"): ("numpy._core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"): ("numpy._core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"): ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"): ("numpy", "ndarray"),
    ("numpy", "dtype"): ("numpy", "dtype"),
    ("_codecs", "encode"): ("_codecs", "encode"),  # how protocol 2 spells a bytes literal
}


class SafeUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild numpy arrays, dicts, lists and scalars — and nothing else."""

    def find_class(self, module: str, name: str) -> Any:
        target = _ALLOWED.get((module, name))
        if target is None:
            raise pickle.UnpicklingError(f"refusing to load '{module}.{name}' (not numpy data)")
        mod_name, attr = target
        try:
            mod = importlib.import_module(mod_name)
        except ImportError:  # numpy < 2 has no numpy._core
            mod = importlib.import_module(mod_name.replace("numpy._core", "numpy.core"))
        return getattr(mod, attr)


def safe_unpickle(path: Path) -> Any:
    """Unpickle ``path`` with :class:`SafeUnpickler` (``encoding='bytes'`` as the files need)."""
    try:
        data = path.read_bytes()
        return SafeUnpickler(io.BytesIO(data), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as err:
        raise GankitError(f"{path}: not a readable CIFAR batch ({err})") from None


def is_cifar_dir(root: Path) -> bool:
    """True if ``root`` holds CIFAR-10 ``data_batch_1`` or CIFAR-100 ``train`` + ``meta``."""
    return (root / CIFAR10_BATCHES[0]).is_file() or (
        (root / "train").is_file() and (root / "meta").is_file()
    )


def _get(d: Any, key: bytes, path: Path) -> Any:
    if not isinstance(d, dict) or key not in d:
        raise GankitError(f"{path}: CIFAR batch has no '{key.decode()}' entry")
    return d[key]


def _read_batch(path: Path, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    batch = safe_unpickle(path)
    data = np.asarray(_get(batch, b"data", path))
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise GankitError(
            f"{path}: CIFAR 'data' must be uint8 (N, 3072), got {data.dtype} {data.shape}"
        )
    key = label_key.decode()
    try:
        labels = np.asarray(_get(batch, label_key, path))
    except ValueError as err:  # a ragged list
        raise GankitError(f"{path}: CIFAR '{key}' must be a list of integers ({err})") from None
    return data.reshape(-1, 3, 32, 32), check_y(labels, data.shape[0], path, key)


def _names(path: Path, key: bytes, n_classes: int) -> list[str]:
    if not path.is_file():
        return [str(i) for i in range(n_classes)]
    return check_class_names(_get(safe_unpickle(path), key, path), path, key.decode())


def load_cifar(root: Path, resolution: int, channels: int, resize: str = "legacy") -> ImageDataset:
    """Read the CIFAR-10 or CIFAR-100 training set in ``root`` → :class:`ImageDataset`."""
    if (root / CIFAR10_BATCHES[0]).is_file():
        missing = [b for b in CIFAR10_BATCHES if not (root / b).is_file()]
        if missing:
            raise GankitError(f"{root}: CIFAR-10 directory lacks {', '.join(missing)}")
        parts = [_read_batch(root / b, b"labels") for b in CIFAR10_BATCHES]
        names = _names(root / "batches.meta", b"label_names", 10)
    else:
        parts = [_read_batch(root / "train", b"fine_labels")]
        names = _names(root / "meta", b"fine_label_names", 100)
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    return ImageDataset(
        x=fit_array(x, resolution, channels, resize),
        y=y,
        n_classes=len(names),
        class_names=names,
        source=str(root),
    )
