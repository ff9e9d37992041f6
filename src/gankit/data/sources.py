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

:func:`read_images` reads the same sources at their own size (samples of any generator, for
``gankit eval --images``) and says whether they carry labels.
"""

from __future__ import annotations

from pathlib import Path

from gankit.data.arrays import read_h5, read_npy, read_npz, to_dataset
from gankit.data.cifar import is_cifar_dir, load_cifar
from gankit.data.dataset import ImageDataset
from gankit.data.folder import DECODE_ERRORS, list_image_folder, load_image_folder, open_image
from gankit.data.measured import MeasuredDataset, is_measured, read_measured
from gankit.data.mnist import load_mnist
from gankit.data.preprocess import check_resize
from gankit.errors import GankitError, check_path

_ARRAY_READERS = {".npz": read_npz, ".npy": read_npy, ".h5": read_h5, ".hdf5": read_h5}
CIFAR_RESOLUTION = 32


def is_image_folder(path: Path | None) -> bool:
    """True if ``path`` is a folder of image files (not CIFAR batches)."""
    return path is not None and path.is_dir() and not is_cifar_dir(path)


def read_source(
    path: Path | None,
    resolution: int,
    channels: int,
    skip_bad: bool,
    quiet: bool = False,
    resize: str = "legacy",
) -> ImageDataset | MeasuredDataset:
    """Load ``path`` (see the module docstring) at ``resolution``/``channels``.

    ``skip_bad`` and ``quiet`` apply to image folders (bad files skipped and counted, no
    progress bar); ``resize`` is the filter that brings images
    to ``resolution`` (:mod:`gankit.data.preprocess`).
    """
    if path is None:
        return load_mnist(resolution, channels, resize)
    if not path.exists():
        raise GankitError(f"data.path '{path}' does not exist")
    if path.suffix.lower() == ".npz" and is_measured(path):
        return read_measured(path)
    if path.is_dir():
        if is_cifar_dir(path):
            return load_cifar(path, resolution, channels, resize)
        return load_image_folder(path, resolution, channels, skip_bad, None, quiet, resize)
    reader = _ARRAY_READERS.get(path.suffix.lower())
    if reader is None:
        raise GankitError(
            f"data.path '{path}': unsupported file type '{path.suffix}' (expected an image "
            f"folder, a CIFAR batch folder, .npz, .npy, .h5 or .hdf5)"
        )
    return to_dataset(reader(path), path, resolution, channels, resize)


def read_images(path: str | Path, resize: str = "legacy") -> tuple[ImageDataset, bool]:
    """Images of any generator at their own size → ``(dataset, labelled)``.

    Size and channels: arrays (``.npz`` with ``x`` and optional ``y``, ``.npy``, ``.h5``) keep
    their side (non-square: the centred square of the shorter side) and channels (alpha
    dropped); an image folder takes the shorter side and the mode (grey → 1 channel, else 3) of
    its first file and fits every other file to it like training data (with ``resize``);
    CIFAR batches are 32×32 RGB. Labels: the arrays' ``y``, or class sub-folders (sorted
    names, as ``gankit train`` reads them); ``labelled`` is False without them (all labels 0).

    Raises:
        GankitError: a missing path, an unsupported or unreadable file, measurements.
    """
    path = check_path(path, "images", "a file or folder of images").expanduser().resolve()
    check_resize(resize)
    if not path.exists():
        raise GankitError(f"images '{path}' does not exist")
    if not (path.is_file() or path.is_dir()):  # e.g. a FIFO, which would block the reader
        raise GankitError(f"images '{path}': not a regular file or a folder")
    if path.suffix.lower() == ".npz" and is_measured(path):
        raise GankitError(f"images '{path}' holds measurements (gankit measure), not images")
    if path.is_dir():
        if is_cifar_dir(path):
            return load_cifar(path, CIFAR_RESOLUTION, 3, resize), True
        listing = list_image_folder(path)
        try:
            with open_image(listing.files[0]) as img:
                side, grey = min(img.size), img.mode in ("1", "L", "LA", "La", "I", "I;16", "F")
        except DECODE_ERRORS as err:
            raise GankitError(f"{listing.files[0]}: not a readable image ({err})") from None
        ds = load_image_folder(path, side, 1 if grey else 3, False, quiet=True, resize=resize)
        return ds, listing.class_dirs != [path]
    suffix = path.suffix.lower()
    if suffix not in _ARRAY_READERS:
        raise GankitError(
            f"images '{path}': unsupported file type '{path.suffix}' (expected an image folder, "
            ".npz, .npy, .h5 or .hdf5)"
        )
    stored = read_npz(path, labels=False) if suffix == ".npz" else _ARRAY_READERS[suffix](path)
    _, c, h, w = stored.x.shape
    return to_dataset(stored, path, min(h, w), min(c, 3), resize), stored.y is not None
