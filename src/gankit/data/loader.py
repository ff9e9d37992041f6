"""``load_dataset``: pick the reader for ``data.path``, apply ``data.cache``, check the result.

``data.path`` selects the source (DESIGN §6):

====================================  =============================================
``""``                                embedded MNIST digits (:mod:`gankit.data.mnist`)
folder with ``data_batch_1`` or
``train`` + ``meta``                  CIFAR-10 / CIFAR-100 batches (:mod:`.cifar`)
other folder                          image folder (:mod:`.folder`)
``*.npz`` / ``*.npy`` / ``*.h5``      stored arrays (:mod:`.arrays`)
``*.npz`` from ``gankit measure``     measurements of images (:mod:`.measured`), as
                                      they are: never resized, never cached
====================================  =============================================
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gankit.config import DataConfig
from gankit.data.arrays import read_h5, read_npy, read_npz, to_dataset
from gankit.data.cache import load_cache, save_cache
from gankit.data.cifar import is_cifar_dir, load_cifar
from gankit.data.dataset import ImageDataset, check_labels
from gankit.data.folder import load_image_folder
from gankit.data.measured import MeasuredDataset, is_measured, read_measured
from gankit.data.mnist import MNIST_SOURCE, load_mnist
from gankit.data.preprocess import MAX_RESOLUTION, MIN_RESOLUTION
from gankit.errors import GankitError

_ARRAY_READERS = {".npz": read_npz, ".npy": read_npy, ".h5": read_h5, ".hdf5": read_h5}


def _check_request(resolution: int, channels: int) -> None:
    if not isinstance(resolution, int) or not MIN_RESOLUTION <= resolution <= MAX_RESOLUTION:
        raise GankitError(
            f"model.resolution = {resolution!r}: data loading supports integer resolutions "
            f"{MIN_RESOLUTION}..{MAX_RESOLUTION}"
        )
    if channels not in (1, 3):
        raise GankitError(f"model.channels = {channels!r}: expected 1 (grey) or 3 (RGB)")


def _read_source(
    path: Path, resolution: int, channels: int, skip_bad: bool
) -> ImageDataset | MeasuredDataset:
    if not path.exists():
        raise GankitError(f"data.path '{path}' does not exist")
    if path.suffix.lower() == ".npz" and is_measured(path):
        return read_measured(path)
    if path.is_dir():
        if is_cifar_dir(path):
            return load_cifar(path, resolution, channels)
        return load_image_folder(path, resolution, channels, skip_bad)
    reader = _ARRAY_READERS.get(path.suffix.lower())
    if reader is None:
        raise GankitError(
            f"data.path '{path}': unsupported file type '{path.suffix}' (expected an image "
            f"folder, a CIFAR batch folder, .npz, .npy, .h5 or .hdf5)"
        )
    return to_dataset(reader(path), path, resolution, channels)


def load_dataset(
    data_cfg: DataConfig, resolution: int, channels: int, n_classes: int | None = None
) -> ImageDataset | MeasuredDataset:
    """Load ``data_cfg.path`` as uint8 ``(N, channels, resolution, resolution)`` + labels.

    Args:
        data_cfg: ``path`` (source, see module doc), ``skip_bad`` (skip unreadable images,
            counted in ``dataset.skipped``), ``cache`` (``.npy``/``.h5`` file written once and
            reused while resolution, channels and source match), ``limit`` (keep a fixed
            random subset of that many images, :func:`limit_dataset`; 0 = all).
        resolution: side length of the model's images (8..1024).
        channels: 1 (grey) or 3 (RGB); grey data is repeated, colour data reduced to luma.
        n_classes: the model's class count, if labels must fit it (``model.n_classes``).

    Raises:
        GankitError: a one-line message naming the path/file for every bad input.
    """
    _check_request(resolution, channels)
    path = Path(data_cfg.path).expanduser().resolve() if data_cfg.path else None
    source = str(path) if path is not None else MNIST_SOURCE
    cache = Path(data_cfg.cache).expanduser().resolve() if data_cfg.cache else None
    dataset = load_cache(cache, resolution, channels, source) if cache is not None else None
    if dataset is None:
        if path is None:
            dataset = load_mnist(resolution, channels)
        else:
            dataset = _read_source(path, resolution, channels, data_cfg.skip_bad)
        if isinstance(dataset, MeasuredDataset) and cache is not None:
            raise GankitError(
                f"data.cache = '{data_cfg.cache}': measured data sets ({path}) are not cached; "
                "set data.cache to empty"
            )
        if cache is not None and cache != path:
            save_cache(cache, dataset, source)
    if n_classes is not None:
        check_labels(dataset.y, n_classes, f"{dataset.source} (model.n_classes = {n_classes})")
    return limit_dataset(dataset, data_cfg.limit) if data_cfg.limit else dataset


def limit_dataset(dataset: ImageDataset, limit: int, seed: int = 0) -> ImageDataset:
    """A fixed random subset of ``limit`` images (``data.limit``; seeded, in original order),
    for small-data experiments. The class count and names stay those of the full set.

    Raises:
        GankitError: ``limit`` larger than the data set.
    """
    if limit > len(dataset):
        raise GankitError(f"data.limit = {limit}: {dataset.source} has only {len(dataset)} images")
    idx = np.sort(np.random.RandomState(seed).choice(len(dataset), limit, replace=False))
    return ImageDataset(
        x=np.ascontiguousarray(dataset.x[idx]),
        y=dataset.y[idx],
        n_classes=dataset.n_classes,
        class_names=dataset.class_names,
        source=f"{dataset.source} (data.limit = {limit}, seed {seed})",
        skipped=dataset.skipped,
    )
