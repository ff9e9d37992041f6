"""Stored uint8 arrays: ``.npz`` (``x``, ``y``), ``.npy`` (memory-mapped) and HDF5 (``x``, ``y``).

Image layouts accepted in a file: ``(N, H, W)`` grey, ``(N, H, W, C)`` or ``(N, C, H, W)`` with
``C ∈ {1, 3, 4}`` (alpha dropped); they are returned as ``(N, C, H, W)``. Labels are integer
``(N,)``. Optional metadata (``class_names``, ``resolution``, ``channels``, ``source``,
``skipped``) lives in a ``.npz`` key ``class_names``, an HDF5 attribute, or, for ``X.npy``, a
sibling ``X.meta.json``; labels of ``X.npy`` live in a sibling ``X.labels.npy`` (or ``X.npz``
with key ``y``) — without one the images are unconditional, unless the metadata lists several
classes (then the labels file is missing: an error).

Writers for the ``data.cache`` files live in :mod:`gankit.data.cache_writer`.
"""

from __future__ import annotations

import json
import zipfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from gankit.config import MAX_CLASSES
from gankit.data.dataset import ImageDataset, check_labels
from gankit.data.preprocess import fit_array
from gankit.errors import GankitError

T = TypeVar("T")

_CHANNEL_COUNTS = (1, 3, 4)
LOAD_ERRORS = (OSError, ValueError, zipfile.BadZipFile, EOFError, MemoryError)
"""What ``np.load`` raises for a damaged file (``MemoryError``: a header claiming a huge array)."""


@dataclass
class StoredArrays:
    """What a stored file holds: ``x`` uint8 ``(N, C, H, W)``, ``y`` int64 ``(N,)`` or ``None``."""

    x: np.ndarray
    y: np.ndarray | None
    meta: dict[str, Any] = field(default_factory=dict)


def to_nchw(x: np.ndarray, path: Path) -> np.ndarray:
    """Check dtype/rank of ``x`` and return it as ``(N, C, H, W)`` (a view where possible)."""
    if x.dtype != np.uint8:
        raise GankitError(f"{path}: images 'x' must be uint8 (0..255), got {x.dtype}")
    nchw = None
    if x.ndim == 3:
        nchw = x[:, None]
    elif x.ndim == 4 and x.shape[1] in _CHANNEL_COUNTS and x.shape[-1] not in _CHANNEL_COUNTS:
        nchw = x
    elif x.ndim == 4 and x.shape[-1] in _CHANNEL_COUNTS:
        nchw = x.transpose(0, 3, 1, 2)
    if nchw is None:
        raise GankitError(
            f"{path}: images 'x' must be (N, H, W), (N, H, W, C) or (N, C, H, W) with C in "
            f"1/3/4, got shape {x.shape}"
        )
    if 0 in nchw.shape[2:]:
        raise GankitError(f"{path}: images 'x' have zero size (shape {x.shape})")
    return nchw


def check_y(y: np.ndarray, n: int, path: Path, key: str = "y") -> np.ndarray:
    """Labels ``key`` must be integer ``(n,)`` below ``MAX_CLASSES``; returned as int64."""
    if not np.issubdtype(y.dtype, np.integer):
        raise GankitError(f"{path}: labels '{key}' must be integers, got {y.dtype}")
    if y.shape != (n,):
        raise GankitError(f"{path}: labels '{key}' must have shape ({n},), got {y.shape}")
    top = int(y.max()) if y.size else 0  # before the cast: a uint64 label may not fit int64
    if top >= MAX_CLASSES:
        raise GankitError(
            f"{path}: labels '{key}' must be class indices below {MAX_CLASSES:,} (the most "
            f"classes a model takes), found {top}"
        )
    return y.astype(np.int64, copy=False)


def check_class_names(names: Any, path: Path, key: str = "class_names") -> list[str]:
    """``names`` (a list or 1-D array of ``str``/``bytes``) → distinct ``str`` names; anything
    else is a GankitError naming ``path`` and ``key``."""
    if isinstance(names, np.ndarray) and names.ndim == 1:
        names = names.tolist()
    if not (isinstance(names, list) and names and all(isinstance(n, (str, bytes)) for n in names)):
        raise GankitError(
            f"{path}: '{key}' must be a non-empty list of strings, got {str(names)[:60]!r}"
        )
    names = [n.decode(errors="replace") if isinstance(n, bytes) else n for n in names]
    repeated = sorted(n for n, count in Counter(names).items() if count > 1)
    if repeated:
        raise GankitError(
            f"{path}: '{key}' repeats {', '.join(map(repr, repeated[:5]))}; expected one "
            "distinct name per class"
        )
    return names


def check_meta(meta: Any, path: Path, y: np.ndarray | None, labels_path: Path) -> dict[str, Any]:
    """Check the metadata fields :func:`to_dataset` reads (``class_names``, ``skipped``) and
    that labels ``y`` (read from ``labels_path``) fit the class names; errors name the file."""
    if not isinstance(meta, dict):
        raise GankitError(f"{path}: expected a JSON object of metadata, got {type(meta).__name__}")
    skipped = meta.get("skipped") or 0
    if type(skipped) is not int or skipped < 0:
        raise GankitError(f"{path}: 'skipped' must be a count >= 0, got {skipped!r}")
    names = meta.get("class_names")
    if names is not None:
        names = check_class_names(names, path)
    if names is not None and y is not None:
        where = labels_path if labels_path == path else f"{labels_path} (classes of {path.name})"
        check_labels(y, len(names), str(where))
    return {**meta, "skipped": skipped, "class_names": names}


def _reason(err: Exception) -> str:
    """Why NumPy could not load a file; numpy takes any file that is neither a zip nor an
    ``.npy`` for a pickle, which it (rightly) refuses to load."""
    if "pickled" in str(err):
        return "neither NumPy arrays nor a zip of them (NumPy read it as a pickle)"
    return str(err)


def read_npz(path: Path, labels: bool = True) -> StoredArrays:
    """``.npz`` with keys ``x``, ``y`` and optionally ``class_names`` (strings); with
    ``labels=False`` ``y`` is optional (``None`` when absent)."""
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in ("x", "y")[: 2 if labels else 1] if k not in f.files]
            if missing:
                raise GankitError(
                    f"{path}: missing key(s) {', '.join(missing)} (expected 'x' images and "
                    f"'y' labels; found {', '.join(f.files) or 'nothing'})"
                )
            x, y = to_nchw(f["x"], path), (f["y"] if "y" in f.files else None)
            meta = {"class_names": f["class_names"]} if "class_names" in f else {}
    except LOAD_ERRORS as err:
        raise GankitError(f"{path}: not a readable .npz file ({_reason(err)})") from None
    y = None if y is None else check_y(y, x.shape[0], path)
    return StoredArrays(x, y, check_meta(meta, path, y, path))


def npy_siblings(path: Path) -> tuple[Path, Path, Path]:
    """``X.npy`` → (``X.labels.npy``, ``X.npz``, ``X.meta.json``)."""
    stem = path.with_suffix("")
    return (
        stem.with_name(stem.name + ".labels.npy"),
        path.with_suffix(".npz"),
        stem.with_name(stem.name + ".meta.json"),
    )


def read_npy(path: Path) -> StoredArrays:
    """``X.npy`` memory-mapped read-only, with labels/metadata from its siblings (module doc).
    An unreadable file is named in the error, the sibling too."""
    labels_npy, labels_npz, meta_json = npy_siblings(path)
    x = _read(path, ".npy cache", lambda: np.load(path, mmap_mode="r", allow_pickle=False))
    x = to_nchw(x, path)
    of = f"labels file of {path.name}"
    y, labels = None, labels_npy
    if labels_npy.is_file():
        y = _read(labels_npy, of, lambda: np.load(labels_npy, allow_pickle=False))
    elif labels_npz.is_file():
        y, labels = _read(labels_npz, of, lambda: _npz_y(labels_npz, path)), labels_npz
    if y is not None:
        y = check_y(y, x.shape[0], labels)
    meta: Any = {}
    if meta_json.is_file():
        what = f"metadata file of {path.name}"
        meta = _read(meta_json, what, lambda: json.loads(meta_json.read_text()))
        meta = check_meta(meta, meta_json, y, labels)
    if y is None and len(meta.get("class_names") or []) > 1:
        raise GankitError(
            f"{path}: labels file {labels_npy.name} is missing ({meta_json.name} lists "
            f"{len(meta['class_names'])} classes)"
        )
    return StoredArrays(x, y, meta)


def _npz_y(labels_npz: Path, path: Path) -> np.ndarray:
    with np.load(labels_npz, allow_pickle=False) as f:
        if "y" not in f.files:
            raise GankitError(f"{labels_npz}: missing key 'y' (labels for {path.name})")
        return f["y"]


def _read(file: Path, what: str, load: Callable[[], T]) -> T:
    """``load()``, or a GankitError naming ``file`` if reading it fails."""
    try:
        return load()
    except LOAD_ERRORS as err:
        raise GankitError(f"{file}: not a readable {what} ({_reason(err)})") from None


def import_h5py(path: Path) -> Any:
    try:
        import h5py
    except ImportError:
        raise GankitError(
            f"{path}: reading/writing HDF5 needs h5py (pip install 'gankit[hdf5]')"
        ) from None
    return h5py


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:  # a foreign attribute, not metadata written by gankit
        return None


def read_h5(path: Path) -> StoredArrays:
    """HDF5 with datasets ``x``, ``y``; read fully into memory; metadata from file attributes."""
    h5py = import_h5py(path)
    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in ("x", "y") if not isinstance(f.get(k), h5py.Dataset)]
            if missing:
                raise GankitError(f"{path}: missing HDF5 dataset(s) {', '.join(missing)}")
            x, y = to_nchw(f["x"][()], path), f["y"][()]
            meta = {k: _json_or_none(v) for k, v in f.attrs.items() if isinstance(v, str)}
    except (OSError, MemoryError) as err:
        raise GankitError(f"{path}: not a readable HDF5 file ({err})") from None
    y = check_y(y, x.shape[0], path)
    return StoredArrays(x, y, check_meta(meta, path, y, path))


def to_dataset(
    stored: StoredArrays, path: Path, resolution: int, channels: int, resize: str = "legacy"
) -> ImageDataset:
    """Stored arrays → :class:`ImageDataset` at ``resolution``/``channels`` (no copy if they fit).

    Classes come from ``meta["class_names"]`` when present, else ``0..max(y)``; without labels
    the set is unconditional (one class).

    Raises:
        GankitError: the arrays hold no image.
    """
    if stored.x.shape[0] == 0:
        raise GankitError(f"{path}: holds no images (expected at least one)")
    y = stored.y if stored.y is not None else np.zeros(stored.x.shape[0], dtype=np.int64)
    names = stored.meta.get("class_names") or None
    if names is None:
        top = int(y.max()) if y.size and stored.y is not None else 0
        names = [str(i) for i in range(max(top, 0) + 1)]
    return ImageDataset(
        x=fit_array(stored.x, resolution, channels, resize),
        y=y,
        n_classes=len(names),
        class_names=names,
        source=str(stored.meta.get("source") or path),
        skipped=stored.meta.get("skipped") or 0,
    )
