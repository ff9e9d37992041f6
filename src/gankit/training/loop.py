"""The training loop: n_D D steps → G step → EMA → log → snapshot → eval hook.

One :class:`Trainer` owns G, D, the EMA copy of G, both Adam optimizers (TTUR: their own lr and
betas, SAGAN §4 / BigGAN §3), the data sampler and the RNG. :meth:`Trainer.train_iteration` is one
G step, written top to bottom; :meth:`Trainer.fit` adds logging, snapshots and the eval hook.

Batches: ``train.batch_size`` images per micro-batch and process; each D step and the G step use
``train.accumulate`` micro-batches (effective batch ``batch_size * accumulate * world_size``).
Every D step draws fresh real images. Fake labels are uniform over ``model.n_classes``. D sees
real and fake images in one forward (one spectral-norm power iteration per D step).
With ``model.aux_classifier`` and ``train.aux_weight > 0`` the AC-GAN term is added to D (real
and fake images) and to G (fake images). On CPU the run is seeded and bitwise reproducible,
also across :func:`gankit.training.resume`.
"""

from __future__ import annotations

import contextlib
import copy
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gankit.config import Config, to_dict
from gankit.data import BatchSampler, ImageDataset, load_dataset, to_float, to_uint8
from gankit.errors import GankitError
from gankit.layers.weight_norm import data_dependent_init
from gankit.losses import aux_classifier_loss, d_loss, g_loss
from gankit.regularizers import gradient_penalty, orthogonal_reg
from gankit.training import checkpoint as ckpt_io
from gankit.training import distributed, speed
from gankit.training.ema import EMA, standing_stats
from gankit.training.monitor import CollapseDetector, Monitor, TrainingDivergedError

GRID_COLS = 8  # samples per class in snapshot grids
GRID_MAX_CLASSES = 16  # rows of a snapshot grid (evenly spaced classes beyond that)
MAX_ROLLBACKS = 3


def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """``train.amp`` → autocast dtype (``None`` = fp32): ``auto`` is bf16 on CUDA, fp32 on CPU."""
    if amp not in ("auto", "bf16", "fp32"):
        raise GankitError(f"train.amp: expected auto, bf16 or fp32, got {amp!r}")
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


def check_eval_setup(cfg: Config) -> None:
    """With ``eval.every > 0``, fail at start-up (not hours later at the first eval) on an
    unknown metric name or missing/wrong Inception weights for an Inception-based metric."""
    from gankit.metrics import get_metric
    from gankit.metrics.inception import checked_weights_path

    if not all(get_metric(name).offline for name in cfg.eval.metrics):
        checked_weights_path(cfg.eval.inception_weights)


class Trainer:
    """G, D, EMA, optimizers, data and RNG of one training run.

    Args:
        cfg: the resolved run config.
        run_dir: where logs, samples and checkpoints go (``None``: write nothing).
        G, D: prebuilt networks (default ``gankit.models.build(cfg.model)``).
        dataset: prebuilt data (default ``gankit.data.load_dataset(cfg.data, ...)``).
        quiet: no progress bar.
    """

    def __init__(
        self,
        cfg: Config,
        run_dir: str | Path | None = None,
        *,
        G: nn.Module | None = None,
        D: nn.Module | None = None,
        dataset: ImageDataset | None = None,
        quiet: bool = False,
    ):
        t = cfg.train
        self.cfg, self.quiet = cfg, quiet
        self.dist, self.device = distributed.setup(t.device)
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.writes = self.run_dir is not None and self.dist.is_main
        self.amp = amp_dtype(t.amp, self.device)
        if t.loss == "wgan-gp" and self.dist.enabled:
            raise GankitError("train.loss: wgan-gp is not supported with DDP (double backward)")
        if t.loss == "wgan-gp" and cfg.model.D_norm == "batch":
            raise GankitError(  # Gulrajani et al. 2017, Sec. 4: no batch norm in the critic
                "train.loss: wgan-gp penalises per-sample gradients, which batch norm in D "
                "couples across the batch; set model.D_norm=group or none"
            )
        if t.loss == "wgan-gp" and cfg.model.D_block == "reversible":
            raise GankitError(  # the memory-saving backward is not differentiable again
                "train.loss: wgan-gp needs a double backward through D; "
                "set model.D_block=resnet (reversible D blocks do not support it)"
            )
        if t.aux_weight > 0 and not cfg.model.aux_classifier:
            raise GankitError("train.aux_weight > 0 needs --set model.aux_classifier=true")
        if self.dist.enabled and cfg.model.aux_classifier and t.aux_weight == 0:
            raise GankitError(  # DDP rejects parameters (the unused class head) without grads
                "model.aux_classifier=true needs train.aux_weight > 0 under DDP"
            )

        if cfg.eval.every > 0:
            check_eval_setup(cfg)
        torch.manual_seed(t.seed)  # identical initial weights on every rank
        if G is None or D is None:
            from gankit.models import build

            G, D = build(cfg.model)
        self.G, self.D = G.to(self.device), D.to(self.device)
        speed.configure_modules((self.G, self.D), t)  # channels_last, SDPA (issue 6 levers)
        self.dataset = (
            dataset
            if dataset is not None
            else load_dataset(cfg.data, cfg.model.resolution, cfg.model.channels)
        )
        check_data(self.dataset, cfg)
        self._init_weight_norm()
        self.ema = EMA(self.G, t.ema_decay, t.ema_start) if t.ema else None
        if self.dist.enabled:
            distributed.convert_batchnorm(self.G)
        self.G_train = distributed.wrap(self.G, self.dist, self.device)
        self.D_train = distributed.wrap(self.D, self.dist, self.device)
        # torch.compile'd calls (eager when train.compile is off or compiling fails):
        # G_fn/D_fn train G/D (possibly DDP), G_fake/D_frozen are the unwrapped nets.
        self.G_fn = speed.CompileOrEager(self.G_train, "G", t.compile)
        self.D_fn = speed.CompileOrEager(self.D_train, "D", t.compile)
        self.G_fake = speed.CompileOrEager(self.G, "G (fakes)", t.compile)
        self.D_frozen = speed.CompileOrEager(self.D, "D (G step)", t.compile)
        self.opt_G = speed.adam(self.G.parameters(), t.lr_G, t.betas_G, t.adam_eps, t, self.device)
        self.opt_D = speed.adam(self.D.parameters(), t.lr_D, t.betas_D, t.adam_eps, t, self.device)
        self.sampler = BatchSampler(
            self.dataset,
            t.batch_size,
            torch.Generator().manual_seed(t.seed),
            self.dist.rank,
            self.dist.world_size,
        )
        self.gen = torch.Generator(self.device)
        self._seed_latents(0)

        self.step = 0
        self.rollbacks = 0
        self.healthy = True
        self.best: dict[str, Any] = {}
        self.detector = CollapseDetector()
        self.monitor: Monitor | None = None
        self._log_sum: torch.Tensor | None = None
        self._log_count = 0
        self._log_time = time.perf_counter()
        self._finite = torch.ones((), dtype=torch.bool, device=self.device)
        from gankit.analysis.spectrum import pick_layers

        self.sigma_layers = {
            "G": pick_layers(self.G, t.sigma_layers),
            "D": pick_layers(self.D, t.sigma_layers),
        }

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
        x, y = to_float(x.to(self.device)), y.to(self.device)
        z = torch.randn(n, self.cfg.model.dim_z, generator=gen).to(self.device)
        with self._autocast():
            data_dependent_init(self.G, lambda: self.G(z, y))
            data_dependent_init(self.D, lambda: self.D(x, y))

    def _seed_latents(self, salt: int) -> None:
        """Per-rank latent RNG; ``salt`` changes it after a rollback so the replay differs."""
        self.gen.manual_seed(self.cfg.train.seed + 1_000_003 * self.dist.rank + 7919 * salt)

    @property
    def sampling_G(self) -> nn.Module:
        """The generator to sample from: the EMA copy when ``train.ema``, else G."""
        return self.ema.module if self.ema is not None else self.G

    def _autocast(self) -> contextlib.AbstractContextManager:
        return torch.autocast(self.device.type, dtype=self.amp, enabled=self.amp is not None)

    def _no_sync(self, module: nn.Module, micro: int) -> contextlib.AbstractContextManager:
        """Skip DDP's gradient all-reduce on all but the last accumulation micro-batch."""
        last = micro == self.cfg.train.accumulate - 1
        if last or not isinstance(module, nn.parallel.DistributedDataParallel):
            return contextlib.nullcontext()
        return module.no_sync()

    def _real_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.dataset.batch(next(self.sampler))
        x = to_float(x.to(self.device, non_blocking=True))
        if self.cfg.train.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y.to(self.device)

    def _latents(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        from gankit.models import sample_z

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
        """``n_D`` D steps, one G step, one EMA update. Returns detached scalar tensors
        ``loss_D``, ``D_real``, ``D_fake`` (means over the D steps) and ``loss_G`` — no host
        sync happens here."""
        t = self.cfg.train
        n_micro = t.n_D * t.accumulate
        loss_D_sum = D_real_sum = D_fake_sum = torch.zeros((), device=self.device)

        # 1. D steps, each on fresh real images; G only produces fakes (no grad).
        self.D.requires_grad_(True)
        for d_step in range(t.n_D):
            self.opt_D.zero_grad(set_to_none=True)
            for micro in range(t.accumulate):
                x, y = self._real_batch()
                z, y_fake = self._latents(len(y))
                with self._no_sync(self.D_train, micro):
                    with self._autocast():
                        once = t.sn_once and (d_step > 0 or micro > 0)  # see training.speed
                        with torch.no_grad(), speed.frozen_power_iteration(self.G, once):
                            fake = self.G_fake(z, y_fake)
                        logits, cls = self._discriminate(
                            self.D_fn, torch.cat([x, fake.to(x.dtype)]), torch.cat([y, y_fake])
                        )
                        real_logits, fake_logits = logits.float().split([len(y), len(y_fake)])
                        loss_D = d_loss(t.loss, real_logits, fake_logits)
                        if cls is not None:
                            loss_D = loss_D + t.aux_weight * aux_classifier_loss(
                                cls, torch.cat([y, y_fake])
                            )
                        if t.loss == "wgan-gp":
                            loss_D = loss_D + gradient_penalty(
                                self.D, x, fake, y, t.gp_weight, generator=self.gen
                            )
                    (loss_D / t.accumulate).backward()
                loss_D_sum = loss_D_sum + loss_D.detach() / n_micro
                D_real_sum = D_real_sum + real_logits.detach().mean() / n_micro
                D_fake_sum = D_fake_sum + fake_logits.detach().mean() / n_micro
            self.opt_D.step()

        # 2. G step through the frozen D (unwrapped: D's DDP hooks stay out of it).
        self.D.requires_grad_(False)
        self.opt_G.zero_grad(set_to_none=True)
        loss_G_sum = torch.zeros((), device=self.device)
        for micro in range(t.accumulate):
            z, y_fake = self._latents(t.batch_size)
            with self._no_sync(self.G_train, micro):
                with self._autocast():
                    logits, cls = self._discriminate(self.D_frozen, self.G_fn(z, y_fake), y_fake)
                    loss_G = g_loss(t.loss, logits.float())
                    if cls is not None:
                        loss_G = loss_G + t.aux_weight * aux_classifier_loss(cls, y_fake)
                if t.ortho_reg > 0:
                    loss_G = loss_G + orthogonal_reg(self.G, t.ortho_reg)
                (loss_G / t.accumulate).backward()
            loss_G_sum = loss_G_sum + loss_G.detach() / t.accumulate
        self.opt_G.step()
        self.D.requires_grad_(True)

        # 3. EMA of G's weights.
        self.step += 1
        if self.ema is not None:
            self.ema.update(self.G, self.step)
        return {
            "loss_D": loss_D_sum,
            "loss_G": loss_G_sum,
            "D_real": D_real_sum,
            "D_fake": D_fake_sum,
        }

    # -- the run -----------------------------------------------------------------------------
    def fit(self, steps: int) -> None:
        """Train until G step ``steps``: iteration → log → snapshot → eval hook."""
        t, every_eval = self.cfg.train, self.cfg.eval.every
        self.monitor = Monitor(
            self.run_dir if self.writes else None, steps, self.step, quiet=self.quiet
        )
        self._log_time = time.perf_counter()
        try:
            while self.step < steps:
                losses = self.train_iteration()
                self._accumulate(losses)
                if self.step % t.log_every == 0 or self.step == steps:
                    self.log()
                if self.step % t.snapshot_every == 0 or self.step == steps:
                    self.snapshot()
                if every_eval > 0 and self.step % every_eval == 0:
                    self.evaluate()
                self.monitor.progress(self.step)
        finally:
            self.monitor.close()

    def _accumulate(self, losses: dict[str, torch.Tensor]) -> None:
        stacked = torch.stack([losses[k] for k in ("loss_D", "loss_G", "D_real", "D_fake")])
        self._finite &= torch.isfinite(stacked).all()
        self._log_sum = stacked if self._log_sum is None else self._log_sum + stacked
        self._log_count += 1

    def _check_finite(self) -> None:
        """Stop with a clear message if any loss since the last check was NaN/Inf."""
        if bool(self._finite):
            return
        ckpts = ckpt_io.list_checkpoints(self.run_dir / "checkpoints") if self.run_dir else []
        last = f"last good checkpoint: {ckpts[-1]}" if ckpts else "no checkpoint was written"
        raise TrainingDivergedError(
            f"a loss became NaN/Inf at or before step {self.step}; training stopped ({last}). "
            "Lower train.lr_G/train.lr_D or check the data."
        )

    def log(self) -> None:
        """Write one metrics record (averages since the last log) and check for collapse."""
        t = self.cfg.train
        self._check_finite()
        means = self._log_sum / self._log_count
        if self.dist.enabled:
            torch.distributed.all_reduce(means)
            means /= self.dist.world_size
        now = time.perf_counter()
        images = self._log_count * t.batch_size * t.n_D * t.accumulate * self.dist.world_size
        loss_D, loss_G, D_real, D_fake = means.tolist()
        record: dict[str, Any] = {
            "step": self.step,
            "loss_D": loss_D,
            "loss_G": loss_G,
            "D_real": D_real,
            "D_fake": D_fake,
            "lr_G": self.opt_G.param_groups[0]["lr"],
            "lr_D": self.opt_D.param_groups[0]["lr"],
            "img_per_s": images / max(now - self._log_time, 1e-9),
        }
        from gankit.analysis.spectrum import spectrum_report

        for net_name, net in (("G", self.G), ("D", self.D)):
            for layer, sigmas in spectrum_report(net, 3, self.sigma_layers[net_name]).items():
                for i, s in enumerate(sigmas):
                    record[f"sigma{i}/{net_name}/{layer}"] = s
        self._log_sum, self._log_count, self._log_time = None, 0, now
        self.monitor.write(record)
        self.monitor.progress(self.step, record)
        warnings = self.detector.check(record)
        self.healthy = not warnings
        for w in warnings:
            self.monitor.warn(self.step, f"possible collapse: {w}")
        if warnings and t.collapse_rollback:
            self.rollback()

    def rollback(self) -> None:
        """Reload the newest healthy checkpoint older than this step, with a new latent seed."""
        root = self.run_dir / "checkpoints" if self.run_dir else None
        healthy = [
            c
            for c in (ckpt_io.list_checkpoints(root) if root else [])
            if ckpt_io.checkpoint_step(c) < self.step and ckpt_io.load_state(c)["healthy"]
        ]
        if not healthy or self.rollbacks >= MAX_ROLLBACKS:
            self.monitor.warn(
                self.step,
                "collapse rollback skipped (no healthy checkpoint left "
                f"or {MAX_ROLLBACKS} rollbacks done)",
            )
            return
        from_step, rollbacks = self.step, self.rollbacks + 1
        self.load(healthy[-1])
        self.rollbacks = rollbacks
        self._seed_latents(rollbacks)
        self.monitor.warn(from_step, f"rolled back to {healthy[-1]} (rollback {rollbacks})")

    @torch.no_grad()
    def snapshot(self) -> None:
        """Fixed-z sample grid and a checkpoint (main rank), after a NaN check."""
        self._check_finite()
        state = self.state_dict()  # collective under DDP: every rank calls it
        if not self.writes:
            return
        # without EMA, sample from a copy so that G's BN statistics, SN vectors and mode stay
        G = self.sampling_G if self.ema is not None else copy.deepcopy(self.G).eval()
        if self.cfg.train.standing_stats > 0:
            gen = torch.Generator(self.device).manual_seed(self.cfg.train.seed + self.step)
            from gankit.models import sample_z

            def make_inputs() -> tuple[torch.Tensor, torch.Tensor]:
                n, m = self.cfg.train.batch_size, self.cfg.model
                z = sample_z(n, m.dim_z, generator=gen, device=self.device)
                return z, torch.randint(m.n_classes, (n,), generator=gen, device=self.device)

            standing_stats(G, self.cfg.train.standing_stats, make_inputs)
        from gankit.sampling import save_grid

        z, y = self._grid_latents()
        save_grid(
            to_uint8(G(z, y)), self.run_dir / "samples" / f"step_{self.step:08d}.png", GRID_COLS
        )
        root = self.run_dir / "checkpoints"
        weights = {**self.weights(), "G_ema": G.state_dict()}  # the grid's generator
        ckpt_io.save_checkpoint(root, ckpt_io.step_dir_name(self.step), weights, state, self.cfg)
        ckpt_io.prune_checkpoints(root, self.cfg.train.keep_last)

    def _grid_latents(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Fixed z for snapshot grids: one row of ``GRID_COLS`` per class (≤ 16 classes)."""
        m = self.cfg.model
        rows = min(m.n_classes, GRID_MAX_CLASSES)
        classes = torch.linspace(0, m.n_classes - 1, rows).round().long()
        gen = torch.Generator().manual_seed(self.cfg.train.seed)
        z = torch.randn(rows * GRID_COLS, m.dim_z, generator=gen)
        return z.to(self.device), classes.repeat_interleave(GRID_COLS).to(self.device)

    def evaluate(self) -> None:
        """Eval hook: ``gankit.evaluate.periodic_eval`` (main rank); keeps ``checkpoints/best``
        by the lowest value of the first metric whose name contains ``fid`` (``fid`` first)."""
        from gankit.evaluate import periodic_eval

        state = self.state_dict()  # collective under DDP: every rank calls it
        if not self.writes:
            return
        results = periodic_eval(self.sampling_G, self.cfg, self.step, self.device)
        self.monitor.write({"step": self.step, "eval": results})  # same row as `gankit eval`
        keys = sorted((k for k in results if "fid" in k), key=lambda k: (k != "fid", k))
        if not keys:
            return
        key, value = keys[0], float(results[keys[0]])
        if not self.best or value < self.best["value"]:
            self.best = {"key": key, "value": value, "step": self.step}
            ckpt_io.save_checkpoint(
                self.run_dir / "checkpoints",
                "best",
                self.weights(),
                {**state, "best": self.best},
                self.cfg,
            )

    # -- state -------------------------------------------------------------------------------
    def weights(self) -> dict[str, dict[str, torch.Tensor]]:
        return {
            "G": self.G.state_dict(),
            "D": self.D.state_dict(),
            "G_ema": self.sampling_G.state_dict(),
        }

    def state_dict(self) -> dict[str, Any]:
        """Everything besides the weights needed to continue exactly (``weights_only``-safe).

        Under DDP the latent RNG state of every rank is gathered (a collective call)."""
        gen_states = [self.gen.get_state()]
        if self.dist.enabled:
            gen_states = [None] * self.dist.world_size
            torch.distributed.all_gather_object(gen_states, self.gen.get_state())
        state = {
            "step": self.step,
            "opt_G": self.opt_G.state_dict(),
            "opt_D": self.opt_D.state_dict(),
            "rng_torch": torch.get_rng_state(),
            "rng_latents": gen_states,
            "sampler": self.sampler.state_dict(),
            "collapse": self.detector.state_dict(),
            "healthy": self.healthy,
            "rollbacks": self.rollbacks,
            "best": self.best,
            "config": to_dict(self.cfg),
        }
        if self.device.type == "cuda":
            state["rng_cuda"] = torch.cuda.get_rng_state(self.device)
        return state

    def load(self, ckpt: Path) -> None:
        """Restore weights and state from checkpoint directory ``ckpt``."""
        self.G.load_state_dict(ckpt_io.load_weights(ckpt, "G", self.device))
        self.D.load_state_dict(ckpt_io.load_weights(ckpt, "D", self.device))
        if self.ema is not None:
            self.ema.module.load_state_dict(ckpt_io.load_weights(ckpt, "G_ema", self.device))
        state = ckpt_io.load_state(ckpt)
        self.sampler.load_state_dict(state["sampler"])  # one-line error if world size changed
        self.step = state["step"]
        self.opt_G.load_state_dict(state["opt_G"])
        self.opt_D.load_state_dict(state["opt_D"])
        torch.set_rng_state(state["rng_torch"])
        self.gen.set_state(state["rng_latents"][self.dist.rank])
        if "rng_cuda" in state and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng_cuda"], self.device)
        self.detector.load_state_dict(state["collapse"])
        self.healthy, self.rollbacks, self.best = (
            state["healthy"],
            state["rollbacks"],
            state["best"],
        )
        self._finite.fill_(True)
        self._log_sum, self._log_count = None, 0
