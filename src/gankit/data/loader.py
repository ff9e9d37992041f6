"""``load_dataset``: read ``data.path`` (:mod:`gankit.data.sources`), or build/reuse
``data.cache`` (:func:`gankit.data.cache_build.build_cache`), and check the result.

Without a cache, an image folder of :data:`LARGE_FOLDER_IMAGES` or more files is decoded on
every start; a warning (once per process and folder, on rank 0 under ``torchrun``) says that
``data.cache`` would make the next start instant.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from gankit.config import DataConfig
from gankit.data.cache import check_cache_path
from gankit.data.cache_build import build_cache
from gankit.data.dataset import ImageDataset, check_labels
from gankit.data.measured import MeasuredDataset
from gankit.data.preprocess import check_request, check_resize
from gankit.data.sources import is_image_folder, read_source
from gankit.errors import GankitError, ParameterError, check_int

log = logging.getLogger(__name__)

LARGE_FOLDER_IMAGES = 20_000
_hinted: set[str] = set()


def _hint_cache(dataset: ImageDataset) -> None:
    """Suggest ``data.cache`` once for a large image folder decoded without one."""
    if dataset.source in _hinted or os.environ.get("RANK", "0") != "0":
        return
    _hinted.add(dataset.source)
    log.warning(
        "%s: decoded %d images into memory; with --set data.cache=FILE.npy (or `gankit data "
        "build`) they are decoded once and the next start is instant",
        dataset.source,
        len(dataset) + dataset.skipped,
    )


def load_dataset(
    data_cfg: DataConfig,
    resolution: int,
    channels: int,
    n_classes: int | None = None,
    resize: str = "legacy",
    quiet: bool = False,
) -> ImageDataset | MeasuredDataset:
    """Load ``data_cfg.path`` as uint8 ``(N, channels, resolution, resolution)`` + labels.

    Args:
        data_cfg: ``path`` (source, see :mod:`gankit.data.sources`), ``skip_bad`` (skip
            unreadable images, counted in ``dataset.skipped``), ``cache`` (``.npy``/``.h5``
            file built once — streamed, in parallel, resumable — and reused while resolution,
            channels and source match), ``limit`` (keep a fixed random subset of that many
            images, :func:`limit_dataset`; 0 = all).
        resolution: side length of the model's images (8..1024).
        channels: 1 (grey) or 3 (RGB); grey data is repeated, colour data reduced to luma.
        n_classes: the model's class count, if labels must fit it (``model.n_classes``).
        resize: the filter bringing images to ``resolution`` (:mod:`gankit.data.preprocess`);
            ``data.cache`` holds ``legacy`` images, so another filter reads ``data.path``.
        quiet: no progress bar while an image folder is decoded or a cache built.

    Raises:
        GankitError: a one-line message naming the path/file for every bad input.
    """
    if not isinstance(data_cfg, DataConfig):
        raise ParameterError("data_cfg", f"expected a DataConfig, got {type(data_cfg).__name__}")
    check_request(resolution, channels)
    check_resize(resize)
    path, cache = _resolved(data_cfg.path), _resolved(data_cfg.cache)
    if path is not None and path.exists() and not (path.is_file() or path.is_dir()):
        raise GankitError(f"data.path = '{data_cfg.path}': not a regular file or a folder")
    if cache is not None:
        check_cache_path(cache)
    if cache is not None and cache != path and resize == "legacy":
        dataset = build_cache(
            path or "", resolution, channels, cache, data_cfg.skip_bad, quiet=quiet
        )
    else:
        dataset = read_source(path, resolution, channels, data_cfg.skip_bad, quiet, resize)
        if is_image_folder(path) and len(dataset) + dataset.skipped >= LARGE_FOLDER_IMAGES:
            _hint_cache(dataset)
    if n_classes is not None:
        check_labels(dataset.y, n_classes, f"{dataset.source} (model.n_classes = {n_classes})")
    return limit_dataset(dataset, data_cfg.limit) if data_cfg.limit else dataset


def with_source(data_cfg: DataConfig, path: str | None) -> DataConfig:
    """``data_cfg`` reading ``path`` instead of its own source (``None``: unchanged), e.g. a run's
    data config for ``--data``. Another source is read directly: the run's ``data.cache`` holds
    the run's own images, and loading another source through it would rebuild it."""
    if path is None:
        return data_cfg
    same = _resolved(path) == _resolved(data_cfg.path)
    return replace(data_cfg, path=path, cache=data_cfg.cache if same else "")


def _resolved(path: str) -> Path | None:
    return Path(path).expanduser().resolve() if path else None


def load_images(
    data_cfg: DataConfig, resolution: int, channels: int, use: str, **kwargs: object
) -> ImageDataset:
    """:func:`load_dataset` for a use that needs clean images (metrics, analysis); ``use`` is
    what to do instead, appended to the error.

    Raises:
        GankitError: as :func:`load_dataset`, or the data are AmbientGAN measurements.
    """
    ds = load_dataset(data_cfg, resolution, channels, **kwargs)
    if isinstance(ds, MeasuredDataset):
        raise GankitError(f"data: {ds.source} holds measurements, not images; {use}")
    return ds


def limit_dataset(
    dataset: ImageDataset | MeasuredDataset, limit: int, seed: int = 0
) -> ImageDataset | MeasuredDataset:
    """A fixed random subset of ``limit`` images or measurements (``data.limit``; seeded, in
    original order), for small-data experiments. The class count and names stay those of the
    full set.

    Raises:
        GankitError: ``limit`` not an int in 1..len(dataset).
    """
    check_int("data.limit", limit, 1, None, "a positive number of images")
    if limit > len(dataset):
        raise GankitError(f"data.limit = {limit}: {dataset.source} has only {len(dataset)} images")
    idx = np.sort(np.random.RandomState(seed).choice(len(dataset), limit, replace=False))
    rows = {"x": np.ascontiguousarray(dataset.x[idx]), "y": dataset.y[idx]}
    if isinstance(dataset, MeasuredDataset):  # each measurement keeps its theta
        rows["theta"] = dataset.theta[idx]
    return replace(dataset, **rows, source=f"{dataset.source} (data.limit = {limit}, seed {seed})")
