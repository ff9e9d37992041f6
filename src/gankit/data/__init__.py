"""Training data: every source becomes an in-memory (or memory-mapped) uint8 ``ImageDataset``.

``load_dataset(cfg.data, resolution, channels)`` reads the embedded MNIST digits, an image
folder, ``.npz``, CIFAR batches or a ``.npy``/HDF5 cache, building ``data.cache`` first when it
is set; ``build_cache`` builds a cache ahead of training (streamed, parallel, resumable);
``BatchSampler`` draws seeded, resumable, rank-sharded index batches; ``Prefetcher`` prepares
the next batches in a background thread; ``to_float`` maps uint8 batches to ``[-1, 1]`` on the
device; ``loader_throughput`` times the data path alone. A ``.npz`` written by
``gankit measure`` loads as a ``MeasuredDataset`` (AmbientGAN measurements); ``read_images``
reads samples of any generator at their own size (``gankit eval --images``).
"""

from gankit.data.cache_build import build_cache
from gankit.data.dataset import ImageDataset, to_float, to_uint8
from gankit.data.loader import load_dataset, load_images, with_source
from gankit.data.measured import MeasuredDataset, read_measured, write_measured
from gankit.data.prefetch import Prefetcher
from gankit.data.sampler import BatchSampler
from gankit.data.sources import read_images
from gankit.data.throughput import loader_throughput

__all__ = [
    "BatchSampler",
    "ImageDataset",
    "MeasuredDataset",
    "Prefetcher",
    "build_cache",
    "load_dataset",
    "load_images",
    "loader_throughput",
    "read_images",
    "with_source",
    "read_measured",
    "to_float",
    "to_uint8",
    "write_measured",
]
