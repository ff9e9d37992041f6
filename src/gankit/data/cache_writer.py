"""Chunked writers for ``data.cache`` files: images are appended block by block to a
pre-allocated file, so writing a cache needs memory for one block, not for the data set.

``.npy`` (:class:`NpyWriter`): the images go to ``OUT.partial``, a valid ``.npy`` whose header
is written first for the full file count and whose data area is pre-allocated; blocks are
written with plain file writes at their offsets (pages written through a memory map would count
in the process's resident set until evicted). :meth:`~NpyWriter.finish` rewrites the header for
the images actually written (fewer when bad files were skipped; numpy pads the header so the
first dimension can change in place), truncates and fsyncs it, writes ``OUT.labels.npy`` and
``OUT.meta.json`` and, last, renames ``OUT.partial`` → ``OUT``: the rename completes the cache,
so an ``OUT`` never lies there without its metadata, which is how a cache is told from a file
gankit did not write (:func:`gankit.data.cache.load_cache`). An ``OUT.partial`` can be reopened
at the count already written (:meth:`NpyWriter.open`) to resume an interrupted build.

HDF5 (:class:`H5Writer`): datasets ``x`` (chunked, resized at the end) and ``y`` and the
metadata as JSON attributes, in ``OUT.partial`` renamed to ``OUT`` when complete. An HDF5 file
cut off mid-write may be unreadable, so HDF5 builds are not resumed (they restart).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib import format as npy_format

from gankit.data.arrays import import_h5py, npy_siblings
from gankit.io_utils import atomic_write, fsync_file

Shape = tuple[int, int, int, int]


def partial_path(path: Path) -> Path:
    """``OUT`` → ``OUT.partial``, where the images are written until the cache is complete."""
    return path.with_name(path.name + ".partial")


def progress_path(path: Path) -> Path:
    """``OUT`` → ``OUT.partial.json``, the progress record of an unfinished build."""
    return path.with_name(path.name + ".partial.json")


def _npy_header(shape: Shape) -> dict[str, Any]:
    return {"descr": npy_format.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False,
            "shape": shape}  # fmt: skip


class NpyWriter:
    """Append uint8 blocks ``(b, C, R, R)`` to ``OUT.partial`` (module docstring).

    Args:
        path: the cache file ``OUT`` (``.npy``).
        shape: ``(N, C, R, R)`` with ``N`` the most images that will be written.
    """

    resumable = True

    def __init__(self, path: Path, shape: Shape):
        self.path, self.partial, self.shape = path, partial_path(path), shape
        self.row = math.prod(shape[1:])
        self.written = 0
        with open(self.partial, "wb") as f:
            npy_format.write_array_header_1_0(f, _npy_header(shape))
            self.offset = f.tell()
            f.truncate(self.offset + shape[0] * self.row)  # sparse: no data written yet
        self.file = open(self.partial, "r+b")

    @classmethod
    def open(cls, path: Path, shape: Shape, written: int) -> NpyWriter:
        """Reopen an existing ``OUT.partial`` of ``shape`` after its first ``written`` images.

        Raises:
            ValueError: the file is not a pre-allocated ``.npy`` of this shape.
        """
        self = cls.__new__(cls)
        self.path, self.partial, self.shape = path, partial_path(path), shape
        self.row = math.prod(shape[1:])
        self.file = open(self.partial, "r+b")
        try:
            if npy_format.read_magic(self.file) != (1, 0):
                raise ValueError(f"{self.partial}: not a .npy file written by NpyWriter")
            header = npy_format.read_array_header_1_0(self.file)
            self.offset = self.file.tell()
            size = os.fstat(self.file.fileno()).st_size
            expected = self.offset + shape[0] * self.row
            if header != (shape, False, np.dtype(np.uint8)) or size != expected:
                raise ValueError(f"{self.partial} is not the pre-allocated {shape} uint8 array")
        except BaseException:
            self.file.close()
            raise
        self.written = written
        return self

    def write(self, block: np.ndarray) -> None:
        """Append ``block (b, C, R, R)`` uint8 after the images already written."""
        if self.written + len(block) > self.shape[0]:
            raise ValueError(f"{self.partial}: more than {self.shape[0]} images written")
        self.file.seek(self.offset + self.written * self.row)
        self.file.write(np.ascontiguousarray(block, dtype=np.uint8).data)
        self.written += len(block)

    def sync(self) -> None:
        """Flush the images written so far to disk (before recording them as done)."""
        self.file.flush()
        os.fsync(self.file.fileno())

    def finish(self, y: np.ndarray, meta: dict[str, Any]) -> None:
        """Shrink to the images written, write labels ``y`` and ``meta``, rename to ``OUT``."""
        shape = (self.written, *self.shape[1:])
        self.file.seek(0)
        npy_format.write_array_header_1_0(self.file, _npy_header(shape))
        if self.file.tell() != self.offset:  # numpy pads the header for this; never expected
            raise ValueError(f"{self.partial}: the .npy header changed size when shrunk")
        self.file.truncate(self.offset + self.written * self.row)
        self.sync()
        self.close()
        labels_npy, _, meta_json = npy_siblings(self.path)
        atomic_write(labels_npy, lambda f: np.save(f, np.asarray(y, dtype=np.int64)))
        atomic_write(meta_json, lambda f: f.write(json.dumps(meta).encode()))
        os.replace(self.partial, self.path)

    def close(self) -> None:
        self.file.close()


class H5Writer:
    """Append uint8 blocks to dataset ``x`` of an HDF5 ``OUT.partial`` (module docstring)."""

    resumable = False

    def __init__(self, path: Path, shape: Shape):
        h5py = import_h5py(path)
        self.path, self.partial, self.shape = path, partial_path(path), shape
        self.written = 0
        self.file = h5py.File(self.partial, "w")
        self.x = self.file.create_dataset(
            "x", shape=shape, maxshape=shape, dtype=np.uint8, chunks=(1, *shape[1:])
        )

    def write(self, block: np.ndarray) -> None:
        self.x[self.written : self.written + len(block)] = block
        self.written += len(block)

    def sync(self) -> None:
        self.file.flush()

    def finish(self, y: np.ndarray, meta: dict[str, Any]) -> None:
        self.x.resize(self.written, axis=0)
        self.file.create_dataset("y", data=np.asarray(y, dtype=np.int64))
        for key, value in meta.items():
            self.file.attrs[key] = json.dumps(value)
        self.close()
        fsync_file(self.partial)
        os.replace(self.partial, self.path)

    def close(self) -> None:
        self.file.close()


CacheWriter = NpyWriter | H5Writer


def create_writer(path: Path, shape: Shape) -> CacheWriter:
    """A fresh writer for ``path`` (``.npy`` or ``.h5``/``.hdf5``) of at most ``shape``."""
    return NpyWriter(path, shape) if path.suffix.lower() == ".npy" else H5Writer(path, shape)


def remove_cache(path: Path) -> None:
    """Delete the cache at ``path``: the data first (what completes a cache), then its side
    files."""
    labels_npy, _, meta_json = npy_siblings(path)
    for file in (path, meta_json, labels_npy) if path.suffix.lower() == ".npy" else (path,):
        file.unlink(missing_ok=True)
