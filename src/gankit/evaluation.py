"""Evaluation of a generator: samples → features → metrics (``gankit eval``, ``gankit.evaluate``
and the training loop's eval hook).

Two reference sets, both cached on disk (:mod:`gankit.metrics.stats_cache`), both drawn from
the *whole* data set (``data.limit`` only limits what G trains on):

* Inception metrics (``fid``, ``is``, ``kid``, ``prdc``, ``intra_fid``; the standard
  TF-Inception protocol): a fixed random subset (seed 0) of ``min(n, N)`` images of the whole
  data set.
* Offline metrics (``class_acc``, ``cfid``, ``swd``, ``cprdc``, ``ccoverage_class``): a fixed
  subset of ``min(n, N_train)`` images of gankit's classifier *training* split; the
  classifier's held-out split is evaluated the same way as the samples and reported as
  ``<metric>_real_heldout`` (the ceiling a perfect generator would reach). These numbers are
  gankit-specific and not comparable to Inception-FID.

Generated images: ``n`` samples from the EMA generator with balanced class labels (``i mod K``,
shuffled), latents from :func:`gankit.models.sample_z` (optionally truncated), converted to uint8
like real data (:func:`gankit.data.to_uint8`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from gankit.checkpoint import checkpoint_step
from gankit.config import Config, DataConfig
from gankit.data import MeasuredDataset, load_dataset
from gankit.device import resolve_device
from gankit.errors import GankitError, ParameterError
from gankit.generation import generate
from gankit.metrics import (
    Extractor,
    ExtractorSetup,
    Features,
    array_batches,
    compute,
    extract,
    get_extractor,
    get_metric,
    heldout_split,
)
from gankit.metrics.stats_cache import cache_key, load_reference, save_reference
from gankit.run import RunDir, find_checkpoint, load_generator

__all__ = [
    "EvalContext",
    "evaluate",
    "evaluate_generator",
    "generate_balanced",
    "periodic_eval",
    "prepare",
]

OFFLINE_NOTE = (
    "class_acc, cfid, swd, cprdc and ccoverage_class use gankit's own classifier / raw pixels: "
    "NOT comparable to Inception-FID or to other code; compare with the *_real_heldout ceiling"
)
INCEPTION_NOTE = "TF-Inception protocol (pt_inception-2015-12-05, as torch-fidelity/pytorch-fid)"
REFERENCE_SEED = 0


@dataclass
class EvalContext:
    """What stays fixed across evaluations of one run: extractors and reference features."""

    metrics: list[str]
    extractors: dict[str, Extractor]  # by extractor kind (see gankit.metrics.registry)
    reference: dict[bool, Features]  # offline? → reference features (see module docstring)
    heldout: Features | None  # offline features of the classifier's held-out real images
    info: dict
    n_classes: int  # classes of the reference data: generated labels cycle over these


def _subset(indices: np.ndarray, n: int) -> np.ndarray:
    """A fixed random subset of ``n`` of ``indices`` (sorted, for sequential reads)."""
    if n >= len(indices):
        return indices
    return np.sort(np.random.RandomState(REFERENCE_SEED).choice(indices, n, replace=False))


def _real_features(
    ds, indices: np.ndarray, extractors: dict[str, Extractor], subset: str, quiet: bool
) -> Features:
    """Features of ``ds.x[indices]``, per extractor cached under ``$GANKIT_CACHE/stats``."""
    feats: Features = {"labels": np.asarray(ds.y)[indices].astype(np.int64)}
    missing = []
    for kind, extractor in extractors.items():
        key = cache_key(
            source=ds.source, shape=list(ds.x.shape), subset=subset, n=len(indices),
            extractor=extractor.id,
        )  # fmt: skip
        cached = load_reference(key)
        if cached is None:
            missing.append((kind, extractor, key))
        else:
            feats.update(cached)
    if missing:
        new = extract(
            array_batches(ds.x, ds.y, 100, indices),
            [extractor for _, extractor, _ in missing],
            total=len(indices),
            quiet=quiet,
            desc=f"reference ({subset})",
        )
        for kind, _, key in missing:
            arrays = {name: new[name] for name in get_extractor(kind).outputs}
            save_reference(key, arrays)
            feats.update(arrays)
    return feats


def prepare(
    metrics: Sequence[str],
    data_cfg: DataConfig,
    resolution: int,
    channels: int,
    n: int,
    inception_weights: str | None,
    device: torch.device,
    quiet: bool = True,
) -> EvalContext:
    """Build the extractors the ``metrics`` need (each kind's registered factory: Inception
    weights, the cached/trained classifier, ...) and the reference features."""
    kinds = sorted({get_metric(name).extractor for name in metrics})  # unknown names fail first
    ds = load_dataset(data_cfg, resolution, channels)
    if isinstance(ds, MeasuredDataset):
        raise GankitError(
            f"data: {ds.source} holds measurements, not images; evaluate against clean "
            'reference images (gankit eval --data PATH; --data "" = the embedded digits)'
        )
    setup = ExtractorSetup(
        ds.x, ds.y, ds.n_classes, ds.source, device, inception_weights or None, quiet
    )
    extractors: dict[str, Extractor] = {}
    info: dict = {"data": ds.source}
    for kind in kinds:
        extractors[kind], extra = get_extractor(kind).factory(setup)
        info.update(extra)
    reference: dict[bool, Features] = {}
    heldout = None
    online = {k: e for k, e in extractors.items() if not get_extractor(k).offline}
    if online:
        idx = _subset(np.arange(len(ds)), n)
        reference[False] = _real_features(ds, idx, online, "all", quiet)
        info["n_reference"] = len(idx)
    offline = {k: e for k, e in extractors.items() if get_extractor(k).offline}
    if offline:
        train_idx, held_idx = heldout_split(len(ds))
        idx = _subset(train_idx, n)
        reference[True] = _real_features(ds, idx, offline, "clf-train", quiet)
        heldout = _real_features(ds, held_idx, offline, "clf-heldout", quiet)
        info["n_reference_offline"], info["n_real_heldout"] = len(idx), len(held_idx)
    return EvalContext(list(metrics), extractors, reference, heldout, info, ds.n_classes)


@torch.no_grad()
def generate_balanced(
    G: nn.Module,
    n: int,
    batch_size: int = 100,
    truncation: float = 0.0,
    seed: int = 0,
    n_classes: int | None = None,
) -> Iterator[tuple[Tensor, Tensor]]:
    """Yield ``(uint8 (B, C, H, W), labels (B,))`` batches of ``n`` samples of ``G``.

    Labels are balanced (``i mod n_classes``; default ``G.n_classes``, capped by it) and
    shuffled with ``seed``; so is ``z`` (drawn batch by batch by
    :func:`gankit.generation.generate`). Pass the data's class count when the data has fewer
    classes than the model, so that every label is one the reference (and classifier) knows.
    """
    device = next(G.parameters()).device
    labels = torch.arange(n) % min(n_classes or G.n_classes, G.n_classes)
    labels = labels[torch.randperm(n, generator=torch.Generator().manual_seed(seed))]
    gen = torch.Generator(device).manual_seed(seed)
    yield from generate(G, labels, batch_size, truncation, generator=gen)


def evaluate_generator(
    G: nn.Module,
    ctx: EvalContext,
    n: int,
    batch_size: int = 100,
    truncation: float = 0.0,
    seed: int = 0,
    quiet: bool = True,
) -> dict[str, float]:
    """Metric values of ``n`` samples of ``G`` (restores G's train/eval mode afterwards)."""
    was_training = G.training
    G.eval()
    try:
        fake = extract(
            generate_balanced(G, n, batch_size, truncation, seed, ctx.n_classes),
            list(ctx.extractors.values()),
            total=n,
            quiet=quiet,
            desc="generated",
        )
    finally:
        G.train(was_training)
    result: dict[str, float] = {}
    for name in ctx.metrics:
        result.update(compute([name], fake, ctx.reference.get(get_metric(name).offline)))
    return result


def _heldout_ceiling(ctx: EvalContext) -> dict[str, float]:
    names = [m for m in ctx.metrics if get_metric(m).offline]
    if not names or ctx.heldout is None:
        return {}
    values = compute(names, ctx.heldout, ctx.reference[True])
    return {f"{k}_real_heldout": v for k, v in values.items()}


def _check_n(n: int, param: str) -> None:
    if n < 10:
        raise ParameterError(param, f"expected at least 10 samples, got {n}")


def evaluate(
    source: str | Path,
    metrics: Sequence[str],
    n: int = 50000,
    data: str | None = None,
    inception_weights: str | None = None,
    truncation: float = 0.0,
    device: str = "auto",
    seed: int = 0,
    quiet: bool = False,
) -> dict:
    """Evaluate the EMA generator of a run/checkpoint (``gankit eval``); a JSON-able result.

    Also appends ``{"step", "eval": {...}}`` to the run's ``metrics.jsonl`` (when ``source``
    belongs to a run).

    Args:
        source: run directory (latest checkpoint) or checkpoint directory.
        metrics: registry names, e.g. ``["fid", "kid"]`` or ``["class_acc", "cfid", "swd"]``.
        n: generated samples (and reference images, capped by the data set size).
        data: reference data path; ``None``: the run's ``data.path``.
        inception_weights: ``pt_inception-2015-12-05-6726825d.pth``; ``None``: the config's
            ``eval.inception_weights`` or the cache path.

    Raises:
        ParameterError: no metrics, ``n < 10``, bad ``device``.
        GankitError: unknown metric, missing source or weights.
    """
    if not metrics:
        raise ParameterError("metrics", "expected at least one metric name")
    for name in metrics:
        get_metric(name)
    _check_n(n, "n")
    dev = resolve_device(device)
    ckpt = find_checkpoint(source)
    G = load_generator(ckpt, device=dev)
    cfg: Config = G.config
    data_cfg = replace(cfg.data, path=data if data is not None else cfg.data.path, limit=0)
    ctx = prepare(
        metrics,
        data_cfg,
        cfg.model.resolution,
        cfg.model.channels,
        n,
        inception_weights or cfg.eval.inception_weights,
        dev,
        quiet,
    )
    values = evaluate_generator(G, ctx, n, cfg.eval.batch_size, truncation, seed, quiet)
    values.update(_heldout_ceiling(ctx))
    step = checkpoint_step(ckpt)
    step = step if step >= 0 else None
    run = RunDir.of_checkpoint(ckpt)
    if run is not None:
        run.append_metrics({"step": step, "eval": values})
    notes = {}
    if any(get_metric(m).offline for m in metrics):
        notes["offline"] = OFFLINE_NOTE
    if any(not get_metric(m).offline for m in metrics):
        notes["inception"] = INCEPTION_NOTE
    return {
        "source": str(ckpt),
        "step": step,
        "n": n,
        "truncation": truncation,
        "seed": seed,
        **ctx.info,
        "eval": {k: (v if math.isfinite(v) else None) for k, v in values.items()},
        "notes": notes,
    }


_CONTEXTS: dict[tuple, EvalContext] = {}


def periodic_eval(G: nn.Module, cfg: Config, device: torch.device) -> dict[str, float]:
    """``cfg.eval.metrics`` on ``cfg.eval.n`` samples of ``G`` (the training loop's eval hook,
    every ``cfg.eval.every`` steps). Extractors and reference features are prepared once per
    process (and cached on disk). The values are returned, not logged.
    """
    _check_n(cfg.eval.n, "eval.n")
    key = (
        cfg.data.path, cfg.model.resolution, cfg.model.channels, tuple(cfg.eval.metrics),
        cfg.eval.n, cfg.eval.inception_weights, str(device),
    )  # fmt: skip
    if key not in _CONTEXTS:
        _CONTEXTS[key] = prepare(
            cfg.eval.metrics,
            replace(cfg.data, limit=0),
            cfg.model.resolution,
            cfg.model.channels,
            cfg.eval.n,
            cfg.eval.inception_weights,
            torch.device(device),
        )
    return evaluate_generator(
        G, _CONTEXTS[key], cfg.eval.n, cfg.eval.batch_size, cfg.eval.truncation, cfg.train.seed
    )
