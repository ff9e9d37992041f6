"""Metric registry: ``@register_metric("fid", extractor="inception")`` and :func:`compute`.

A metric is a function ``fn(fake: Features, real: Features | None) -> dict[str, float]``.
``Features`` maps names to numpy arrays with one row per image: ``"labels"`` (int64 ``(N,)``,
the conditioning/true class) plus what the metric's *extractor* wrote for the images:

* ``"inception"`` → ``"pool3"`` ``(N, 2048)``, ``"logits"`` ``(N, 1008)`` (the FID Inception,
  needs its downloaded weights);
* ``"classifier"`` → ``"clf_features"`` ``(N, F)``, ``"clf_logits"`` ``(N, n_classes)``
  (gankit's own classifier, :mod:`gankit.metrics.classifier`; offline);
* ``"swd"`` → ``"swd_proj"`` ``(N, L)`` random projections of the pixels
  (:mod:`gankit.metrics.swd`; offline).

Offline metrics (``class_acc``, ``cfid``, ``swd``, ``cprdc``, ``ccoverage_class``) live in
gankit-specific feature spaces: their numbers are **not comparable** with Inception-FID or with
other papers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from gankit.errors import GankitError

Features = dict[str, np.ndarray]
MetricFn = Callable[[Features, "Features | None"], dict[str, float]]

EXTRACTORS = ("inception", "classifier", "swd")
EXTRACTOR_OUTPUTS = {
    "inception": ("pool3", "logits"),
    "classifier": ("clf_features", "clf_logits"),
    "swd": ("swd_proj",),
}
OFFLINE_EXTRACTORS = ("classifier", "swd")


@dataclass(frozen=True)
class Metric:
    """A registered metric: its name, the feature extractor it reads, whether it needs real data."""

    name: str
    extractor: str
    needs_real: bool
    fn: MetricFn

    @property
    def offline(self) -> bool:
        """True when it needs no downloaded weights (and is not comparable to Inception-FID)."""
        return self.extractor in OFFLINE_EXTRACTORS


_METRICS: dict[str, Metric] = {}


def register_metric(
    name: str, extractor: str = "inception", needs_real: bool = True
) -> Callable[[MetricFn], MetricFn]:
    """Decorator adding ``fn`` to the registry under ``name``."""
    if extractor not in EXTRACTORS:
        raise ValueError(f"unknown extractor {extractor!r}; valid: {', '.join(EXTRACTORS)}")

    def add(fn: MetricFn) -> MetricFn:
        if name in _METRICS:
            raise ValueError(f"metric {name!r} registered twice")
        _METRICS[name] = Metric(name, extractor, needs_real, fn)
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
