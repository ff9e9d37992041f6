"""The run behind ``gankit serve``: checkpoints, EMA generators, class names, config, curves.

One :class:`RunExplorer` is shared by every request. Generators are loaded on first use per
checkpoint (EMA weights, eval mode, no gradients; the two most recent stay in memory). Every
forward pass holds one lock: class interpolation temporarily patches G's class-dependent
modules (:func:`gankit.generation.interpolate_images`), so no other request may run G meanwhile;
plain sampling never changes G (eval-mode batch norm and spectral norm read their buffers).

Checkpoint names in a request are looked up in the run's own listing
(``checkpoints/step_*`` and ``checkpoints/best``) and never joined to a path.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gankit.checkpoint import checkpoint_step, is_complete
from gankit.config import Config, to_dict
from gankit.data import load_dataset
from gankit.errors import GankitError, check_int
from gankit.generation import interpolate_images, sample
from gankit.models import sample_z
from gankit.run import BEST, RunDir, check_same_model, load_generator
from gankit.serve.curves import training_curves
from gankit.serve.params import (
    MAX_API_SEED,
    MAX_N,
    MAX_STEPS,
    GenerateParams,
    InterpolateParams,
    RequestError,
)

log = logging.getLogger(__name__)


def wait_for_first_checkpoint(
    run_dir: str | Path, poll_s: float = 1.0, say: Callable[[str], Any] = print
) -> None:
    """Return once ``run_dir`` has a complete ``step_*`` checkpoint or nobody is writing it.

    A run whose training has started but not yet written its first checkpoint is waited for
    (one line through ``say``, then a look every ``poll_s`` seconds), so the explorer can be
    started beside ``gankit train``. Anything else returns at once: :class:`RunExplorer` then
    serves the run or says what is wrong with it.

    Raises:
        GankitError: the training process waited for ended without writing a checkpoint.
    """
    run = RunDir(run_dir)
    waited_for = None
    while not run.list_checkpoints() and (pid := run.writer_pid()) is not None:
        if waited_for is None:
            say(
                f"gankit serve: {run.path} has no checkpoint yet; waiting for the training "
                f"process (pid {pid}) to write one; Ctrl+C stops"
            )
            waited_for = pid
        time.sleep(poll_s)
    if waited_for is not None and not run.list_checkpoints():
        raise GankitError(
            f"{run.path}: the training process (pid {waited_for}) ended without writing a "
            "checkpoint; nothing to serve"
        )


class RunExplorer:
    """Read-only view of run directory ``run_dir`` for the web app.

    Args:
        run_dir: a run directory with ``checkpoints/step_*/`` (and ``metrics.jsonl``).
        device: ``auto``, ``cpu`` or ``cuda``: where the generators run.
        keep: how many loaded generators stay in memory (at least 1: the one in use).

    Raises:
        GankitError: ``run_dir`` is missing or holds no complete checkpoint; ``keep`` < 1.
    """

    def __init__(self, run_dir: str | Path, device: str = "auto", keep: int = 2):
        self.run = RunDir(run_dir)
        self.run_dir = self.run.path
        if not self.run_dir.is_dir():
            what = (
                "not a directory (expected a run directory)"
                if self.run_dir.exists()
                else "no such run directory (expected a run directory; a `gankit train` just "
                "started creates it within seconds)"
            )
            raise GankitError(f"{run_dir}: {what}")
        if not any(checkpoint_step(p) >= 0 for p in self.checkpoints().values()):
            hint = "; this is a checkpoint folder: pass its run directory"
            raise GankitError(
                f"{run_dir}: expected a run directory with complete checkpoints/step_*/ "
                f"(written by gankit train); found none{hint if is_complete(self.run_dir) else ''}"
            )
        self.device = device
        self.keep = check_int("keep", keep, 1, None, "a positive number of generators")
        self._lock = threading.Lock()
        self._generators: OrderedDict[tuple[str, float], nn.Module] = OrderedDict()
        self.checkpoint, G = self.generator(None)  # load now: a bad run fails at start-up
        self.model_config: Config = G.config
        self.n_classes, self.dim_z = int(G.n_classes), int(G.dim_z)
        self.device_name = str(next(G.parameters()).device)
        self.class_names = [str(i) for i in range(self.n_classes)]
        self.class_names_pending = True

    # --- checkpoints and generators -------------------------------------------------------

    def checkpoints(self) -> dict[str, Path]:
        """Complete checkpoints by name, oldest step first, ``best`` last (if present)."""
        found = {p.name: p for p in self.run.list_checkpoints()}
        best = self.run.best_checkpoint()
        if best is not None:
            found[BEST] = best
        return found

    def latest(self) -> str:
        """Name of the newest ``step_*`` checkpoint.

        Raises:
            RequestError: 503 when the run has none at the moment (removed since start-up,
                e.g. a new run started in the same directory).
        """
        steps = [name for name, p in self.checkpoints().items() if checkpoint_step(p) >= 0]
        if not steps:
            raise RequestError(
                "checkpoint",
                f"{self.run_dir} has no complete checkpoint at the moment; try again later",
                status=503,
            )
        return steps[-1]

    def generator(self, name: str | None) -> tuple[str, nn.Module]:
        """``(name, EMA G)`` of checkpoint ``name`` (None: the latest), loaded once and cached.

        Raises:
            RequestError: 404 when ``name`` is not in :meth:`checkpoints`; 503 (:meth:`latest`)
                while the run has no checkpoint at all.
        """
        listing = self.checkpoints()
        if name is None or not listing:  # latest(): a 503 while the run has no checkpoint
            name = self.latest()
        if name not in listing:
            raise RequestError(
                "checkpoint",
                f"unknown checkpoint {name[:80]!r}; this run has {', '.join(listing)}",
                status=404,
            )
        path = listing[name]
        with self._lock:
            try:  # the key changes when "best" is rewritten
                key = (name, (path / "G_ema.safetensors").stat().st_mtime)
                if key not in self._generators:
                    G = load_generator(path, self.device)
                    check_same_model(self.run, path, G.config)
                    self._generators[key] = G
            except OSError as err:  # pruned by a training run since the listing
                raise RequestError("checkpoint", f"{name} is gone ({err})", status=404) from None
            while len(self._generators) > self.keep:
                self._generators.popitem(last=False)
            self._generators.move_to_end(key)
            return name, self._generators[key]

    # --- run information ------------------------------------------------------------------

    def load_class_names(self) -> None:
        """Read the class names of the run's training data (``ImageDataset.class_names``);
        on failure or a class-count mismatch keep the indices ``"0".."n-1"``. Meant for a
        background thread: an image folder without ``data.cache`` takes a while to load."""
        cfg = self.model_config
        try:
            data = load_dataset(cfg.data, cfg.model.resolution, cfg.model.channels)
            if data.n_classes == self.n_classes:
                self.class_names = list(data.class_names)
            else:
                log.warning(
                    "class names: the data has %d classes, the model %d; showing indices",
                    data.n_classes,
                    self.n_classes,
                )
        except Exception as err:  # any failure only costs the names
            log.warning("class names unavailable (%s); showing class indices", err)
        finally:
            self.class_names_pending = False

    def info(self) -> dict[str, Any]:
        """Run name, checkpoints, model shape, class names and the API's bounds (``limits``: grid
        size, strip frames, seed), which the page reads."""
        listing = self.checkpoints()
        steps = {name: checkpoint_step(p) for name, p in listing.items()}
        m = self.model_config.model
        return {
            "run": self.run_dir.resolve().name,
            "checkpoints": [
                {"name": name, "step": step if step >= 0 else None} for name, step in steps.items()
            ],
            "latest": self.latest(),
            "n_classes": self.n_classes,
            "class_names": self.class_names,
            "class_names_pending": self.class_names_pending,
            "resolution": m.resolution,
            "channels": m.channels,
            "dim_z": self.dim_z,
            "arch": m.arch,
            "device": self.device_name,
            "limits": {"n": MAX_N, "steps": MAX_STEPS, "seed": MAX_API_SEED},
        }

    def config(self) -> dict[str, Any]:
        """The run's ``config.toml`` (the latest checkpoint's if the run has none; one that is
        there but does not load, e.g. a directory, is an error)."""
        cfg = self.run.load_config() if self.run.config_file.exists() else self.model_config
        return to_dict(cfg)

    def curves(self) -> dict[str, Any]:
        """:func:`~gankit.serve.curves.training_curves` of ``metrics.jsonl`` (empty without;
        one that is there but not a regular file is an error)."""
        has_metrics = self.run.metrics_file.exists()
        return training_curves(self.run.read_metrics() if has_metrics else [])

    # --- generation -----------------------------------------------------------------------

    def generate(self, p: GenerateParams) -> tuple[torch.Tensor, torch.Tensor, str]:
        """``(uint8 (n, C, H, W), labels (n,), checkpoint name)`` of
        :func:`gankit.generation.sample` (the images of ``gankit sample``)."""
        name, G = self.generator(p.checkpoint)
        with self._lock:
            images, labels = sample(G, p.n, p.classes, p.truncation, p.seed)
        return images, labels, name

    def interpolate(self, p: InterpolateParams) -> tuple[torch.Tensor, torch.Tensor, str]:
        """``(uint8 (steps, C, H, W), t (steps,), checkpoint name)``: frame ``i`` is
        ``G(lerp(z_a, z_b, t), class mix of classes[0] → classes[1])`` with ``t = i/(steps-1)``
        and ``z_a``, ``z_b`` the first latent drawn from ``seeds[0]``, ``seeds[1]``."""
        name, G = self.generator(p.checkpoint)
        dev = next(G.parameters()).device
        ends = [
            sample_z(1, self.dim_z, p.truncation, torch.Generator(dev).manual_seed(s), dev)[0]
            for s in p.seeds
        ]
        with self._lock:
            frames = interpolate_images(G, ends[0], ends[1], *p.classes, p.steps).cpu()
        return frames, torch.linspace(0, 1, p.steps), name
