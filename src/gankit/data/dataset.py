"""The in-memory image data set every source is loaded into, and the uint8 ↔ float mapping.

Images are kept as uint8 ``(N, C, H, W)`` (a numpy array or a read-only ``np.memmap``) and
converted to float only per batch on the training device, so a 50k CIFAR set costs 150 MB and an
ImageNet-size cache can be memory-mapped instead of read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from gankit.errors import GankitError


@dataclass
class ImageDataset:
    """Labelled uint8 images at the model's resolution and channel count.

    Attributes:
        x: uint8 array-like ``(N, C, H, W)`` with ``H == W == resolution``; may be a memmap.
        y: int64 ``(N,)`` class indices in ``[0, n_classes)`` (all 0 for unconditional data).
        n_classes: number of classes (1 = unconditional).
        class_names: ``n_classes`` names (folder names, CIFAR label names, digits ``"0".."9"``).
        source: human-readable description of where the images came from.
        skipped: unreadable files skipped because of ``data.skip_bad`` (0 otherwise).
    """

    x: np.ndarray
    y: np.ndarray
    n_classes: int
    class_names: list[str]
    source: str
    skipped: int = 0
    resolution: int = field(init=False)
    channels: int = field(init=False)

    def __post_init__(self) -> None:
        if self.x.ndim != 4 or self.x.dtype != np.uint8 or self.x.shape[2] != self.x.shape[3]:
            raise GankitError(
                f"{self.source}: images must be uint8 (N, C, H, W) with H == W, "
                f"got {self.x.dtype} {tuple(self.x.shape)}"
            )
        if self.y.shape != (self.x.shape[0],):
            raise GankitError(
                f"{self.source}: expected {self.x.shape[0]} labels (one per image), "
                f"got shape {tuple(self.y.shape)}"
            )
        if len(self.class_names) != self.n_classes:
            raise GankitError(
                f"{self.source}: {len(self.class_names)} class names for {self.n_classes} classes"
            )
        self.y = self.y.astype(np.int64, copy=False)
        check_labels(self.y, self.n_classes, self.source)
        self.channels, self.resolution = int(self.x.shape[1]), int(self.x.shape[2])

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def batch(self, indices: torch.Tensor | Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Gather a batch: ``indices (B,)`` → ``(x uint8 (B, C, H, W), y int64 (B,))`` on CPU."""
        return gather(self.x, self.y, indices)


def gather(
    x: np.ndarray, y: np.ndarray, indices: torch.Tensor | Sequence[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows ``indices (B,)`` of ``x (N, ...)`` (an array or a memory map) and ``y (N,)`` as CPU
    tensors (``x``'s rows contiguous)."""
    idx = torch.as_tensor(indices, dtype=torch.long).numpy()
    return torch.from_numpy(np.ascontiguousarray(x[idx])), torch.from_numpy(y[idx])


def check_labels(y: np.ndarray, n_classes: int, source: str) -> None:
    """Raise :class:`GankitError` unless every label of ``y (N,)`` lies in ``[0, n_classes)``."""
    if y.size == 0:
        return
    lo, hi = int(y.min()), int(y.max())
    if lo < 0:
        raise GankitError(f"{source}: labels must be class indices >= 0, found {lo}")
    if hi >= n_classes:
        raise GankitError(
            f"{source}: labels must lie in [0, {n_classes - 1}] for {n_classes} classes, "
            f"found range [{lo}, {hi}]"
        )


def to_float(x_uint8: torch.Tensor) -> torch.Tensor:
    """Map uint8 pixels ``(B, C, H, W)`` in ``{0..255}`` to float32 in ``[-1, 1]``: ``x/127.5 - 1``.

    ``[-1, 1]`` is the range of the generator's tanh output, so real and fake images meet the
    discriminator on the same scale. Runs on the tensor's device (convert after the H2D copy).
    """
    if x_uint8.dtype != torch.uint8:
        raise TypeError(f"to_float expects a uint8 tensor, got {x_uint8.dtype}")
    return x_uint8.to(torch.float32).div_(127.5).sub_(1.0)


def to_uint8(x_float: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`to_float`: float ``(B, C, H, W)`` in ``[-1, 1]`` → rounded uint8."""
    return ((x_float.detach().float() + 1.0) * 127.5).round_().clamp_(0, 255).to(torch.uint8)
