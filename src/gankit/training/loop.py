"""The training loop: n_D D steps → G step → EMA → log → snapshot, plus hooks.

One :class:`Trainer` owns G, D, the EMA copy of G, both Adam optimizers (TTUR: their own lr and
betas, SAGAN §4 / BigGAN §3), the data sampler and the RNG. :meth:`Trainer.train_iteration` is one
G step, written top to bottom; :meth:`Trainer.fit` adds logging and checkpoints, and calls the
:class:`Hook` s it was given (grids, eval, sigma tracking, rollback: :mod:`gankit.training.hooks`).

Batches: ``train.batch_size`` images per micro-batch and process; each D step and the G step use
``train.accumulate`` micro-batches (effective batch ``batch_size * accumulate * world_size``).
Every D step draws fresh real images. Fake labels are uniform over ``model.n_classes``; the
fakes of all D steps are made first, under ``no_grad`` (G does not change during the D steps;
:func:`gankit.training.speed.d_step_fakes`). D sees real and fake images in one forward (one
spectral-norm power iteration per D step).
With ``model.aux_classifier`` and ``train.aux_weight > 0`` the AC-GAN term is added to D (real
and fake images) and to G (fake images). With ``train.measurement`` (AmbientGAN,
:mod:`gankit.training.ambient`) the real data are measurements and, in ambient mode, D sees the
fakes measured too. Stabilisers (README "Stabilisers"): ``train.diffaug`` augments everything
D sees (:mod:`gankit.augment`, random draws from the latent RNG);
:func:`gankit.regularizers.d_regularization` adds LeCam, consistency and lazy R1/R2 terms to
the D loss; ``train.loss = "rpgan"`` pairs each G-step fake with a fresh real batch. On CPU the
run is seeded and bitwise reproducible, also across :func:`gankit.training.resume` (the LeCam
anchors are part of the state).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gankit import augment
from gankit import checkpoint as ckpt_io
from gankit.config import Config
from gankit.data import BatchSampler, ImageDataset, Prefetcher, load_dataset, to_float
from gankit.errors import GankitError
from gankit.layers.attention import double_backward_safe
from gankit.layers.weight_norm import data_dependent_init
from gankit.losses import PAIRED_LOSSES, aux_classifier_loss, d_loss, g_loss
from gankit.models import build, sample_z
from gankit.regularizers import (
    LeCamAnchors,
    d_regularization,
    gradient_penalty,
    lazy_factor,
    orthogonal_reg,
)
from gankit.run import RunDir
from gankit.training import distributed, speed, state, transfer
from gankit.training.ambient import Ambient
from gankit.training.collapse import CollapseDetector
from gankit.training.cuda_graph import IterationGraph
from gankit.training.ema import EMA, standing_stats
from gankit.training.loss_meter import DStepStats, LossMeter, TrainingDivergedError
from gankit.training.monitor import Monitor
from gankit.training.optim import adam
from gankit.training.stop import StopSignals, TrainingStopped
from gankit.validation import validate

__all__ = ["Hook", "Trainer", "amp_dtype", "check_data"]


def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """``train.amp`` (validated by :func:`gankit.config.validate`) → autocast dtype (``None`` =
    fp32): ``auto`` is bf16 on CUDA, fp32 on CPU."""
    if amp == "bf16" or (amp == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def check_data(dataset: ImageDataset, cfg: Config) -> None:
    """The data must match the model: size, channels, and no more classes than the model has.

    A data set with *fewer* classes than ``model.n_classes`` is allowed (the extra classes are
    simply never seen as real images); one with more is an error rather than silently growing
    the model, because the preset's architecture and checkpoints depend on ``n_classes``.
    """
    m = cfg.model
    if (dataset.channels, dataset.resolution) != (m.channels, m.resolution):
        raise GankitError(
            f"{dataset.source}: images are {dataset.channels}x{dataset.resolution}x"
            f"{dataset.resolution} but the model expects model.channels={m.channels}, "
            f"model.resolution={m.resolution}"
        )
    if dataset.n_classes > m.n_classes:
        raise GankitError(
            f"{dataset.source}: data has {dataset.n_classes} classes but model.n_classes="
            f"{m.n_classes}; set --set model.n_classes={dataset.n_classes}"
        )


class Hook:
    """Something :meth:`Trainer.fit` calls at fixed points (every method is optional).

    Hooks run on every rank, in the order given; one that writes files checks
    ``trainer.writes`` (the main rank of a run with a directory).
    """

    def on_start(self, trainer: Trainer) -> None:
        """Once, when the trainer is built (before any checkpoint is loaded)."""

    def on_log(self, trainer: Trainer, record: dict[str, Any]) -> None:
        """Add fields to a log record (every ``train.log_every`` steps) before it is written
        and checked for collapse."""

    def on_collapse(self, trainer: Trainer, warnings: list[str]) -> None:
        """The collapse detector fired on the last log record."""

    def on_snapshot(self, trainer: Trainer, G: nn.Module) -> None:
        """Main rank, at each snapshot, before the checkpoint is written: ``G`` is the sampling
        generator (EMA, standing statistics applied) in eval mode."""

    def on_fit_start(self, trainer: Trainer) -> None:
        """At the start of :meth:`Trainer.fit`, with the log open, before the first iteration
        (a resumed run's checkpoint is loaded by then: ``trainer.step`` is its step)."""

    def on_step(self, trainer: Trainer) -> None:
        """After every iteration (and its log/snapshot). The networks have no gradients here
        (each optimizer step frees its own), and a hook must leave none behind: the next
        iteration's steps would add theirs to them."""


def check_stabilizers(cfg: Config, distributed_run: bool, compiled: bool) -> None:
    """Fail at start-up on R1/R2 (a double backward) under DDP or a compiled step
    (``train.compile`` in force): what the config alone cannot tell."""
    t = cfg.train
    if (t.r1_gamma > 0 or t.r2_gamma > 0) and (distributed_run or compiled):
        raise GankitError(
            "train.r1_gamma/train.r2_gamma: not supported with DDP or train.compile=true "
            "(double backward)"
        )


class Trainer:
    """G, D, EMA, optimizers, data and RNG of one training run.

    Handles of the two networks (one G, one D; the others are views used by the iteration):

    ==============  ================================================================
    ``G``, ``D``    the networks themselves (unwrapped; optimizers, checkpoints)
    ``G_train``     G, DDP-wrapped under torchrun (else G itself)
    ``D_train``     D, DDP-wrapped under torchrun (else D itself)
    ``G_fn``        ``G_train`` as called (``compiled.CompileOrEager``: compiled with
                    ``train.compile``, else eager): G's forward in the G step
    ``D_fn``        ``D_train`` as called: D's forward in the D steps
    ``G_fake``      unwrapped G as called: no-grad fakes for the D steps (no DDP hooks)
    ``D_frozen``    unwrapped D as called: D in the G step (frozen; no DDP hooks)
    ``ema.module``  the EMA copy of G; ``sampling_G`` is it (or G without EMA)
    ==============  ================================================================

    Args:
        cfg: the resolved run config (checked here with :func:`gankit.validation.validate`).
        run_dir: where logs, samples and checkpoints go (``None``: write nothing).
        G, D: prebuilt networks (default ``gankit.models.build(cfg.model)``).
        dataset: prebuilt data (default ``gankit.data.load_dataset(cfg.data, ...)``).
        hooks: :class:`Hook` s called by :meth:`fit` (:func:`gankit.training.hooks.default_hooks`).
        quiet: no progress bar.

    Raises:
        GankitError: a bad config (:func:`gankit.validation.validate`), settings that need the
            world size (DDP), data that does not fit the model.
    """

    def __init__(
        self,
        cfg: Config,
        run_dir: str | Path | None = None,
        *,
        G: nn.Module | None = None,
        D: nn.Module | None = None,
        dataset: ImageDataset | None = None,
        hooks: Sequence[Hook] = (),
        quiet: bool = False,
    ):
        validate(cfg)  # as train/resume/bench do: a Trainer built directly is checked too
        t = cfg.train
        self.cfg, self.quiet, self.hooks = cfg, quiet, list(hooks)
        self.dist, self.device = distributed.setup(t.device)
        self.run = RunDir(run_dir) if run_dir is not None else None
        self.writes = self.run is not None and self.dist.is_main
        self.amp = amp_dtype(t.amp, self.device)
        if t.loss == "wgan-gp" and self.dist.enabled:
            raise GankitError("train.loss: wgan-gp is not supported with DDP (double backward)")
        if self.dist.enabled and cfg.model.aux_classifier and t.aux_weight == 0:
            raise GankitError(  # DDP rejects parameters (the unused class head) without grads
                "model.aux_classifier=true needs train.aux_weight > 0 under DDP"
            )

        check_stabilizers(cfg, self.dist.enabled, speed.compile_mode(t, self.device) is not None)
        self.graphed = speed.cuda_graph(t, self.device, self.dist.enabled)  # train.cuda_graph
        self.ambient = Ambient(cfg)  # AmbientGAN: train.measurement, train.ambient_mode
        torch.manual_seed(t.seed)  # identical initial weights on every rank
        if G is None or D is None:
            G, D = build(cfg.model)
            D = self.ambient.discriminator(D, cfg.model)  # an MLP D for non-image measurements
        self.G, self.D = G.to(self.device), D.to(self.device)
        speed.configure_modules((self.G, self.D), t, self.device)  # channels_last, SDPA, ...
        speed.configure_backends(t, self.device)  # cuDNN autotuning
        self.dataset = (
            dataset
            if dataset is not None
            else load_dataset(cfg.data, cfg.model.resolution, cfg.model.channels, quiet=quiet)
        )
        check_data(self.dataset, cfg)
        self.dataset = self.ambient.real_data(self.dataset)  # measurements or their inverse
        self._init_weight_norm()  # before the EMA copy and the DDP broadcast
        self.ema = EMA(self.G, t.ema_decay, t.ema_start) if t.ema else None
        if self.dist.enabled:
            distributed.convert_batchnorm(self.G)
        self.G_train = distributed.wrap(self.G, self.dist, self.device)
        self.D_train = distributed.wrap(self.D, self.dist, self.device)
        # G_fn/D_fn train G/D (possibly DDP), G_fake/D_frozen run the unwrapped nets:
        # torch.compile'd or eager (train.compile; eager fallback if compiling fails)
        self.G_fn, self.D_fn, self.G_fake, self.D_frozen = speed.step_calls(
            self.G_train, self.D_train, t, self.device
        )
        self.opt_G = adam(self.G.parameters(), t.lr_G, t.betas_G, t.adam_eps, t)
        self.opt_D = adam(self.D.parameters(), t.lr_D, t.betas_D, t.adam_eps, t)
        self.sampler = BatchSampler(
            self.dataset,
            t.batch_size,
            torch.Generator().manual_seed(t.seed),
            self.dist.rank,
            self.dist.world_size,
        )
        self.batches = Prefetcher(self.dataset, self.sampler, self.device)  # next batch in bg
        self.gen = torch.Generator(self.device)  # latents, DiffAugment and measurement draws
        self.seed_latents(0)
        self.lecam = LeCamAnchors(t.lecam_decay, self.device)
        # AmbientGAN: fake -> f_θ(fake) before D (identity unless ambient mode); θ from self.gen
        self.measure_fake = self.ambient.fake_measurement(self.gen)
        # instance noise: train.d_measurement on real and fake before D (identity when off)
        # (train.d_measurement_fade: its strength, a device scalar the graph reads)
        self.d_strength = torch.ones((), device=self.device) if t.d_measurement_fade else None
        self.measure_d_input = self.ambient.measure_d_input(self.gen, self.d_strength)
        # train.cuda_graph: the iteration captured once and replayed (None: every call eager)
        self.graph = (
            IterationGraph(
                self.batches,
                [self.opt_G, self.opt_D],
                self.gen,
                torch.cuda.Stream(self.device),
                forget=self._forget_sn_tensors,
            )
            if self.graphed
            else None
        )

        self.step = 0
        self.rollbacks = 0
        self.healthy = True
        self.best: dict[str, Any] = {}
        self.detector = CollapseDetector()
        self.monitor: Monitor | None = None
        self.meter = LossMeter(self.device, self.dist)
        for hook in self.hooks:
            hook.on_start(self)

    # -- helpers -----------------------------------------------------------------------------
    def _init_weight_norm(self) -> None:
        """Data-dependent initialisation of the affine weight-normalised layers (Salimans &
        Kingma Sec. 3; :func:`gankit.layers.weight_norm.data_dependent_init`): G on one batch
        of latents and labels, D on one batch of real images. The batch comes from its own
        generator seeded with ``train.seed`` (the same on every rank), so the sampler and the
        latent RNG are untouched; a resumed run overwrites the result with its checkpoint."""
        t = self.cfg.train
        gen = torch.Generator().manual_seed(t.seed)
        n = min(t.batch_size, len(self.dataset))
        x, y = self.dataset.batch(torch.randperm(len(self.dataset), generator=gen)[:n])
        x, y = x.to(self.device), y.to(self.device)
        x = to_float(x) if x.dtype == torch.uint8 else x  # measured data may be float
        z = torch.randn(n, self.cfg.model.dim_z, generator=gen).to(self.device)
        with self._autocast():
            data_dependent_init(self.G, lambda: self.G(z, y))
            data_dependent_init(self.D, lambda: self.D(x, y))

    def _forget_sn_tensors(self) -> None:
        """Drop what the batched spectral norms keep between passes (before a graph capture)."""
        for call in (self.G_fn, self.D_fn, self.G_fake, self.D_frozen):
            if call.sn is not None:
                call.sn.forget()

    def seed_latents(self, salt: int) -> None:
        """Per-rank latent RNG; ``salt`` changes it after a rollback so the replay differs."""
        self.gen.manual_seed(self.cfg.train.seed + 1_000_003 * self.dist.rank + 7919 * salt)

    @property
    def sampling_G(self) -> nn.Module:
        """The generator to sample from: the EMA copy when ``train.ema``, else G."""
        return self.ema.module if self.ema is not None else self.G

    def _autocast(self) -> contextlib.AbstractContextManager:
        # a CUDA graph replays every cast: no weight-cast cache across the captured region
        return torch.autocast(
            self.device.type,
            dtype=self.amp,
            enabled=self.amp is not None,
            cache_enabled=not self.graphed,
        )

    def _no_sync(self, module: nn.Module, micro: int) -> contextlib.AbstractContextManager:
        """Skip DDP's gradient all-reduce on all but the last accumulation micro-batch."""
        last = micro == self.cfg.train.accumulate - 1
        if last or not isinstance(module, nn.parallel.DistributedDataParallel):
            return contextlib.nullcontext()
        return module.no_sync()

    def _real_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        # already on the device; the graph's static buffers while it is captured
        x, y = self.graph.next_batch() if self.graph is not None else next(self.batches)
        x = to_float(x) if x.dtype == torch.uint8 else x  # measured data may be float
        if self.cfg.train.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y

    def _latents(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        z = sample_z(n, self.cfg.model.dim_z, generator=self.gen, device=self.device)
        y = torch.randint(self.cfg.model.n_classes, (n,), generator=self.gen, device=self.device)
        return z, y

    def _discriminate(
        self, D: nn.Module, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(logits (B,), class_logits (B, n_classes) or None)``."""
        if self.cfg.train.aux_weight > 0:
            return D(x, y, return_aux=True)
        return D(x, y), None

    # -- one G step --------------------------------------------------------------------------
    def train_iteration(self) -> dict[str, torch.Tensor]:
        """``n_D`` D steps and one G step (eagerly, or as a replay of the CUDA graph,
        ``train.cuda_graph``), then one EMA update. Returns detached scalar tensors
        ``loss_D``, ``D_real``, ``D_fake`` (means over the D steps) and ``loss_G`` — no host
        sync happens here."""
        fade = self.cfg.train.d_measurement_fade
        if fade:
            self.d_strength.fill_(max(0.0, 1.0 - self.step / fade))
        losses = self._iteration() if self.graph is None else self.graph(self._iteration)
        self.step += 1
        # 3. EMA of G's weights: outside the graph, since it depends on the step (it copies G
        # before train.ema_start); two multi-tensor ops
        if self.ema is not None:
            self.ema.update(self.G, self.step)
        return losses

    def _iteration(self) -> dict[str, torch.Tensor]:
        """The D steps and the G step of :meth:`train_iteration` at ``self.step``: what a
        CUDA graph records (nothing in it depends on the step but lazy R1/R2, which is never
        graphed, and the instance-noise strength, a device scalar set before each call)."""
        t = self.cfg.train
        n_micro = t.n_D * t.accumulate
        lazy = lazy_factor(self.step, t.reg_every) if t.r1_gamma or t.r2_gamma else 0
        cr_policy = t.cr_augment if t.cr_weight > 0 else ""
        stats = DStepStats()

        # 1. D steps, each on fresh real images; G produces all their fakes first (no grad).
        latents = [self._latents(t.batch_size) for _ in range(n_micro)]
        with self._autocast():
            fakes = speed.d_step_fakes(self.G_fake, self.G, latents, t)
        self.D.requires_grad_(True)
        for d_step in range(t.n_D):  # every step starts without gradients (freed after each)
            for micro in range(t.accumulate):
                x, y = self._real_batch()
                (_, y_fake), fake = latents[d_step * t.accumulate + micro], fakes.pop(0)
                with self._no_sync(self.D_train, micro):
                    with self._autocast(), double_backward_safe(lazy > 0 or t.loss == "wgan-gp"):
                        fake = self.measure_fake(fake)  # AmbientGAN
                        images, labels = augment.d_input(
                            x, fake, y, y_fake, t.diffaug, cr_policy, self.gen
                        )
                        images = self.measure_d_input(images)
                        logits, cls = self._discriminate(
                            self.D_fn, images.requires_grad_(lazy > 0), labels
                        )
                        n = len(y) + len(y_fake)
                        real_logits, fake_logits = logits[:n].float().split([len(y), len(y_fake)])
                        loss_D = d_loss(t.loss, real_logits, fake_logits)
                        if cls is not None:
                            loss_D = loss_D + t.aux_weight * aux_classifier_loss(
                                cls[:n], labels[:n]
                            )
                        if t.loss == "wgan-gp":  # D with this D step's W / sigma
                            with self.D_fn.layers.frozen():
                                loss_D = loss_D + gradient_penalty(
                                    self.D, x, fake, y, t.gp_weight, generator=self.gen
                                )
                        loss_D = loss_D + d_regularization(
                            logits, images, len(y), len(y_fake), self.lecam, t.lecam_weight,
                            t.cr_weight, lazy * t.r1_gamma, lazy * t.r2_gamma,
                        )  # fmt: skip
                    (loss_D / t.accumulate if t.accumulate > 1 else loss_D).backward()
                stats.add(loss_D, logits[:n].float())
            self.opt_D.step()
            # freed at once: not held through G's backward, where the memory peaks
            self.opt_D.zero_grad(set_to_none=True)

        # 2. G step through the frozen D (unwrapped: D's DDP hooks stay out of it).
        self.D.requires_grad_(False)
        loss_G_sum = torch.zeros((), device=self.device)
        for micro in range(t.accumulate):
            z, y_fake = self._latents(t.batch_size)
            with self._no_sync(self.G_train, micro):
                with self._autocast():
                    fake = self.measure_fake(self.G_fn(z, y_fake))  # AmbientGAN
                    x, y = self._real_batch() if t.loss in PAIRED_LOSSES else (fake[:0], y_fake[:0])
                    images, labels = augment.d_input(fake, x, y_fake, y, t.diffaug, "", self.gen)
                    images = self.measure_d_input(images)
                    logits, cls = self._discriminate(self.D_frozen, images, labels)
                    fake_logits, real_logits = logits.float().split([len(y_fake), len(y)])
                    loss_G = g_loss(t.loss, fake_logits, real_logits)
                    if cls is not None:
                        cls = cls[: len(y_fake)]  # the fakes' rows (reals follow for rpgan)
                        loss_G = loss_G + t.aux_weight * aux_classifier_loss(cls, y_fake)
                if t.ortho_reg > 0:
                    loss_G = loss_G + orthogonal_reg(self.G, t.ortho_reg)
                (loss_G / t.accumulate if t.accumulate > 1 else loss_G).backward()
            loss_G_sum = loss_G_sum + loss_G.detach() / t.accumulate
        self.opt_G.step()
        self.opt_G.zero_grad(set_to_none=True)  # freed: not held through the next D steps
        self.D.requires_grad_(True)
        return {**stats.means(), "loss_G": loss_G_sum}

    # -- the run -----------------------------------------------------------------------------
    def fit(self, steps: int) -> None:
        """Train until G step ``steps``: hooks' ``on_fit_start``, then per step: iteration →
        log → snapshot → hooks' ``on_step``."""
        t = self.cfg.train
        self.monitor = Monitor(self.run if self.writes else None, steps, self.step, self.quiet)
        self.meter.reset()
        try:
            with StopSignals() as stop:
                for hook in self.hooks:
                    hook.on_fit_start(self)
                # a signal during a resumed run's pending eval: its checkpoint is there
                signum = self.step > 0 and stop.requested(self.dist.enabled)  # (collective)
                if signum:
                    self._stop(signum, saved=True)
                while self.step < steps:
                    self.meter.add(self.train_iteration())
                    logged = self.step % t.log_every == 0 or self.step == steps
                    if logged:
                        self.log()
                    saved = self.step % t.snapshot_every == 0 or self.step == steps
                    if saved:
                        self.snapshot()
                    for hook in self.hooks:
                        hook.on_step(self)
                    self.monitor.progress(self.step)
                    # under DDP the ranks agree on stopping at log steps only (a collective)
                    if logged or not self.dist.enabled:
                        signum = stop.requested(self.dist.enabled)
                        if signum:
                            self._stop(signum, saved)
        finally:
            try:
                self.monitor.close()
            finally:
                # here, not when the trainer is collected: a stop signal while the prefetch
                # thread is joined reaches the caller, not a garbage-collection callback
                self.batches.close()

    def _stop(self, signum: int, saved: bool) -> None:
        """Write a checkpoint of this step (unless one was just written) and end training."""
        if not saved:
            self.snapshot()
        # this step's checkpoint, by name: under DDP rank 0 may still be writing it
        where = (
            f"checkpoint {self.run.checkpoints / ckpt_io.step_dir_name(self.step)}"
            if self.run
            else "no run directory"
        )
        command = "torchrun ... -m gankit.cli resume" if self.dist.enabled else "gankit resume"
        resume = f"; continue with `{command} {self.run.path}`" if self.run else ""
        raise TrainingStopped(
            f"stopped by {StopSignals.name(signum)} at step {self.step} ({where}){resume}", signum
        )

    def check_finite(self) -> None:
        """Stop with a clear message if any loss since the last check was NaN/Inf on any rank
        (collective under DDP: every rank checks, and raises, together)."""
        if self.meter.all_finite():
            return
        last = self.run.latest_checkpoint() if self.run is not None else None
        where = f"last good checkpoint: {last}" if last else "no checkpoint was written"
        raise TrainingDivergedError(
            f"a loss became NaN/Inf at or before step {self.step}; training stopped ({where}). "
            "Lower train.lr_G/train.lr_D or check the data."
        )

    def log(self) -> None:
        """Write one metrics record (averages since the last log) and check for collapse."""
        t = self.cfg.train
        self.check_finite()
        means, count, seconds = self.meter.means()
        images = count * t.batch_size * t.n_D * t.accumulate * self.dist.world_size
        record: dict[str, Any] = {
            "step": self.step,
            **means,
            "lr_G": self.opt_G.param_groups[0]["lr"],
            "lr_D": self.opt_D.param_groups[0]["lr"],
            "img_per_s": images / max(seconds, 1e-9),
        }
        for hook in self.hooks:
            hook.on_log(self, record)
        self.monitor.write(record)
        self.monitor.progress(self.step, record)
        warnings = self.detector.check(record)
        self.healthy = not warnings
        for w in warnings:
            self.monitor.warn(self.step, f"possible collapse: {w}")
        if warnings:
            for hook in self.hooks:
                hook.on_collapse(self, warnings)

    @torch.no_grad()
    def snapshot(self) -> None:
        """A checkpoint of the current step (main rank), after a NaN check; hooks'
        ``on_snapshot`` see its sampling generator first."""
        self.check_finite()
        state = self.state_dict()  # collective under DDP: every rank calls it
        if not self.writes:
            return
        # without EMA, sample from a copy so that G's BN statistics, SN vectors and mode stay
        G = self.sampling_G if self.ema is not None else copy.deepcopy(self.G).eval()
        if self.cfg.train.standing_stats > 0:
            standing_stats(G, self.cfg.train.standing_stats, self._standing_inputs())
        for hook in self.hooks:
            hook.on_snapshot(self, G)
        weights = {**self.weights(), "G_ema": G.state_dict()}  # the sampled generator
        self.save_checkpoint(ckpt_io.step_dir_name(self.step), weights, state)
        ckpt_io.prune_checkpoints(self.run.checkpoints, self.cfg.train.keep_last)

    def _standing_inputs(self):
        """Batches ``(z, y)`` for standing statistics, seeded by ``train.seed`` and the step."""
        gen = torch.Generator(self.device).manual_seed(self.cfg.train.seed + self.step)
        n, m = self.cfg.train.batch_size, self.cfg.model

        def make_inputs() -> tuple[torch.Tensor, torch.Tensor]:
            z = sample_z(n, m.dim_z, generator=gen, device=self.device)
            return z, torch.randint(m.n_classes, (n,), generator=gen, device=self.device)

        return make_inputs

    def save_checkpoint(
        self, name: str, weights: dict[str, dict[str, torch.Tensor]], state: dict[str, Any]
    ) -> Path:
        """Write checkpoint ``RUN/checkpoints/name`` (with ``meta.json``: step, health)."""
        meta = {"step": state["step"], "healthy": state["healthy"]}
        return ckpt_io.save_checkpoint(
            self.run.checkpoints, name, weights, state, self.cfg, meta=meta
        )

    # -- state -------------------------------------------------------------------------------
    def weights(self) -> dict[str, dict[str, torch.Tensor]]:
        return {
            "G": self.G.state_dict(),
            "D": self.D.state_dict(),
            "G_ema": self.sampling_G.state_dict(),
        }

    def state_dict(self) -> dict[str, Any]:
        """:func:`gankit.training.state.capture` (collective under DDP)."""
        return state.capture(self)

    def init_from(self, source: str | Path) -> list[str]:
        """Start from the weights of run or checkpoint ``source`` (``train.init_from``, see
        :mod:`gankit.training.transfer`); returns the lines describing what was loaded."""
        nets = {"G": self.G, "D": self.D}
        if self.ema is not None:
            nets["G_ema"] = self.ema.module
        return transfer.init_from(source, nets, self.cfg.model.n_classes, self.device)

    def load(self, ckpt: Path) -> None:
        """Restore weights and state from checkpoint directory ``ckpt``
        (:func:`gankit.training.state.restore`) and forget losses since the last log."""
        state.restore(self, ckpt)
        if self.graph is not None:  # the optimizers' state tensors were replaced
            self.graph.reset()
        self.meter.clear_nan()
        self.meter.reset()
