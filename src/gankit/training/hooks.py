"""The hooks :func:`gankit.train` gives the trainer: everything the loop does besides
optimising and checkpointing, and everything that needs modules above ``training``.

- :class:`SigmaTracker`: ``sigma0..2/{G,D}/<weight>`` in every log record (BigGAN §4.1;
  :mod:`gankit.analysis.spectrum`), ``train.sigma_layers`` weights per network;
- :class:`SnapshotGrid`: ``samples/step_XXXXXXXX.png`` at every snapshot, fixed z, one row of
  :data:`GRID_COLS` per class (at most :data:`GRID_MAX_CLASSES` evenly spaced classes);
- :class:`PeriodicEval`: ``eval.metrics`` every ``eval.every`` steps
  (:func:`gankit.evaluation.periodic_eval`), logged like ``gankit eval``; keeps
  ``checkpoints/best`` by the lowest value of the first metric whose name contains ``fid``
  (``fid`` first); a run resumed at an eval step whose record its log lacks (killed between
  the checkpoint and the eval) is evaluated first. Checks the metric names and Inception
  weights when built;
- :class:`SampleHealth`: collapse signals of what G produces
  (:mod:`~gankit.training.sample_signals`) on the snapshot grid's fixed latents, relative to
  real images measured once at start, in every log record (``diversity/pixel_std``,
  ``diversity/pairwise``, ``class_spread`` relative to real images with an auxiliary
  classifier, ``D_gap``);
- :class:`CollapseRollback` (``train.collapse_rollback``): on a collapse warning, reload the
  newest healthy checkpoint older than the current step, with a new latent seed (at most
  :data:`MAX_ROLLBACKS` times, then training stops with :class:`CollapseError`). Health is read
  from each checkpoint's ``meta.json``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from gankit import checkpoint as ckpt_io
from gankit.analysis.spectrum import pick_layers, spectrum_report
from gankit.config import Config
from gankit.data import ImageDataset, to_float, to_uint8
from gankit.errors import GankitError
from gankit.evaluation import EVAL_SOURCE, check_per_class, periodic_eval
from gankit.generation import eval_mode, save_grid
from gankit.metrics import get_metric
from gankit.metrics.inception import checked_weights_path
from gankit.run import RunDir
from gankit.training.loop import Hook, Trainer
from gankit.training.sample_signals import class_spread, pairwise_distance, pixel_std

__all__ = [
    "GRID_COLS",
    "GRID_MAX_CLASSES",
    "MAX_ROLLBACKS",
    "CollapseError",
    "CollapseRollback",
    "PeriodicEval",
    "SampleHealth",
    "SigmaTracker",
    "SnapshotGrid",
    "default_hooks",
    "eval_pending",
]

GRID_COLS = 8  # samples per class in snapshot grids
GRID_MAX_CLASSES = 16  # rows of a snapshot grid (evenly spaced classes beyond that)
MAX_ROLLBACKS = 3


class SigmaTracker(Hook):
    """Top-3 singular values of ``n`` representative weights of G and of D in each log."""

    def __init__(self, n: int):
        self.n = n
        self.layers: dict[str, list[str]] = {}

    def on_start(self, trainer: Trainer) -> None:
        self.layers = {"G": pick_layers(trainer.G, self.n), "D": pick_layers(trainer.D, self.n)}

    def on_log(self, trainer: Trainer, record: dict[str, Any]) -> None:
        for net_name, net in (("G", trainer.G), ("D", trainer.D)):
            for layer, sigmas in spectrum_report(net, 3, self.layers[net_name]).items():
                for i, s in enumerate(sigmas):
                    record[f"sigma{i}/{net_name}/{layer}"] = s


class SnapshotGrid(Hook):
    """The fixed-z sample grid of each snapshot (with ``train.measurement`` in ambient mode, each
    sample beside its measurement)."""

    def on_snapshot(self, trainer: Trainer, G: nn.Module) -> None:
        z, y = grid_latents(trainer.cfg, trainer.device)
        gen = torch.Generator(trainer.device).manual_seed(trainer.cfg.train.seed)  # fixed grid θ
        images = trainer.ambient.grid(G(z, y), gen)  # AmbientGAN: sample | its measurement
        save_grid(to_uint8(images), trainer.run.sample_grid(trainer.step), GRID_COLS)


def grid_latents(cfg: Config, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed ``z (rows * GRID_COLS, dim_z)`` (seed ``train.seed``) and labels: one row of
    :data:`GRID_COLS` per class, at most :data:`GRID_MAX_CLASSES` evenly spaced classes."""
    m = cfg.model
    rows = min(m.n_classes, GRID_MAX_CLASSES)
    classes = torch.linspace(0, m.n_classes - 1, rows).round().long()
    gen = torch.Generator().manual_seed(cfg.train.seed)
    z = torch.randn(rows * GRID_COLS, m.dim_z, generator=gen)
    return z.to(device), classes.repeat_interleave(GRID_COLS).to(device)


class SampleHealth(Hook):
    """Collapse signals from samples (module doc), no data pass. G runs on the fixed grid
    latents without gradients, in training mode (batch statistics, as D sees its fakes) with
    every buffer (batch-norm statistics, spectral-norm vectors) restored afterwards, so the
    signals never change training; D's class head runs in eval mode. ``class_spread`` is the
    spread of the head's predictions on the samples over its spread on real images of the same
    classes, logged once the head tells real classes apart (real spread ≥ ``REAL_SPREAD_MIN``,
    0.8; an untrained head predicts one class for everything). A checkpoint is
    healthy when the log before it raised no warning (signals included)."""

    def __init__(self) -> None:
        self.real: dict[str, float] = {}
        self.real_x: torch.Tensor | None = None  # real images of the grid's classes
        self.real_y: torch.Tensor | None = None

    def on_start(self, trainer: Trainer) -> None:
        z, y = grid_latents(trainer.cfg, trainer.device)
        data, m = trainer.dataset, trainer.cfg.model
        if not isinstance(data, ImageDataset) or data.x.shape[1:] != (
            m.channels, m.resolution, m.resolution,
        ):  # fmt: skip
            return  # measured (AmbientGAN) data: samples and data are not comparable
        gen = torch.Generator().manual_seed(trainer.cfg.train.seed)
        x = to_float(data.batch(torch.randperm(len(data), generator=gen)[: len(z)])[0])
        self.real = {k: fn(x) for k, fn in _DIVERSITY.items()}
        labels = torch.as_tensor(np.array(data.y))  # a copy: data.y may be read-only
        per_class = [torch.nonzero(labels == c).flatten()[:GRID_COLS] for c in y.unique().tolist()]
        if all(len(idx) > 0 for idx in per_class):
            real_x, real_y = data.batch(torch.cat(per_class))
            self.real_x, self.real_y = (
                to_float(real_x).to(trainer.device),
                real_y.to(trainer.device),
            )

    @torch.no_grad()
    def on_log(self, trainer: Trainer, record: dict[str, Any]) -> None:
        record["D_gap"] = record["D_real"] - record["D_fake"]
        if not self.real or min(self.real.values()) <= 0:
            return
        z, y = grid_latents(trainer.cfg, trainer.device)
        with _buffers_kept(trainer.G):
            x = trainer.G(z, y).float()
        record.update({f"diversity/{k}": fn(x) / self.real[k] for k, fn in _DIVERSITY.items()})
        if getattr(trainer.D, "aux", None) is None or self.real_x is None:
            return
        with eval_mode(trainer.D):
            real = class_spread(
                trainer.D(self.real_x, self.real_y, return_aux=True)[1], self.real_y
            )
            if real >= REAL_SPREAD_MIN:
                fake = class_spread(trainer.D(x, y, return_aux=True)[1], y)
                record["class_spread"] = fake / real


REAL_SPREAD_MIN = 0.8
_DIVERSITY = {"pixel_std": pixel_std, "pairwise": pairwise_distance}


@contextlib.contextmanager
def _buffers_kept(module: nn.Module) -> Iterator[None]:
    """Every buffer of ``module`` (running statistics, ``u``/``v``) is restored on exit."""
    saved = [(b, b.clone()) for b in module.buffers()]
    try:
        yield
    finally:
        for b, copy in saved:
            b.copy_(copy)


class PeriodicEval(Hook):
    """``cfg.eval.metrics`` every ``cfg.eval.every`` steps; keeps ``checkpoints/best``.

    Raises (when built): GankitError for an unknown metric name or missing/wrong Inception
    weights of an Inception-based metric; at the trainer's start: ``eval.n`` too small for a
    per-class metric over the data's classes — not at the first eval hours later.
    """

    def __init__(self, cfg: Config):
        self.every = cfg.eval.every
        if not all(get_metric(name).offline for name in cfg.eval.metrics):
            checked_weights_path(cfg.eval.inception_weights)

    def on_start(self, trainer: Trainer) -> None:
        if self.every > 0:  # the data's classes are known now, before anything is written
            e = trainer.cfg.eval
            check_per_class(e.metrics, e.n, trainer.dataset.n_classes, "eval.n")

    def on_fit_start(self, trainer: Trainer) -> None:
        """A run resumed at an eval step whose result is not in its log (killed between the
        step's checkpoint and its eval) is evaluated now, as the uninterrupted run was: the
        same generator and seed, so the same record and ``checkpoints/best``."""
        missing = [trainer.writes and eval_pending(trainer.cfg, trainer.run, trainer.step)]
        if trainer.dist.enabled:  # the main rank's log decides for every rank
            torch.distributed.broadcast_object_list(missing, src=0)
        if missing[0]:
            self._evaluate(trainer)

    def on_step(self, trainer: Trainer) -> None:
        if self.every > 0 and trainer.step % self.every == 0:
            self._evaluate(trainer)

    def _evaluate(self, trainer: Trainer) -> None:
        """Evaluate the sampling generator, update ``checkpoints/best``, then log the result
        (in that order: a run killed before the record evaluates the step again when resumed,
        and rewriting ``best`` from the same state gives the same ``best``)."""
        state = trainer.state_dict()  # collective under DDP: every rank calls it
        if not trainer.writes:
            return
        results = periodic_eval(trainer.sampling_G, trainer.cfg, trainer.device)
        keys = sorted((k for k in results if "fid" in k), key=lambda k: (k != "fid", k))
        if keys:
            key, value = keys[0], float(results[keys[0]])
            if not trainer.best or value < trainer.best["value"]:
                trainer.best = {"key": key, "value": value, "step": trainer.step}
                best = {**state, "best": trainer.best}
                trainer.save_checkpoint("best", trainer.weights(), best)
        trainer.monitor.write({"step": trainer.step, "eval": results})  # gankit eval's, unsourced


def eval_pending(cfg: Config, run: RunDir, step: int) -> bool:
    """Whether ``step`` of run ``run`` (config ``cfg``) is an eval step whose record its log
    lacks: a run killed between that step's checkpoint and its eval (a ``gankit eval`` record
    of that step does not count)."""
    if cfg.eval.every <= 0 or step == 0 or step % cfg.eval.every:
        return False
    records = run.read_metrics() if run.metrics_file.is_file() else []
    return not any(
        r.get("step") == step and "eval" in r and r.get("source") != EVAL_SOURCE for r in records
    )


class CollapseError(GankitError):
    """Collapse persisted through the allowed rollbacks (or nothing healthy to return to)."""


class CollapseRollback(Hook):
    """Reload the newest healthy checkpoint older than the current step on collapse."""

    def on_collapse(self, trainer: Trainer, warnings: list[str]) -> None:
        ckpts = trainer.run.list_checkpoints() if trainer.run is not None else []
        older = [c for c in ckpts if ckpt_io.checkpoint_step(c) < trainer.step]
        if not older:  # nothing to go back to yet: the warnings stand, training goes on
            trainer.monitor.warn(trainer.step, "no checkpoint yet to roll back to; continuing")
            return
        healthy = [c for c in older if _is_healthy(c)]
        if not healthy or trainer.rollbacks >= MAX_ROLLBACKS:
            why = (
                f"after {MAX_ROLLBACKS} rollbacks"
                if healthy
                else "no healthy checkpoint to roll back to"
            )
            raise CollapseError(
                f"{trainer.run.path}: training collapsed at step {trainer.step} ({warnings[0]}); "
                f"stopped, {why} (train.collapse_rollback)"
            )
        from_step, rollbacks = trainer.step, trainer.rollbacks + 1
        trainer.load(healthy[-1])
        trainer.rollbacks = rollbacks
        trainer.seed_latents(rollbacks)
        message = f"rolled back to {healthy[-1]} (rollback {rollbacks})"
        trainer.monitor.warn(from_step, message, rollback=rollbacks)


def _is_healthy(ckpt) -> bool:
    """The checkpoint's health flag from ``meta.json`` (``state.pt`` only for checkpoints
    written before ``meta.json`` existed)."""
    meta = ckpt_io.load_meta(ckpt)
    return meta["healthy"] if "healthy" in meta else ckpt_io.load_state(ckpt)["healthy"]


def default_hooks(cfg: Config) -> list[Hook]:
    """The hooks of a ``gankit train`` run of ``cfg``: sigma tracking, sample signals, snapshot
    grids, the eval hook (``eval.every > 0``) and rollback (``train.collapse_rollback``)."""
    hooks: list[Hook] = [SigmaTracker(cfg.train.sigma_layers), SampleHealth(), SnapshotGrid()]
    if cfg.eval.every > 0:
        hooks.append(PeriodicEval(cfg))
    if cfg.train.collapse_rollback:
        hooks.append(CollapseRollback())
    return hooks
