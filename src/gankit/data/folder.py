"""Image folders: ``root/<class>/**/*.png`` (classes sorted by folder name) or ``root/*.png``.

A root with sub-folders is class-conditional: each direct sub-folder is one class (its images may
sit in nested folders), labelled by the sorted folder names. A root with images and no
sub-folders is unconditional (one class). Hidden files and folders are ignored; links to files
and folders are followed (a link to a folder that holds it is an error). Files of any
size and mode are decoded with PIL and brought to the model's resolution/channels by
:mod:`gankit.data.preprocess`.

Decoding runs in chunks of files (:func:`decode_chunks`) spread over a pool of worker
*processes* (PIL's resize and mode conversions hold the GIL, so threads do not scale), with at
most ``2 × workers`` chunks in flight: the decoded images arrive in file order, chunk by chunk,
so a consumer that writes them out (the streaming cache build) needs memory for a few chunks,
not for the data set. :func:`load_image_folder` collects them into one in-memory array.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import multiprocessing
import os
import signal
import stat
import sys
import threading
import warnings
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from gankit.data.dataset import ImageDataset
from gankit.data.preprocess import convert_channels, fit_square, pil_to_chw, to_grey_or_rgb
from gankit.errors import GankitError

log = logging.getLogger(__name__)

PROGRESS_MIN_FILES = 500  # show a progress bar from this many files on
CHUNK_BYTES = 16 * 2**20  # decoded bytes per chunk (one unit of work for a worker)
MAX_CHUNK_IMAGES = 512
_IGNORED_NAMES = {"thumbs.db", "desktop.ini"}
DECODE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)

BadFiles = list[tuple[int, str]]
"""``(index, message)`` of the unreadable files of a chunk (index within the chunk)."""


@functools.cache
def image_extensions() -> frozenset[str]:
    """Lower-case suffixes PIL can open here (``.png``, ``.jpg``, ``.bmp``, ``.webp``, ...)."""
    return frozenset(ext.lower() for ext in Image.registered_extensions())


def _visible(name: str) -> bool:
    return not name.startswith(".") and name.lower() not in _IGNORED_NAMES


FolderId = tuple[int, int]
"""``(device, inode)`` of a folder: the same through every link to it."""


def folder_id(path: str | Path) -> FolderId:
    """The :data:`FolderId` of the folder ``path`` (following links)."""
    st = os.stat(path)
    return st.st_dev, st.st_ino


def reading_folder(path: Path, folders: set[FolderId]) -> Path | None:
    """The folder among ``folders`` (the ids of the folders a listing reads) that a file written
    at the absolute ``path`` would be listed from, or ``None``: a file in one of them, or below,
    is read unless its name or a folder on the way is hidden."""
    for d in path.parents:
        hidden = any(part.startswith(".") for part in path.relative_to(d).parts)
        if not hidden and d.exists() and folder_id(d) in folders:
            return d
    return None


def _list_files(folder: Path, holding: frozenset[FolderId], read: set[FolderId]) -> list[str]:
    """Visible files under ``folder`` in sorted walk order, following folder links, as ``str``
    paths (a ``Path`` costs several times the memory of a ``str``: it matters for millions of
    files). The id of every folder walked is added to ``read``.

    A folder that is (through a link) one of the folders holding it, ``holding`` (those above
    ``folder``) included, would be walked forever: an error naming it.
    """
    files = []
    above = {str(folder): holding}  # walked folder → the ids of the folders holding it
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        chain, own = above.pop(dirpath), folder_id(dirpath)
        if own in chain:
            raise GankitError(
                f"{dirpath}: folder links to {os.path.realpath(dirpath)}, which holds it "
                "(expected a folder of images)"
            )
        read.add(own)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        above.update((os.path.join(dirpath, d), chain | {own}) for d in dirnames)
        files.extend(os.path.join(dirpath, f) for f in sorted(filenames) if _visible(f))
    return files


@dataclass
class FolderListing:
    """The files of an image folder in load order, with their labels.

    Attributes:
        root: the folder.
        files: every visible file (``str`` paths), class by class, each class in sorted walk
            order.
        labels: int64 ``(len(files),)`` class index of each file.
        class_names: the sorted class folder names (or the root's name if unconditional).
        class_dirs: the folder of each class (for error messages).
        folders: the id of every folder read (links followed).
    """

    root: Path
    files: list[str]
    labels: np.ndarray
    class_names: list[str]
    class_dirs: list[Path]
    folders: set[FolderId]

    def relative_name(self, index: int) -> str:
        """``files[index]`` relative to ``root``, with ``/`` separators."""
        prefix = len(os.path.join(str(self.root), ""))
        return self.files[index][prefix:].replace(os.sep, "/")


def list_image_folder(root: Path) -> FolderListing:
    """List ``root`` as described in the module docstring; an empty class folder, or a folder
    link to a folder holding it, is an error."""
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and _visible(p.name))
    if subdirs:
        loose = [p for p in root.iterdir() if p.is_file() and _visible(p.name)]
        if loose:
            log.warning("%s: ignoring %d file(s) next to the class folders", root, len(loose))
        dirs = subdirs
    else:
        dirs = [root]
    above = root.resolve().parents if dirs == [root] else [root, *root.resolve().parents]
    holding = frozenset(map(folder_id, above))
    folders: set[FolderId] = set()
    groups = [_list_files(d, holding, folders) for d in dirs]
    for where, files in zip(dirs, groups):
        if not files:
            raise GankitError(f"{where}: folder has no files (expected images)")
    names = [d.name for d in subdirs] if subdirs else [root.name or "images"]
    labels = np.repeat(np.arange(len(groups), dtype=np.int64), [len(fs) for fs in groups])
    files = [f for fs in groups for f in fs]
    return FolderListing(root, files, labels, names, dirs, folders)


def check_classes_left(listing: FolderListing, keep: np.ndarray) -> None:
    """After skipping bad files (``keep (N,)`` bool), every class must keep an image."""
    counts = np.bincount(listing.labels[keep], minlength=len(listing.class_names))
    for where, count in zip(listing.class_dirs, counts):
        if count == 0:
            raise GankitError(f"{where}: no readable images left in this class folder")


def check_decoded(
    listing: FolderListing, start: int, bad: list[tuple[int, str]], skip_bad: bool
) -> None:
    """Raise :func:`bad_file_error` for the first of a decoded chunk's ``bad`` files (``(index
    in the chunk, message)``; the chunk starts at file ``start``) unless ``skip_bad``."""
    if bad and not skip_bad:
        i, message = bad[0]
        raise bad_file_error(listing.files[start + i], message)


def report_skipped(listing: FolderListing, keep: np.ndarray) -> int:
    """After decoding with ``skip_bad`` (``keep (N,)``: the files that decoded): the number of
    skipped files, logged as a warning, after checking that every class kept an image."""
    skipped = int((~keep).sum())
    if skipped:
        log.warning("%s: skipped %d unreadable file(s) (data.skip_bad)", listing.root, skipped)
        check_classes_left(listing, keep)
    return skipped


def bad_file_error(path: str | Path, message: str) -> GankitError:
    """The one-line error for an unreadable file when ``skip_bad`` is off."""
    return GankitError(
        f"{path}: {message}; data.skip_bad=true (`gankit train` and `gankit data build`: "
        "--skip-bad) skips such files"
    )


@contextlib.contextmanager
def open_image(path: str | Path) -> Iterator[Image.Image]:
    """``Image.open(path)``, refusing anything but a regular file (a FIFO would block forever)
    with ``ValueError``; PIL's warnings about files it can decode (large, bad EXIF) are muted."""
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise ValueError("not a regular file")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"PIL\.")
        with Image.open(path) as img:
            yield img


def decode_image(path: str | Path, resolution: int, resize: str = "legacy") -> np.ndarray:
    """Decode one file → uint8 ``(C, resolution, resolution)``, C = 1 (grey) or 3 (colour).

    Raises whatever PIL raises for unreadable files, ``ValueError`` for a file that is not a
    regular file or holds NaN pixels (the caller names the file). JPEGs are decoded at the
    smallest DCT scale that still covers ``resolution`` (``Image.draft``).
    """
    with open_image(path) as img:
        if img.format == "JPEG":
            img.draft(None, (resolution, resolution))
        img.load()
        return pil_to_chw(fit_square(to_grey_or_rgb(img), resolution, resize))


def _decode_or_error(path: str, resolution: int, resize: str) -> np.ndarray | str:
    suffix = os.path.splitext(path)[1]
    if suffix.lower() not in image_extensions():
        return f"unsupported file type '{suffix}' (expected an image: .png, .jpg, .bmp, ...)"
    try:
        return decode_image(path, resolution, resize)
    except DECODE_ERRORS as err:
        return f"not a readable image ({type(err).__name__}: {err})".replace("\n", " ")


def decode_chunk(
    files: Sequence[str], resolution: int, channels: int, resize: str = "legacy"
) -> tuple[np.ndarray, BadFiles]:
    """Decode ``files`` → (uint8 ``(n_good, channels, R, R)`` in file order, bad files)."""
    x = np.empty((len(files), channels, resolution, resolution), dtype=np.uint8)
    bad: BadFiles = []
    for i, path in enumerate(files):
        result = _decode_or_error(path, resolution, resize)
        if isinstance(result, str):
            bad.append((i, result))
        else:
            x[i - len(bad)] = convert_channels(result[None], channels)[0]
    return x[: len(files) - len(bad)], bad


def chunk_size(resolution: int, channels: int) -> int:
    """Files per chunk: about :data:`CHUNK_BYTES` of decoded images, 1..``MAX_CHUNK_IMAGES``."""
    return max(1, min(MAX_CHUNK_IMAGES, CHUNK_BYTES // (channels * resolution * resolution)))


def default_workers() -> int:
    """The CPU cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _init_worker(parent: int) -> None:
    """Set up a decoding process of the process ``parent`` (a pid): it leaves Ctrl-C and SIGTERM
    to the parent, which stops the pool, and on Linux it is killed when the parent dies.

    Otherwise the workers of a SIGKILLed build would wait forever on the pool's pipes. Forked
    workers also share the parent's open lock file of the cache (``cache.cache_lock``), and an
    ``flock`` lasts until its last holder closes it; that file is not closed here, since the
    parent holds the lock for as long as the workers live, and they die with it.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # e.g. a job's whole group: the parent stops
    if sys.platform == "linux":
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, ctypes.c_ulong(signal.SIGKILL))
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


@contextlib.contextmanager
def _stop_signals_held() -> Iterator[None]:
    """Hold SIGINT/SIGTERM while the pool forks, then act on one that came: Python drops an
    exception its handler raises inside the fork's own hooks, so a Ctrl-C then was lost. Only
    signals with a Python handler are held, and only in the main thread (where they run)."""
    held: list[int] = []
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for s in (signal.SIGINT, signal.SIGTERM):
            if callable(signal.getsignal(s)):
                previous[s] = signal.signal(s, lambda signum, frame: held.append(signum))
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if held:
            signal.raise_signal(held[0])


def decode_chunks(
    chunks: Sequence[Sequence[str]],
    resolution: int,
    channels: int,
    workers: int,
    resize: str = "legacy",
) -> Iterator[tuple[np.ndarray, BadFiles]]:
    """Yield :func:`decode_chunk` of each chunk, in order, decoded by ``workers`` processes.

    ``workers <= 1`` (or a single chunk) decodes in this process. Workers are forked on Linux
    (they inherit the imported modules, so they start at once) and spawned elsewhere; on Linux
    they die with this process (:func:`_init_worker`).
    """
    if workers <= 1 or len(chunks) <= 1:
        for files in chunks:
            yield decode_chunk(files, resolution, channels, resize)
        return
    context = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
    pool = ProcessPoolExecutor(
        workers, mp_context=context, initializer=_init_worker, initargs=(os.getpid(),)
    )
    try:
        todo = iter(chunks)
        with _stop_signals_held():  # the first submit forks the workers
            pending: deque[tuple[Future, str]] = deque(
                (pool.submit(decode_chunk, files, resolution, channels, resize), files[0])
                for files in islice(todo, 2 * workers)
            )
        while pending:
            future, first = pending.popleft()
            try:
                result = future.result()
            except BrokenProcessPool:
                raise GankitError(
                    f"{first}: a decoding process died in the chunk from this file on (out of "
                    "memory? try fewer workers)"
                ) from None
            for files in islice(todo, 1):
                future = pool.submit(decode_chunk, files, resolution, channels, resize)
                pending.append((future, files[0]))
            yield result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def split_chunks(files: Sequence[str], size: int) -> list[Sequence[str]]:
    """``files`` cut into consecutive chunks of ``size`` (the last may be shorter)."""
    return [files[i : i + size] for i in range(0, len(files), size)]


def load_image_folder(
    root: Path,
    resolution: int,
    channels: int,
    skip_bad: bool,
    workers: int | None = None,
    quiet: bool = False,
    resize: str = "legacy",
) -> ImageDataset:
    """Decode every image under ``root`` into memory → :class:`ImageDataset` (module docstring).

    Bad files (corrupt, not an image, unsupported suffix, not a regular file) raise
    :class:`GankitError` naming the file, or with ``skip_bad`` are counted in
    ``dataset.skipped`` and reported as a warning.
    ``workers``: decoding processes (default: the usable CPU cores); ``resize``: the filter
    (:mod:`gankit.data.preprocess`).
    """
    listing = list_image_folder(root)
    files = listing.files
    x = np.empty((len(files), channels, resolution, resolution), dtype=np.uint8)
    keep = np.ones(len(files), dtype=bool)
    size = chunk_size(resolution, channels)
    chunks = split_chunks(files, size)
    disable = quiet or len(files) < PROGRESS_MIN_FILES
    bar = tqdm(total=len(files), desc=f"decoding {root.name}", unit="img", disable=disable)
    written = 0
    stream = decode_chunks(chunks, resolution, channels, workers or default_workers(), resize)
    with bar, contextlib.closing(stream):
        for k, (good, bad) in enumerate(stream):
            check_decoded(listing, k * size, bad, skip_bad)
            keep[[k * size + i for i, _ in bad]] = False
            x[written : written + len(good)] = good
            written += len(good)
            bar.update(len(good) + len(bad))
    skipped = report_skipped(listing, keep)
    return ImageDataset(
        x=x[:written],
        y=listing.labels[keep],
        n_classes=len(listing.class_names),
        class_names=listing.class_names,
        source=str(root),
        skipped=skipped,
    )
