"""``build_cache``: turn a data source into a ``data.cache`` file in bounded memory.

An image folder is decoded chunk by chunk by a pool of worker processes
(:func:`gankit.data.folder.decode_chunks`) and each chunk is appended to the pre-allocated cache
file (:mod:`gankit.data.cache_writer`) as it arrives, so the peak memory is a few chunks of
about 16 MiB whatever the number of images; a progress bar shows images/s. The other sources
(``.npz``, CIFAR batches, stored arrays, the embedded MNIST digits) are in-memory formats: they
are read, then written block by block.

Interrupted builds (``.npy`` caches): while building, ``OUT.partial`` holds the images and
``OUT.partial.json`` the progress — a fingerprint of the request (resolution, channels, chunk
size, folder, class names, and every file's relative path, size and modification time), the
chunks done, the images written and the bad files met. Progress is recorded every
:data:`PROGRESS_EVERY_S` seconds, after the images it counts have been fsynced, and when the
build stops on an error or Ctrl-C. The next build of the same cache with the same fingerprint
continues after the recorded chunks (a process killed outright redoes at most the last few
seconds); any other leftover (other files or settings, a damaged partial file) is deleted and
the build starts over. ``OUT.meta.json``, the completion marker, is written at the very end, so
an unfinished cache is never taken for a finished one. HDF5 builds start over instead.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from gankit.data.cache import cache_lock, cache_meta, check_cache_path, load_cache, save_cache
from gankit.data.cache_writer import (
    CacheWriter,
    NpyWriter,
    Shape,
    create_writer,
    partial_path,
    progress_path,
    remove_cache,
)
from gankit.data.dataset import ImageDataset
from gankit.data.folder import (
    PROGRESS_MIN_FILES,
    FolderId,
    FolderListing,
    bad_file_error,
    check_decoded,
    chunk_size,
    decode_chunks,
    default_workers,
    folder_id,
    list_image_folder,
    reading_folder,
    report_skipped,
    split_chunks,
)
from gankit.data.measured import is_measured
from gankit.data.mnist import MNIST_SOURCE
from gankit.data.preprocess import check_request
from gankit.data.sources import is_image_folder, read_source
from gankit.errors import GankitError, check_path
from gankit.io_utils import atomic_write

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 5.0  # seconds between progress records of a resumable build
_FINGERPRINT_VERSION = 1


@dataclass
class BuildProgress:
    """How far a build got: chunks done, images written, bad files ``(index, message)``."""

    fingerprint: str
    chunks_done: int = 0
    written: int = 0
    bad: list[tuple[int, str]] = field(default_factory=list)

    def save(self, path: Path) -> None:
        atomic_write(progress_path(path), lambda f: f.write(json.dumps(asdict(self)).encode()))

    @classmethod
    def load(cls, path: Path) -> BuildProgress | None:
        """The record next to cache ``path``, or ``None`` if missing or unreadable."""
        try:
            data = json.loads(progress_path(path).read_text())
            bad = [(int(i), str(message)) for i, message in data["bad"]]
            done, written = int(data["chunks_done"]), int(data["written"])
            return cls(str(data["fingerprint"]), done, written, bad)
        except (OSError, ValueError, KeyError, TypeError):
            return None


def fingerprint(
    listing: FolderListing, resolution: int, channels: int, chunk: int, out: Path
) -> str:
    """SHA-256 of the request and of every file's relative path, size and mtime (module doc)."""
    digest = hashlib.sha256()
    head = [_FINGERPRINT_VERSION, resolution, channels, chunk, out.suffix.lower(),
            str(listing.root), listing.class_names]  # fmt: skip
    digest.update(json.dumps(head).encode())
    for i, path in enumerate(listing.files):
        name = listing.relative_name(i)
        try:
            stat = os.stat(path)
        except OSError as err:  # e.g. a dangling link: decoding reports it (or skips it)
            digest.update(os.fsencode(name) + f"\0{err.errno}\n".encode())
            continue
        digest.update(os.fsencode(name) + f"\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _check_outside(out: Path, src: Path, folders: set[FolderId]) -> None:
    """Refuse a cache ``out`` inside one of the ``folders`` read for the images of ``src``: its
    own files would be read as images (unless it is hidden there: a cache's side files share
    its name)."""
    if (d := reading_folder(out, folders)) is not None:
        raise GankitError(
            f"{out}: its files would be read as images of {src} (it lies in {d}); a data "
            "cache must lie outside the image folder it is built from"
        )


def _discard_partial(out: Path) -> None:
    partial_path(out).unlink(missing_ok=True)
    progress_path(out).unlink(missing_ok=True)


def _size(n: int) -> str:
    """``n`` bytes in GB, or MB below one GB (a small cache on a nearly full disk)."""
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.2f} MB"


def _start_or_resume(
    out: Path, shape: Shape, digest: str, chunk: int
) -> tuple[CacheWriter, BuildProgress]:
    """Reopen the unfinished build of ``out`` if its fingerprint is ``digest``, else start."""
    previous = BuildProgress.load(out) if out.suffix.lower() == ".npy" else None
    if previous is not None and previous.fingerprint == digest:
        try:
            writer = NpyWriter.open(out, shape, previous.written)
        except (OSError, ValueError) as err:
            log.warning("%s: cannot resume the interrupted build (%s); starting over", out, err)
        else:
            done = min(previous.chunks_done * chunk, shape[0])
            log.warning("%s: resuming an interrupted build at file %d of %d", out, done, shape[0])
            return writer, previous
    elif partial_path(out).exists() or progress_path(out).exists():
        log.warning(
            "%s: discarding an interrupted build of other files or settings; starting over", out
        )
    _discard_partial(out)
    remove_cache(out)
    needed, free = math.prod(shape), shutil.disk_usage(out.parent).free
    if needed > free:
        raise GankitError(
            f"out = '{out}': the cache needs {_size(needed)}, only {_size(free)} are free on "
            "its disk"
        )
    writer = create_writer(out, shape)
    progress = BuildProgress(digest)
    if writer.resumable:
        progress.save(out)
    return writer, progress


def _record(writer: CacheWriter, progress: BuildProgress, out: Path) -> None:
    """Make the images written durable, then record them as done."""
    writer.sync()
    progress.save(out)


def _stream_folder(
    listing: FolderListing,
    out: Path,
    resolution: int,
    channels: int,
    skip_bad: bool,
    workers: int,
    quiet: bool,
) -> None:
    """Decode ``listing`` chunk by chunk into the cache file ``out`` (module docstring)."""
    files, n = listing.files, len(listing.files)
    size = chunk_size(resolution, channels)
    digest = fingerprint(listing, resolution, channels, size, out)
    writer, progress = _start_or_resume(out, (n, channels, resolution, resolution), digest, size)
    try:
        if progress.bad and not skip_bad:  # met by an earlier --skip-bad run of this build
            raise bad_file_error(files[progress.bad[0][0]], progress.bad[0][1])
        first = progress.chunks_done
        bar = tqdm(
            total=n,
            initial=min(first * size, n),
            unit="img",
            unit_scale=True,
            desc=f"caching {listing.root.name}",
            disable=quiet or n < PROGRESS_MIN_FILES,
        )
        stream = decode_chunks(split_chunks(files, size)[first:], resolution, channels, workers)
        last_record = time.monotonic()
        with bar, contextlib.closing(stream):
            for k, (good, bad) in enumerate(stream, first):
                check_decoded(listing, k * size, bad, skip_bad)
                writer.write(good)
                progress.bad += [(k * size + i, message) for i, message in bad]
                progress.chunks_done, progress.written = k + 1, writer.written
                bar.update(len(good) + len(bad))
                if writer.resumable and time.monotonic() - last_record >= PROGRESS_EVERY_S:
                    _record(writer, progress, out)
                    last_record = time.monotonic()
        keep = np.ones(n, dtype=bool)
        keep[[i for i, _ in progress.bad]] = False
        skipped = report_skipped(listing, keep)
        bad_names = [listing.relative_name(i) for i, _ in progress.bad]
        meta = cache_meta(resolution, channels, str(listing.root), listing.class_names, skipped,
                          writer.written, files=n, skipped_files=bad_names)  # fmt: skip
        writer.finish(listing.labels[keep], meta)
        progress_path(out).unlink(missing_ok=True)
    except BaseException:
        if writer.resumable:
            with contextlib.suppress(OSError, ValueError):
                _record(writer, progress, out)
        else:
            writer.close()
            _discard_partial(out)
        raise
    finally:
        writer.close()


def build_cache(
    src: str | Path,
    resolution: int,
    channels: int,
    out: str | Path,
    skip_bad: bool = False,
    workers: int | None = None,
    quiet: bool = False,
) -> ImageDataset:
    """Build the cache ``out`` of ``src`` at ``resolution``/``channels`` unless it is already
    complete and matching; return it as a data set (memory-mapped for ``.npy``).

    Args:
        src: an image folder (decoded in parallel and streamed, see the module docstring), a
            CIFAR batch folder, ``.npz``/``.npy``/``.h5`` arrays, or ``""`` for the embedded
            MNIST digits — anything ``data.path`` accepts.
        resolution: side length of the cached images (8..1024).
        channels: 1 (grey) or 3 (RGB).
        out: the cache file, ``.npy`` (memory-mapped, resumable) or ``.h5``/``.hdf5``; not
            inside the image folder ``src``, and not a file that gankit did not write.
        skip_bad: skip unreadable files (counted in ``dataset.skipped`` and the metadata)
            instead of stopping with an error naming the first one.
        workers: decoding processes (default: the usable CPU cores).
        quiet: no progress bar.

    Raises:
        GankitError: a one-line message naming the bad parameter or file.
    """
    check_request(resolution, channels, prefix="")
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise GankitError(f"workers = {workers!r}: expected an integer >= 1")
    path = Path(src).expanduser().resolve() if str(src) else None
    out = check_path(out, "out", "a cache file path (.npy, .h5 or .hdf5)").expanduser().resolve()
    check_cache_path(out, "out")
    if out == path:
        raise GankitError(f"out = '{out}': the cache cannot be its own source")
    if path is not None and not path.exists():
        raise GankitError(f"src = '{path}' does not exist")
    if path is not None and path.suffix.lower() == ".npz" and is_measured(path):
        raise GankitError(
            f"src = '{path}': holds measurements (gankit measure), which are read directly, not "
            "cached (leave data.cache empty)"
        )
    if is_image_folder(path):
        _check_outside(out, path, {folder_id(path)})
    source = str(path) if path is not None else MNIST_SOURCE
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise GankitError(f"out = '{out}': cannot create its folder ({err})") from None
    with cache_lock(out):
        dataset = load_cache(out, resolution, channels, source)
        if dataset is not None:
            _discard_partial(out)  # left by a crash between completion and clean-up
            return dataset
        try:
            if is_image_folder(path):
                listing = list_image_folder(path)
                _check_outside(out, path, listing.folders)  # also those reached through links
                n_workers = workers or default_workers()
                _stream_folder(listing, out, resolution, channels, skip_bad, n_workers, quiet)
            else:
                _discard_partial(out)
                save_cache(out, read_source(path, resolution, channels, skip_bad, quiet), source)
        except OSError as err:
            raise GankitError(f"{out}: building the cache failed ({err})") from None
        dataset = load_cache(out, resolution, channels, source)
    if dataset is None:
        raise GankitError(f"{out}: the cache just written cannot be read back")
    return dataset
