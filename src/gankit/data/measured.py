"""Measured data sets: lossy measurements ``y = f_θ(x)`` of labelled images (AmbientGAN).

``gankit measure`` writes one ``.npz`` (:func:`write_measured`) that ``gankit train`` reads back
(:func:`read_measured`, chosen by :func:`gankit.data.load_dataset` when the file has a
``measurement`` key):

================  ==============================================================================
key               content
================  ==============================================================================
``x``             the measurements: uint8 ``(N, C, h, w)`` when every value is a pixel value of
                  the image (missing pixels/patches: exact), else float32 ``(N, ...)`` in the
                  measurement's own units (blur + noise, projections)
``y``             int64 ``(N,)`` labels of the measured images
``theta``         ``(N, ...)`` the θ each measurement was made with (used only by the unmeasure
                  baseline's inverse, e.g. which pixels are missing)
``measurement``   the canonical measurement spec, e.g. ``block_pixels:p=0.5``
``image_shape``   ``(C, H, W)`` of the images that were measured
``class_names``   one name per class
``clean_source``  where the clean images came from
================  ==============================================================================
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from gankit.data.arrays import LOAD_ERRORS, check_class_names, check_y
from gankit.data.dataset import check_labels, gather
from gankit.errors import GankitError
from gankit.io_utils import atomic_write
from gankit.measurements import build_measurement

_KEYS = ("x", "y", "theta", "measurement", "image_shape", "class_names", "clean_source")


@dataclass
class MeasuredDataset:
    """Measurements of labelled images, with the θ they were made with.

    Attributes:
        x: uint8 ``(N, C, h, w)`` (pixel-valued measurements) or float32 ``(N, ...)``.
        y: int64 ``(N,)`` labels in ``[0, n_classes)``.
        theta: ``(N, ...)`` the measurement parameters θ per sample.
        measurement: canonical spec of the measurement (``gankit.measurements``).
        image_shape: ``(C, H, W)`` of the measured images.
        class_names: ``n_classes`` names.
        source: human-readable description of these measurements (file, spec).
        clean_source: where the clean images came from.
    """

    x: np.ndarray
    y: np.ndarray
    theta: np.ndarray
    measurement: str
    image_shape: tuple[int, int, int]
    class_names: list[str]
    source: str
    clean_source: str
    n_classes: int = field(init=False)
    channels: int = field(init=False)
    resolution: int = field(init=False)

    def __post_init__(self) -> None:
        n = self.x.shape[0]
        if self.x.dtype not in (np.uint8, np.float32):
            raise GankitError(f"{self.source}: measurements must be uint8 or float32")
        if self.y.shape != (n,) or self.theta.shape[:1] != (n,):
            raise GankitError(
                f"{self.source}: {n} measurements but labels {self.y.shape} and theta "
                f"{self.theta.shape}; expected one of each per measurement"
            )
        self.image_shape = tuple(int(s) for s in self.image_shape)
        self.n_classes = len(self.class_names)
        check_labels(self.y, self.n_classes, self.source)
        self.channels, self.resolution = self.image_shape[0], self.image_shape[1]

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def batch(self, indices: torch.Tensor | Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """``indices (B,)`` → ``(measurements (B, ...) uint8 or float32, labels (B,))`` on CPU."""
        return gather(self.x, self.y, indices)


def is_measured(path: Path) -> bool:
    """Whether ``path`` is a ``.npz`` written by :func:`write_measured`."""
    try:
        with np.load(path, allow_pickle=False) as f:
            return "measurement" in f.files
    except (OSError, ValueError, zipfile.BadZipFile, EOFError):
        return False  # the regular reader reports what is wrong with the file


def write_measured(path: str | Path, data: MeasuredDataset) -> Path:
    """Write ``data`` to the ``.npz`` file ``path`` atomically (keys in the module doc)."""
    arrays = {
        "x": data.x,
        "y": data.y,
        "theta": data.theta,
        "measurement": np.array(data.measurement),
        "image_shape": np.array(data.image_shape, dtype=np.int64),
        "class_names": np.array(data.class_names),
        "clean_source": np.array(data.clean_source),
    }
    return atomic_write(Path(path), lambda f: np.savez(f, **arrays))


def read_measured(path: str | Path) -> MeasuredDataset:
    """Read a ``.npz`` written by :func:`write_measured` (one-line error naming the file)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in _KEYS if k not in f.files]
            if missing:
                raise GankitError(
                    f"{path}: missing key(s) {', '.join(missing)} of a measured data set "
                    f"(written by gankit measure)"
                )
            x, spec, shape = f["x"], str(f["measurement"]), f["image_shape"]
            if shape.shape != (3,) or not np.issubdtype(shape.dtype, np.integer) or shape.min() < 1:
                raise GankitError(
                    f"{path}: 'image_shape' must be 3 positive integers (C, H, W), got {shape}"
                )
            image_shape = tuple(shape.tolist())
            measurement = build_measurement(spec, image_shape, f"{path}: measurement")
            expected = tuple(measurement.output_shape(image_shape))
            if x.dtype.kind == "f" and not np.isfinite(x).all():
                raise GankitError(f"{path}: 'x' holds NaN or infinite measurements")
            if x.shape[1:] != expected:
                raise GankitError(
                    f"{path}: 'x' holds measurements of shape {x.shape[1:]}; '{spec}' of "
                    f"{image_shape} images gives {expected}"
                )
            return MeasuredDataset(
                x=x,
                y=check_y(f["y"], x.shape[0], path),
                theta=f["theta"],
                measurement=spec,
                image_shape=image_shape,
                class_names=check_class_names(f["class_names"], path),
                source=str(path),
                clean_source=str(f["clean_source"]),
            )
    except LOAD_ERRORS as err:
        raise GankitError(f"{path}: not a readable measured .npz file ({err})") from None
