"""Training data: every source becomes an in-memory (or memory-mapped) uint8 ``ImageDataset``.

``load_dataset(cfg.data, resolution, channels)`` reads the embedded MNIST digits, an image
folder, ``.npz``, CIFAR batches or a ``.npy``/HDF5 cache; ``BatchSampler`` draws seeded, resumable,
rank-sharded index batches; ``to_float`` maps uint8 batches to ``[-1, 1]`` on the device.
A ``.npz`` written by ``gankit measure`` loads as a ``MeasuredDataset`` (AmbientGAN measurements).
"""

from gankit.data.dataset import ImageDataset, to_float, to_uint8
from gankit.data.loader import load_dataset
from gankit.data.measured import MeasuredDataset, read_measured, write_measured
from gankit.data.sampler import BatchSampler

__all__ = [
    "BatchSampler",
    "ImageDataset",
    "MeasuredDataset",
    "load_dataset",
    "read_measured",
    "to_float",
    "to_uint8",
    "write_measured",
]
