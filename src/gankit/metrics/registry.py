"""Metric and extractor registries: ``@register_metric("fid", extractor="inception")``,
``@register_extractor("inception", outputs=(...), offline=False)`` and :func:`compute`.

A metric is a function ``fn(fake: Features, real: Features | None) -> dict[str, float]``.
``Features`` maps names to numpy arrays with one row per image: ``"labels"`` (int64 ``(N,)``,
the conditioning/true class) plus what the metric's *extractor* wrote for the images:

* ``"inception"`` → ``"pool3"`` ``(N, 2048)``, ``"logits"`` ``(N, 1008)`` (the FID Inception,
  needs its downloaded weights);
* ``"classifier"`` → ``"clf_features"`` ``(N, F)``, ``"clf_logits"`` ``(N, n_classes)``
  (gankit's own classifier, :mod:`gankit.metrics.classifier`; offline);
* ``"swd"`` → ``"swd_proj"`` ``(N, L)`` random projections of the pixels
  (:mod:`gankit.metrics.swd`; offline).

An extractor kind is registered with a *factory* ``factory(setup: ExtractorSetup) ->
(extractor, info)`` that builds the extractor for one reference data set (loading weights or
training gankit's classifier); ``info`` is merged into ``gankit eval``'s JSON.

Offline metrics (``class_acc``, ``cfid``, ``swd``, ``cprdc``, ``ccoverage_class``) live in
gankit-specific feature spaces: their numbers are **not comparable** with Inception-FID or with
other papers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from gankit.errors import GankitError

Features = dict[str, np.ndarray]
MetricFn = Callable[[Features, "Features | None"], dict[str, float]]


class Extractor(Protocol):
    """``extractor(images uint8 (B, C, H, W)) -> {output name: (B, ...)}``; ``id`` names its
    weights and protocol (part of the reference-feature cache key)."""

    id: str

    def __call__(self, images: Tensor) -> dict[str, Tensor]: ...


@dataclass(frozen=True)
class ExtractorSetup:
    """What an extractor factory may use: the reference data and the run's settings.

    Attributes:
        x: uint8 ``(N, C, H, W)`` array-like of the whole reference data set; y: int64 ``(N,)``.
        n_classes: classes of the data; source: the data's source string (cache keys).
        device: where the extractor runs; inception_weights: path or None (the cache path).
        quiet: no progress bars.
        resize: how images are resized for a network's input (``legacy``: the extractor's own
            protocol, e.g. TF1 bilinear for Inception; ``clean``: clean-fid's PIL bicubic).
    """

    x: Any
    y: Any
    n_classes: int
    source: str
    device: torch.device
    inception_weights: str | None = None
    quiet: bool = True
    resize: str = "legacy"


ExtractorFactory = Callable[[ExtractorSetup], "tuple[Extractor, dict[str, Any]]"]


@dataclass(frozen=True)
class ExtractorKind:
    """A registered extractor kind: its output names, whether it is offline (no downloaded
    weights, gankit-specific feature space) and its factory."""

    name: str
    outputs: tuple[str, ...]
    offline: bool
    factory: ExtractorFactory


_EXTRACTORS: dict[str, ExtractorKind] = {}


def register_extractor(
    name: str, outputs: Sequence[str], offline: bool
) -> Callable[[ExtractorFactory], ExtractorFactory]:
    """Decorator registering ``factory(setup) -> (extractor, info)`` as extractor kind ``name``."""

    def add(factory: ExtractorFactory) -> ExtractorFactory:
        if name in _EXTRACTORS:
            raise ValueError(f"extractor {name!r} registered twice")
        _EXTRACTORS[name] = ExtractorKind(name, tuple(outputs), offline, factory)
        return factory

    return add


def get_extractor(name: str) -> ExtractorKind:
    if name not in _EXTRACTORS:
        raise GankitError(f"unknown extractor '{name}'; valid: {', '.join(sorted(_EXTRACTORS))}")
    return _EXTRACTORS[name]


@dataclass(frozen=True)
class Metric:
    """A registered metric: its name, the feature extractor it reads, whether it needs real data,
    whether it reads the images' class labels (class-based: per-class or conditional) and the
    generated images it needs of every class (``min_per_class``; 0: no per-class statistic)."""

    name: str
    extractor: str
    needs_real: bool
    fn: MetricFn
    needs_labels: bool = False
    min_per_class: int = 0

    @property
    def offline(self) -> bool:
        """True when it needs no downloaded weights (and is not comparable to Inception-FID)."""
        return get_extractor(self.extractor).offline


_METRICS: dict[str, Metric] = {}


def register_metric(
    name: str,
    extractor: str = "inception",
    needs_real: bool = True,
    needs_labels: bool = False,
    min_per_class: int = 0,
) -> Callable[[MetricFn], MetricFn]:
    """Decorator adding ``fn`` to the registry under ``name`` (``extractor``: a kind registered
    with :func:`register_extractor`; the other arguments: :class:`Metric`'s fields)."""

    def add(fn: MetricFn) -> MetricFn:
        if name in _METRICS:
            raise ValueError(f"metric {name!r} registered twice")
        _METRICS[name] = Metric(name, extractor, needs_real, fn, needs_labels, min_per_class)
        return fn

    return add


def available_metrics() -> list[str]:
    return sorted(_METRICS)


def get_metric(name: str) -> Metric:
    """The registered metric ``name``; unknown names raise a one-line :class:`GankitError`."""
    if name not in _METRICS:
        raise GankitError(
            f"unknown metric '{name}'; valid metrics: {', '.join(available_metrics())}"
        )
    return _METRICS[name]


def compute(
    metrics: Sequence[str], fake: Features, real: Features | None = None
) -> dict[str, float]:
    """Run the metrics ``metrics`` (registry names) on already extracted features.

    Args:
        metrics: e.g. ``["fid", "kid", "is"]``.
        fake: features of the generated images (see module docstring for the keys).
        real: features of the reference images (``None`` only if no metric needs them).
    Returns:
        The merged result dicts, e.g. ``{"fid": ..., "kid_mean": ..., "kid_std": ...}``.
    """
    result: dict[str, float] = {}
    for name in metrics:
        metric = get_metric(name)
        if metric.needs_real and real is None:
            raise GankitError(f"metric '{name}' needs reference (real) features")
        result.update(metric.fn(fake, real))
    return result
