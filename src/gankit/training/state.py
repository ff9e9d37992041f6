"""What a checkpoint's ``state.pt`` holds besides the weights, and restoring it into a trainer.

``state.pt`` (loaded with ``torch.load(weights_only=True)``): ``step``, ``opt_G``, ``opt_D``
(Adam moments), ``rng_torch``, ``rng_latents`` (the latent generator of every rank),
``rng_cuda`` (on CUDA), ``sampler`` (data order and position), ``collapse`` (the detector's
history), ``lecam`` (the LeCam regulariser's EMA anchors), ``healthy``, ``rollbacks``, ``best``
and ``config``. ``healthy`` is also written to the checkpoint's small ``meta.json``
(:func:`gankit.checkpoint.load_meta`), so that a rollback can pick a checkpoint without loading
optimizer moments.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.distributed

from gankit import checkpoint as ckpt_io
from gankit.config import to_dict

__all__ = ["RESTORED_KEYS", "capture", "restore"]

RESTORED_KEYS = (
    *("step", "opt_G", "opt_D", "rng_torch", "rng_latents", "sampler", "collapse"),
    *("healthy", "rollbacks", "best", "config"),
)
"""The keys of ``state.pt`` that :func:`restore` (and resume's config check) cannot do without."""


def capture(trainer: Any) -> dict[str, Any]:
    """Everything of a :class:`~gankit.training.loop.Trainer` besides the weights needed to
    continue exactly (``weights_only``-safe).

    Under DDP the latent RNG state of every rank is gathered (a collective call)."""
    gen_states = [trainer.gen.get_state()]
    if trainer.dist.enabled:
        gen_states = [None] * trainer.dist.world_size
        torch.distributed.all_gather_object(gen_states, trainer.gen.get_state())
    state = {
        "step": trainer.step,
        "opt_G": trainer.opt_G.state_dict(),
        "opt_D": trainer.opt_D.state_dict(),
        "rng_torch": torch.get_rng_state(),
        "rng_latents": gen_states,
        "sampler": trainer.batches.state_dict(),  # batches handed out, not prefetched
        "collapse": trainer.detector.state_dict(),
        "lecam": trainer.lecam.state_dict(),
        "healthy": trainer.healthy,
        "rollbacks": trainer.rollbacks,
        "best": trainer.best,
        "config": to_dict(trainer.cfg),
    }
    if trainer.device.type == "cuda":
        state["rng_cuda"] = torch.cuda.get_rng_state(trainer.device)
    return state


def restore(trainer: Any, ckpt: Path) -> None:
    """Load weights and state of checkpoint directory ``ckpt`` into ``trainer`` (weights of
    another model are a one-line error naming the file: :func:`gankit.checkpoint.load_into`)."""
    ckpt_io.load_into(trainer.G, ckpt, "G", trainer.device)
    ckpt_io.load_into(trainer.D, ckpt, "D", trainer.device)
    if trainer.ema is not None:
        ckpt_io.load_into(trainer.ema.module, ckpt, "G_ema", trainer.device)
    state = ckpt_io.load_state(ckpt)
    trainer.batches.load_state_dict(state["sampler"])  # one-line error if world size changed
    trainer.step = state["step"]
    trainer.opt_G.load_state_dict(state["opt_G"])
    trainer.opt_D.load_state_dict(state["opt_D"])
    torch.set_rng_state(state["rng_torch"])
    trainer.gen.set_state(state["rng_latents"][trainer.dist.rank])
    if "rng_cuda" in state and trainer.device.type == "cuda":
        torch.cuda.set_rng_state(state["rng_cuda"], trainer.device)
    trainer.detector.load_state_dict(state["collapse"])
    if "lecam" in state:  # checkpoints written before LeCam existed never used it
        trainer.lecam.load_state_dict(state["lecam"])
    trainer.healthy, trainer.rollbacks, trainer.best = (
        state["healthy"],
        state["rollbacks"],
        state["best"],
    )
