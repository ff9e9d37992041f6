"""Read a ``data.path`` source into an :class:`ImageDataset`, without any cache.

====================================  =============================================
``None`` (``data.path = ""``)         embedded MNIST digits (:mod:`gankit.data.mnist`)
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

from gankit.data.arrays import read_h5, read_npy, read_npz, to_dataset
from gankit.data.cifar import is_cifar_dir, load_cifar
from gankit.data.dataset import ImageDataset
from gankit.data.folder import load_image_folder
from gankit.data.measured import MeasuredDataset, is_measured, read_measured
from gankit.data.mnist import load_mnist
from gankit.errors import GankitError

_ARRAY_READERS = {".npz": read_npz, ".npy": read_npy, ".h5": read_h5, ".hdf5": read_h5}


def is_image_folder(path: Path | None) -> bool:
    """True if ``path`` is a folder of image files (not CIFAR batches)."""
    return path is not None and path.is_dir() and not is_cifar_dir(path)


def read_source(
    path: Path | None,
    resolution: int,
    channels: int,
    skip_bad: bool,
    workers: int | None = None,
    quiet: bool = False,
) -> ImageDataset | MeasuredDataset:
    """Load ``path`` (see the module docstring) at ``resolution``/``channels``.

    ``skip_bad``, ``workers`` and ``quiet`` apply to image folders (bad files skipped and
    counted, decoding processes, no progress bar).
    """
    if path is None:
        return load_mnist(resolution, channels)
    if not path.exists():
        raise GankitError(f"data.path '{path}' does not exist")
    if path.suffix.lower() == ".npz" and is_measured(path):
        return read_measured(path)
    if path.is_dir():
        if is_cifar_dir(path):
            return load_cifar(path, resolution, channels)
        return load_image_folder(path, resolution, channels, skip_bad, workers, quiet)
    reader = _ARRAY_READERS.get(path.suffix.lower())
    if reader is None:
        raise GankitError(
            f"data.path '{path}': unsupported file type '{path.suffix}' (expected an image "
            f"folder, a CIFAR batch folder, .npz, .npy, .h5 or .hdf5)"
        )
    return to_dataset(reader(path), path, resolution, channels)
