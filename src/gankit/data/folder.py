"""Image folders: ``root/<class>/**/*.png`` (classes sorted by folder name) or ``root/*.png``.

A root with sub-folders is class-conditional: each direct sub-folder is one class (its images may
sit in nested folders), labelled by the sorted folder names. A root with images and no
sub-folders is unconditional (one class). Hidden files and folders are ignored. Files of any
size and mode are decoded with PIL in a thread pool (PIL releases the GIL while decoding), then
brought to the model's resolution/channels by :mod:`gankit.data.preprocess`.
"""

from __future__ import annotations

import functools
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from gankit.data.dataset import ImageDataset
from gankit.data.preprocess import convert_channels, fit_square, pil_to_chw, to_grey_or_rgb
from gankit.errors import GankitError

log = logging.getLogger(__name__)

_IGNORED_NAMES = {"thumbs.db", "desktop.ini"}
_PROGRESS_MIN_FILES = 500
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


@functools.cache
def image_extensions() -> frozenset[str]:
    """Lower-case suffixes PIL can open here (``.png``, ``.jpg``, ``.bmp``, ``.webp``, ...)."""
    return frozenset(ext.lower() for ext in Image.registered_extensions())


def _visible(path: Path) -> bool:
    return not path.name.startswith(".") and path.name.lower() not in _IGNORED_NAMES


def _list_files(folder: Path) -> list[Path]:
    files = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        files.extend(Path(dirpath) / f for f in sorted(filenames))
    return [f for f in files if _visible(f)]


def decode_image(path: Path, resolution: int) -> np.ndarray:
    """Decode one file → uint8 ``(C, resolution, resolution)``, C = 1 (grey) or 3 (colour).

    Raises whatever PIL raises for unreadable files (the caller names the file). JPEGs are
    decoded at the smallest DCT scale that still covers ``resolution`` (``Image.draft``).
    """
    with Image.open(path) as img:
        if img.format == "JPEG":
            img.draft(None, (resolution, resolution))
        img.load()
        return pil_to_chw(fit_square(to_grey_or_rgb(img), resolution))


def _decode_or_error(item: tuple[Path, int]) -> np.ndarray | str:
    path, resolution = item
    if path.suffix.lower() not in image_extensions():
        return f"unsupported file type '{path.suffix}' (expected an image: .png, .jpg, .bmp, ...)"
    try:
        return decode_image(path, resolution)
    except _DECODE_ERRORS as err:
        return f"not a readable image ({type(err).__name__}: {err})".replace("\n", " ")


def load_image_folder(root: Path, resolution: int, channels: int, skip_bad: bool) -> ImageDataset:
    """Decode every image under ``root`` → :class:`ImageDataset` (see the module docstring).

    Bad files (corrupt, not an image, unsupported suffix) raise :class:`GankitError` naming the
    file, or with ``skip_bad`` are counted in ``dataset.skipped`` and reported as a warning.
    """
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and _visible(p))
    if subdirs:
        loose = [p for p in root.iterdir() if p.is_file() and _visible(p)]
        if loose:
            log.warning("%s: ignoring %d file(s) next to the class folders", root, len(loose))
        groups = [(d.name, _list_files(d)) for d in subdirs]
    else:
        groups = [(root.name or "images", _list_files(root))]
    for name, files in groups:
        if not files:
            where = root / name if subdirs else root
            raise GankitError(f"{where}: folder has no files (expected images)")
    files = [f for _, files in groups for f in files]
    labels = np.repeat(np.arange(len(groups), dtype=np.int64), [len(fs) for _, fs in groups])

    x = np.empty((len(files), channels, resolution, resolution), dtype=np.uint8)
    keep = np.ones(len(files), dtype=bool)
    disable = None if len(files) >= _PROGRESS_MIN_FILES else True
    pool = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1))
    try:
        results = pool.map(_decode_or_error, ((f, resolution) for f in files))
        bar = tqdm(results, total=len(files), desc=f"decoding {root.name}", disable=disable)
        for i, result in enumerate(bar):
            if isinstance(result, str):
                if not skip_bad:
                    raise GankitError(f"{files[i]}: {result}; pass --skip-bad to skip such files")
                keep[i] = False
                continue
            x[i] = convert_channels(result[None], channels)[0]
    finally:
        pool.shutdown(cancel_futures=True)
    skipped = int((~keep).sum())
    if skipped:
        log.warning("%s: skipped %d unreadable file(s) (data.skip_bad)", root, skipped)
        x, labels = x[keep], labels[keep]
    counts = np.bincount(labels, minlength=len(groups))
    for (name, _), count in zip(groups, counts):
        if count == 0:
            raise GankitError(f"{root / name}: no readable images left in this class folder")
    return ImageDataset(
        x=x,
        y=labels,
        n_classes=len(groups),
        class_names=[name for name, _ in groups],
        source=str(root),
        skipped=skipped,
    )
