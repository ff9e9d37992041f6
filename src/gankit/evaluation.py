"""Evaluation: samples → features → metrics, for a run's generator (``gankit eval RUN``,
``gankit.evaluate``, the training loop's eval hook) or for images of any generator
(``gankit eval --images``, :func:`evaluate_images`); both share :func:`prepare` (extractors,
reference features), :func:`score` (features → metric values) and the JSON result.

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

Generated images: ``n`` samples from the EMA generator drawn as ``gankit sample`` draws them
(:func:`gankit.generation.sample_batches`): class labels ``i mod K``, every latent drawn up front
from the seed with :func:`gankit.models.sample_z` (optionally truncated), converted to uint8
like real data (:func:`gankit.data.to_uint8`). So ``gankit sample --out s.npz`` with the same
``n`` and seed writes exactly the images that ``gankit eval`` scores.

Given images (:func:`evaluate_images`) are read at their own size with
:func:`gankit.data.read_images`; the reference is loaded at that size and channel count (as for
a run at the model's). The first ``n`` images are scored. Labels (the ``.npz`` ``y`` or class
sub-folders) are matched to the reference classes by name when every class name of the images
is one of the reference's, else used as indices as ``gankit train`` reads them; images without
labels can only be scored by label-free metrics.

``resize``: ``legacy`` (default) keeps the TF-Inception protocol (TF1 bilinear to 299) and the
training data geometry (PIL bilinear); ``clean`` uses clean-fid's resize (PIL bicubic on float
channels, :func:`gankit.data.preprocess.resize_clean`) wherever images are resized: to 299 for
Inception, and where images (reference or given) are fitted to the evaluation resolution.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from gankit.checkpoint import checkpoint_step
from gankit.config import Config, DataConfig
from gankit.data import load_images, read_images, with_source
from gankit.data.dataset import check_labels
from gankit.data.preprocess import check_request, check_resize
from gankit.device import resolve_device
from gankit.errors import GankitError, ParameterError, check_bool, check_int, check_path
from gankit.generation import check_sample_count, eval_mode, sample_batches
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
from gankit.metrics.stats_cache import cache_key, data_digest, load_reference, save_reference
from gankit.models.latent import check_truncation
from gankit.run import RunDir, load_generator

__all__ = [
    "EvalContext",
    "check_per_class",
    "evaluate",
    "evaluate_generator",
    "evaluate_images",
    "generate_balanced",
    "periodic_eval",
    "prepare",
    "score",
]

OFFLINE_NOTE = (
    "class_acc, cfid, swd, cprdc and ccoverage_class use gankit's own classifier / raw pixels: "
    "NOT comparable to Inception-FID or to other code; compare with the *_real_heldout ceiling"
)
INCEPTION_NOTES = {
    "legacy": "TF-Inception protocol (pt_inception-2015-12-05, as torch-fidelity/pytorch-fid)",
    "clean": "pt_inception-2015-12-05 with clean-fid's resize (PIL bicubic to 299): compare "
    "only with clean-fid 'clean' numbers",
}
REFERENCE_SEED = 0
REFERENCE_SPLITS = {
    "inception": "whole data set: fixed random subset (seed 0) of min(n, N) images",
    "offline": "classifier training split (80 %, seed 0): fixed random subset of min(n, N_train) "
    "images; the held-out 20 % gives *_real_heldout",
}


@dataclass
class EvalContext:
    """What stays fixed across evaluations of one run: extractors and reference features."""

    metrics: list[str]
    extractors: dict[str, Extractor]  # by extractor kind (see gankit.metrics.registry)
    reference: dict[bool, Features]  # offline? → reference features (see module docstring)
    heldout: Features | None  # offline features of the classifier's held-out real images
    info: dict
    n_classes: int  # classes of the reference data: generated labels cycle over these
    class_names: list[str]  # their names (given images' labels are matched to them)


def _subset(indices: np.ndarray, n: int) -> np.ndarray:
    """A fixed random subset of ``n`` of ``indices`` (sorted, for sequential reads)."""
    if n >= len(indices):
        return indices
    return np.sort(np.random.RandomState(REFERENCE_SEED).choice(indices, n, replace=False))


def _real_features(
    ds,
    source: str,
    content: str,
    indices: np.ndarray,
    extractors: dict[str, Extractor],
    subset: str,
    quiet: bool,
) -> Features:
    """Features of ``ds.x[indices]``, per extractor cached under ``$GANKIT_CACHE/stats`` (keyed
    by ``source``, the data's source and resize mode, and by ``content``, the data's
    :func:`gankit.metrics.stats_cache.data_digest`)."""
    feats: Features = {"labels": np.asarray(ds.y)[indices].astype(np.int64)}
    missing = []
    for kind, extractor in extractors.items():
        key = cache_key(
            source=source, content=content, subset=subset, n=len(indices),
            extractor=extractor.id,
        )  # fmt: skip
        cached = load_reference(key, get_extractor(kind).outputs, len(indices))
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
    resize: str = "legacy",
    n_param: str | None = None,
    checkpoint: str | None = None,
    model_classes: int | None = None,
) -> EvalContext:
    """Build the extractors the ``metrics`` need (each kind's registered factory: Inception
    weights, the cached/trained classifier, ...) and the reference features of ``data_cfg`` at
    ``resolution``/``channels`` (``resize``: module docstring). Checked before any extractor is
    built: with ``model_classes``, data of more classes than the generator of ``checkpoint`` has,
    as training refuses them; with ``n_param`` (the name of the
    parameter ``n`` came from, when ``n`` generated samples will cycle over the data's classes),
    :func:`check_per_class`. ``None`` for given images."""
    kinds = sorted({get_metric(name).extractor for name in metrics})  # unknown names fail first
    ds = load_images(data_cfg, resolution, channels, NOT_MEASURED, resize=resize, quiet=quiet)
    _check_reference(len(ds), ds.source, any(get_extractor(k).offline for k in kinds))
    if model_classes is not None and ds.n_classes > model_classes:
        raise GankitError(
            f"data '{ds.source}': has {ds.n_classes} classes but the model of {checkpoint} has "
            f"{model_classes} (model.n_classes); evaluate against data of its classes"
        )
    if n_param is not None:
        check_per_class(metrics, n, ds.n_classes, n_param)
    # caches (classifier, reference features) of clean-resized data are kept apart
    source = ds.source if resize == "legacy" else f"{ds.source} [resize={resize}]"
    setup = ExtractorSetup(
        ds.x, ds.y, ds.n_classes, source, device, inception_weights or None, quiet, resize
    )
    extractors: dict[str, Extractor] = {}
    info: dict = {"data": ds.source, "resize": resize, "reference_split": {}}
    for kind in kinds:
        extractors[kind], extra = get_extractor(kind).factory(setup)
        info.update(extra)
    reference: dict[bool, Features] = {}
    heldout = None
    content = data_digest(ds.x, ds.y, ds.source)  # once for the subsets below
    online = {k: e for k, e in extractors.items() if not get_extractor(k).offline}
    if any(get_metric(m).needs_real and not get_metric(m).offline for m in metrics):  # not IS
        idx = _subset(np.arange(len(ds)), n)
        reference[False] = _real_features(ds, source, content, idx, online, "all", quiet)
        info["n_reference"] = len(idx)
        info["reference_split"]["inception"] = REFERENCE_SPLITS["inception"]
    offline = {k: e for k, e in extractors.items() if get_extractor(k).offline}
    if offline:
        train_idx, held_idx = heldout_split(len(ds))
        idx = _subset(train_idx, n)
        reference[True] = _real_features(ds, source, content, idx, offline, "clf-train", quiet)
        heldout = _real_features(ds, source, content, held_idx, offline, "clf-heldout", quiet)
        info["n_reference_offline"], info["n_real_heldout"] = len(idx), len(held_idx)
        info["reference_split"]["offline"] = REFERENCE_SPLITS["offline"]
    return EvalContext(
        list(metrics), extractors, reference, heldout, info, ds.n_classes, list(ds.class_names)
    )


@torch.no_grad()
def generate_balanced(
    G: nn.Module,
    n: int,
    batch_size: int = 100,
    truncation: float = 0.0,
    seed: int = 0,
    n_classes: int | None = None,
) -> Iterator[tuple[Tensor, Tensor]]:
    """Yield ``(uint8 (B, C, H, W), labels (B,))`` batches of ``n`` samples of ``G``:
    :func:`gankit.generation.sample_batches` with labels ``i mod n_classes`` (default
    ``G.n_classes``, capped by it) and every ``z`` drawn up front from ``seed``. Pass the data's
    class count when the data has fewer classes than the model, so that every label is one the
    reference (and classifier) knows.
    """
    k = min(n_classes or G.n_classes, G.n_classes)
    yield from sample_batches(G, n, range(k), truncation, seed, batch_size)


def evaluate_generator(
    G: nn.Module,
    ctx: EvalContext,
    n: int,
    batch_size: int = 100,
    truncation: float = 0.0,
    seed: int = 0,
    quiet: bool = True,
) -> dict[str, float]:
    """Metric values of ``n`` samples of ``G`` in eval mode (its modules' modes restored
    afterwards)."""
    with eval_mode(G):
        batches = generate_balanced(G, n, batch_size, truncation, seed, ctx.n_classes)
        return score(ctx, batches, n, quiet, desc="generated")


def score(
    ctx: EvalContext,
    batches: Iterable[tuple[Tensor, Tensor]],
    n: int,
    quiet: bool = True,
    desc: str = "images",
) -> dict[str, float]:
    """Metric values of ``n`` images given as ``(uint8 (B, C, H, W), labels (B,))`` batches at
    the reference's resolution/channels, against ``ctx``'s reference features."""
    fake = extract(batches, list(ctx.extractors.values()), total=n, quiet=quiet, desc=desc)
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


NOT_MEASURED = (
    'evaluate against clean reference images (gankit eval --data PATH; --data "" = the '
    "embedded digits)"
)
"""What to do instead when the reference data are measurements (:func:`load_images`)."""
MIN_IMAGES = 10
"""Fewest images a metric is computed on: generated samples, reference images, and the
classifier's held-out split of the reference data (offline metrics)."""


def _check_n(n: int, param: str) -> int:
    """``n`` as an ``int`` (a NumPy integer too) of at least :data:`MIN_IMAGES` samples."""
    n = check_int(param, n)
    if n < MIN_IMAGES:
        raise ParameterError(param, f"expected at least {MIN_IMAGES} samples, got {n}")
    return n


def check_per_class(metrics: Sequence[str], n: int, n_classes: int, param: str) -> None:
    """``n`` balanced samples over ``n_classes`` classes give every class the images each
    per-class metric needs (:attr:`gankit.metrics.registry.Metric.min_per_class`), else a
    :class:`ParameterError` naming ``param`` (checked before anything is generated)."""
    for name in metrics:
        need = get_metric(name).min_per_class
        if n // n_classes < need:
            raise ParameterError(
                param,
                f"{name} needs {need} generated images of each of the {n_classes} classes: "
                f"expected at least {need * n_classes} samples, got {n}",
            )


def _check_reference(n_images: int, source: str, offline: bool) -> None:
    """Enough reference images for the metrics: :data:`MIN_IMAGES`, and as many in the
    held-out split of the offline (classifier) metrics."""
    n_held = len(heldout_split(n_images)[1])
    if n_images < MIN_IMAGES or (offline and n_held < MIN_IMAGES):
        need = f"{n_images} images; the metrics need at least {MIN_IMAGES}"
        if offline:
            need += f" (and {MIN_IMAGES} in the classifier's held-out split, got {n_held})"
        raise GankitError(f"data: {source} holds {need}")


def _metric_names(metrics: Sequence[str], resize: str) -> list[str]:
    """Metric names (a list or other iterable of registered names, at least one; not one
    string) as a list, and the resize mode. A one-shot iterator is read once, here."""
    if isinstance(metrics, (str, bytes)) or not isinstance(metrics, Iterable):
        raise ParameterError("metrics", f"expected a list of metric names, got {metrics!r}")
    names = list(metrics)
    if not names or not all(isinstance(name, str) for name in names):
        raise ParameterError("metrics", f"expected a list of metric names, got {names!r}")
    for name in names:
        get_metric(name)
    check_resize(resize)
    return names


def _check_options(
    data: object, inception_weights: object, quiet: object
) -> tuple[str | None, str | None]:
    """``data`` and ``inception_weights`` as ``str`` paths (``None`` and ``""``, the defaults,
    as given) after checking ``quiet`` is a bool; else a ParameterError."""
    check_bool("quiet", quiet)
    data = _optional_path(data, "data", "a reference data path or None")
    weights = "an Inception weights file path or None"
    return data, _optional_path(inception_weights, "inception_weights", weights)


def _optional_path(value: object, param: str, expected: str) -> str | None:
    if value is None or (isinstance(value, str) and not value):
        return value
    return str(check_path(value, param, expected))


def _result(
    source: str,
    step: int | None,
    n: int,
    truncation: float | None,
    seed: int | None,
    ctx: EvalContext,
    values: dict[str, float],
) -> dict:
    """The JSON result of ``gankit eval`` (one shape for a run and for given images)."""
    notes = {}
    if any(get_metric(m).offline for m in ctx.metrics):
        notes["offline"] = OFFLINE_NOTE
    if any(not get_metric(m).offline for m in ctx.metrics):
        notes["inception"] = INCEPTION_NOTES[ctx.info["resize"]]
    return {
        "source": source,
        "step": step,
        "n": n,
        "truncation": truncation,
        "seed": seed,
        **ctx.info,
        "eval": {k: (v if math.isfinite(v) else None) for k, v in values.items()},
        "notes": notes,
    }


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
    resize: str = "legacy",
) -> dict:
    """Evaluate the EMA generator of a run/checkpoint (``gankit eval``); a JSON-able result.

    Also appends ``{"step", "eval": {...}, "source": "gankit eval"}`` to the run's
    ``metrics.jsonl`` (when ``source``
    belongs to a run; if that file cannot be written, a warning on stderr says so).

    Args:
        source: run directory (latest checkpoint) or checkpoint directory.
        metrics: registry names, e.g. ``["fid", "kid"]`` or ``["class_acc", "cfid", "swd"]``.
        n: generated samples (and reference images, capped by the data set size).
        data: reference data path; ``None``: the run's ``data.path``.
        inception_weights: ``pt_inception-2015-12-05-6726825d.pth``; ``None``: the config's
            ``eval.inception_weights`` or the cache path.
        resize: ``legacy`` or ``clean`` (module docstring).

    Returns:
        ``{"source", "step", "n" (samples scored), "truncation", "seed", "data", "resize",
        "reference_split" (per feature space), "n_reference"..., "eval": {metric: value},
        "notes"}``.

    Raises:
        ParameterError: no metrics, ``n`` outside 10..1,000,000, a bad ``seed``,
            ``truncation``, ``data``, ``inception_weights``, ``quiet``, ``device`` or
            ``resize`` (all checked before anything is loaded).
        GankitError: unknown metric, missing source or weights, data with more classes than
            the model.
    """
    metrics = _metric_names(metrics, resize)
    n = _check_n(n, "n")
    check_sample_count(n, seed)
    check_truncation(truncation)
    data, inception_weights = _check_options(data, inception_weights, quiet)
    dev = resolve_device(device)
    G = load_generator(source, device=dev)
    ckpt = G.checkpoint
    cfg: Config = G.config
    data_cfg = replace(with_source(cfg.data, data), limit=0)
    ctx = prepare(
        metrics,
        data_cfg,
        cfg.model.resolution,
        cfg.model.channels,
        n,
        inception_weights or cfg.eval.inception_weights,
        dev,
        quiet,
        resize,
        n_param="n",
        checkpoint=str(ckpt),
        model_classes=cfg.model.n_classes,
    )
    values = evaluate_generator(G, ctx, n, cfg.eval.batch_size, truncation, seed, quiet)
    values.update(_heldout_ceiling(ctx))
    step = checkpoint_step(ckpt)
    step = step if step >= 0 else None
    run = RunDir.of_checkpoint(ckpt)
    if run is not None:
        try:
            run.append_metrics({"step": step, "eval": values, "source": EVAL_SOURCE})
        except OSError as err:  # e.g. a read-only run: the result is still returned
            print(
                f"gankit: warning: the result was not added to {run.metrics_file} "
                f"({err.strerror or err})",
                file=sys.stderr,
            )
    return _result(str(ckpt), step, n, truncation, seed, ctx, values)


def evaluate_images(
    images: str | Path,
    metrics: Sequence[str],
    n: int | None = None,
    data: str | None = None,
    inception_weights: str | None = None,
    device: str = "auto",
    quiet: bool = False,
    resize: str = "legacy",
    batch_size: int = 100,
) -> dict:
    """Evaluate images of any generator (``gankit eval --images``): the JSON result of
    :func:`evaluate` with ``source`` = ``images``, ``step``/``truncation``/``seed`` = None.
    Writes no ``metrics.jsonl``.

    Args:
        images: ``.npz`` (``x`` uint8 ``(N, H, W, C)`` or ``(N, C, H, W)``, optional ``y``),
            ``.npy``/``.h5``, or an image folder (class sub-folders = labels); read by
            :func:`gankit.data.read_images`.
        metrics: registry names; class-based ones (``class_acc``, ``intra_fid``,
            ``ccoverage_class``) need labelled images.
        n: images to score (the first ``n``); ``None``: all of them.
        data: reference data path; ``None`` or ``""``: the embedded MNIST digits.
        resize: ``legacy`` or ``clean`` (module docstring).

    Raises:
        ParameterError: no metrics, ``n < 10`` or more than the images, bad ``resize``.
        GankitError: unreadable images, class-based metrics without labels, labels outside
            the reference classes, unknown metric, missing weights.
    """
    metrics = _metric_names(metrics, resize)
    check_int("batch_size", batch_size, 1, expected="a positive number of images per pass")
    data, inception_weights = _check_options(data, inception_weights, quiet)
    ds, labelled = read_images(images, resize)
    if n is None and len(ds) < MIN_IMAGES:
        raise ParameterError("images", f"{images} holds {len(ds)}; expected at least {MIN_IMAGES}")
    n = len(ds) if n is None else n
    n = _check_n(n, "n")
    if n > len(ds):
        raise ParameterError("n", f"{n} images requested but {images} holds {len(ds)}")
    check_request(ds.resolution, ds.channels, prefix=f"images '{images}': ")
    by_labels = [m for m in metrics if get_metric(m).needs_labels]
    if by_labels and not labelled:
        raise GankitError(
            f"images '{images}' have no labels (an .npz 'y' or class sub-folders); "
            f"{', '.join(by_labels)} need them (label-free metrics work without)"
        )
    ctx = prepare(
        metrics,
        DataConfig(path=data or ""),
        ds.resolution,
        ds.channels,
        n,
        inception_weights,
        resolve_device(device),
        quiet,
        resize,
    )
    y = _reference_labels(ds.y[:n], ds.class_names, ctx) if labelled else np.zeros(n, np.int64)
    check_labels(y, ctx.n_classes, f"images '{images}' (reference {ctx.info['data']})")
    values = score(ctx, array_batches(ds.x, y, batch_size, np.arange(n)), n, quiet)
    values.update(_heldout_ceiling(ctx))
    return _result(str(images), None, n, None, None, ctx, values)


def _reference_labels(y: np.ndarray, names: list[str], ctx: EvalContext) -> np.ndarray:
    """Labels of given images as reference class indices: by class name when every name of
    the images is a reference class name, else as they are."""
    index = {name: i for i, name in enumerate(ctx.class_names)}
    if names == ctx.class_names or not set(names) <= set(index):
        return y
    return np.array([index[name] for name in names], dtype=np.int64)[y]


_CONTEXTS: dict[tuple, EvalContext] = {}


EVAL_SOURCE = "gankit eval"
"""The ``source`` of the records :func:`evaluate` appends to a run's log (the training's own
evaluations carry none), so a resumed run does not take one for the eval it owes."""


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
            n_param="eval.n",
        )
    return evaluate_generator(
        G, _CONTEXTS[key], cfg.eval.n, cfg.eval.batch_size, cfg.eval.truncation, cfg.train.seed
    )
