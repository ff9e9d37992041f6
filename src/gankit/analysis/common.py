"""Plumbing shared by the ``gankit analyze`` commands: input checks, data, subsets, summaries.

Images handed to an analysis are float ``(N, C, H, W)`` in ``[-1, 1]`` (the generator's range,
:func:`gankit.data.to_float` of uint8 data) at the model's resolution and channel count, with
int64 labels ``(N,)`` in ``[0, n_classes)``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gankit.config import Config
from gankit.data import ImageDataset, load_images, with_source
from gankit.errors import GankitError, ParameterError, check_int
from gankit.io_utils import atomic_write

QUANTILES = (0.1, 0.5, 0.9)
RANGE_SLACK = 1e-3
"""How far outside [-1, 1] an image value may lie (rounding of a tanh or a resize)."""


def check_positive(value: int, param: str) -> None:
    """ParameterError naming ``param`` (the CLI shows its flag) unless ``value`` is an
    integer >= 1."""
    check_int(param, value, 1, expected="a positive integer")


def check_tensor(value: object, param: str, shape: str) -> torch.Tensor:
    """``value`` if it is a tensor with at least as many dims as ``shape`` (e.g. ``"(Q, F)"``;
    a ``...`` in it is not counted) names, else a :class:`ParameterError` naming ``param`` and
    ``shape``."""
    want = sum(dim.strip() != "..." for dim in shape.strip("()").split(","))
    if not isinstance(value, torch.Tensor):
        raise ParameterError(param, f"expected a tensor {shape}, got {type(value).__name__}")
    if value.dim() < want:
        raise ParameterError(param, f"expected a tensor {shape}, got shape {tuple(value.shape)}")
    return value


def check_eval(module: object, param: str, kind: type[torch.nn.Module], what: str) -> None:
    """ParameterError naming ``param`` unless ``module`` is a ``kind`` (``what``: the network
    expected, e.g. ``"a generator (gankit.load(RUN))"``); GankitError naming it if it is in
    training mode: batch norm would mix the images of a batch and spectral norm would update
    its vectors during the analysis. A ``torch.compile`` d network counts as the one it wraps."""
    if not isinstance(getattr(module, "_orig_mod", module), kind):  # a path, or G given for D
        raise ParameterError(param, f"expected {what}, got {type(module).__name__}")
    if module.training:
        raise GankitError(f"{param}: expected a network in eval mode (call .eval() first)")


def check_images(
    x: torch.Tensor,
    y: torch.Tensor,
    resolution: int,
    channels: int,
    n_classes: int,
    param: str,
    in_range: bool = True,
) -> None:
    """GankitError naming ``param`` unless ``x: (N, channels, resolution, resolution)`` float
    tensor with ``N >= 1`` and, with ``in_range``, its finite values in [-1, 1] (non-finite
    ones are allowed: a caller may report them), and ``y: (N,)`` integer labels in
    ``[0, n_classes)``."""
    want = f"(N, {channels}, {resolution}, {resolution})"
    if not (isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor)):
        raise GankitError(
            f"{param}: expected image and label tensors, got {type(x).__name__} and "
            f"{type(y).__name__}"
        )
    if not x.dtype.is_floating_point:
        raise GankitError(
            f"{param}: expected float images in [-1, 1], got {x.dtype} (uint8 images: "
            "gankit.data.to_float)"
        )
    if x.dim() != 4 or tuple(x.shape[1:]) != (channels, resolution, resolution):
        raise GankitError(
            f"{param}: expected images {want} for this model, got shape {tuple(x.shape)}"
        )
    if x.shape[0] < 1:
        raise GankitError(f"{param}: expected at least one image, got none")
    finite = x[torch.isfinite(x)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.numel() else (0.0, 0.0)
    if in_range and (lo < -1 - RANGE_SLACK or hi > 1 + RANGE_SLACK):
        raise GankitError(f"{param}: expected images in [-1, 1], found [{lo:.4g}, {hi:.4g}]")
    if y.shape != (x.shape[0],) or y.dtype.is_floating_point or y.dtype == torch.bool:
        raise GankitError(
            f"{param}: expected {x.shape[0]} integer labels, got {y.dtype} {tuple(y.shape)}"
        )
    if int(y.min()) < 0 or int(y.max()) >= n_classes:
        raise GankitError(
            f"{param}: labels must lie in [0, {n_classes - 1}], found [{int(y.min())}, "
            f"{int(y.max())}]"
        )


def run_data(cfg: Config, data: str | None, quiet: bool = False) -> ImageDataset:
    """The data set ``data`` (default: the run's ``data.path``) at the model's resolution and
    channels, its labels checked against ``model.n_classes`` (images are fitted like training's).

    Raises:
        GankitError: the data are AmbientGAN measurements (``gankit measure``), not images.
    """
    data_cfg = with_source(cfg.data, data)
    m = cfg.model
    use = "analyse against clean images (--data PATH)"
    return load_images(data_cfg, m.resolution, m.channels, use, n_classes=m.n_classes, quiet=quiet)


def subset(indices: np.ndarray, n: int, seed: int, param: str, what: str) -> np.ndarray:
    """A seeded random choice of ``n`` of ``indices`` (sorted); GankitError naming ``param`` if
    ``n`` is not in ``1..len(indices)``."""
    check_positive(n, param)
    if n > len(indices):
        raise GankitError(f"{param}: {n} requested but {what} has only {len(indices)} images")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(np.asarray(indices), n, replace=False))


def pixel_vectors(x: torch.Tensor) -> torch.Tensor:
    """uint8 ``(B, C, H, W)`` → float64 ``(B, C·H·W)`` in [0, 1] (pixel-space distances)."""
    return x.flatten(1).double() / 255


def summarize(values: torch.Tensor | np.ndarray) -> dict[str, float | int | None]:
    """``{"n", "mean", "min", "q10", "median", "q90", "max"}`` of the finite entries of
    ``values`` (``n`` counts them; with none, the statistics are ``None``)."""
    v = np.asarray(torch.as_tensor(values).detach().double().cpu())
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"n": 0, **dict.fromkeys(("mean", "min", "q10", "median", "q90", "max"))}
    q10, median, q90 = np.quantile(v, QUANTILES)
    return {"n": int(v.size), "mean": float(v.mean()), "min": float(v.min()), "q10": float(q10),
            "median": float(median), "q90": float(q90), "max": float(v.max())}  # fmt: skip


def write_json(path: Path, data: dict[str, Any]) -> Path:
    """Write ``data`` as indented JSON (non-finite floats as ``null``) atomically (a kill
    leaves the previous file or none) and return ``path``."""

    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v

    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(clean(data), indent=2).encode()
    return atomic_write(path, lambda f: f.write(text))


def tiles(rows: Sequence[torch.Tensor], channels: int) -> torch.Tensor:
    """Stack rows of uint8 tiles ``(k, C or 1, H, W)`` (equal ``k``) into one ``(R·k, C, H, W)``
    batch for :func:`gankit.generation.save_grid` with ``ncol=k``; 1-channel maps are repeated to
    ``channels``."""
    return torch.cat([r.cpu().expand(-1, channels, -1, -1) for r in rows])
