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

import contextlib
import functools
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.distributed

from gankit import checkpoint as ckpt_io
from gankit.config import MAX_STEPS, to_dict

__all__ = ["RESTORED_KEYS", "capture", "check_state", "restore"]

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


def _int(value: Any, lo: int, hi: float = math.inf) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi


def _rng(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and value.dtype == torch.uint8 and value.dim() == 1


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _optimizer(value: Any) -> bool:
    groups = value.get("param_groups") if isinstance(value, dict) else None
    return (
        isinstance(value.get("state") if isinstance(value, dict) else None, dict)
        and isinstance(groups, list)
        and all(isinstance(g, dict) and isinstance(g.get("params"), list) for g in groups)
    )


def _sampler(value: Any) -> bool:
    if not isinstance(value, dict) or not _rng(value.get("generator_state")):
        return False
    n, batch, world = (value.get(k) for k in ("n", "batch_size", "world_size"))
    if not (_int(n, 1) and _int(batch, 1) and _int(world, 1)):
        return False
    return _int(value.get("epoch"), 0) and _int(value.get("position"), 0, n // (batch * world))


def _collapse(value: Any) -> bool:
    return isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, list) and all(map(_number, v))
        for k, v in value.items()
    )


def _lecam(value: Any) -> bool:
    return isinstance(value, dict) and all(
        isinstance(value.get(k), torch.Tensor) and value[k].numel() == 1
        for k in ("real", "fake", "count")
    )


def _best(value: Any) -> bool:
    return isinstance(value, dict) and (
        not value
        or isinstance(value.get("key"), str)
        and _number(value.get("value"))
        and _int(value.get("step"), 0)
    )


_ENTRIES = {
    "opt_G": (_optimizer, "an optimizer state dict"),
    "opt_D": (_optimizer, "an optimizer state dict"),
    "rng_torch": (_rng, "a uint8 RNG state"),
    "rng_latents": (
        lambda v: isinstance(v, list) and len(v) > 0 and all(map(_rng, v)),
        "a list of uint8 RNG states",
    ),
    "rng_cuda": (_rng, "a uint8 RNG state"),
    "sampler": (_sampler, "the data order: epoch, position within it, generator_state, n, ..."),
    "collapse": (_collapse, "lists of numbers by signal"),
    "lecam": (_lecam, "the LeCam anchors real, fake, count"),
    "healthy": (lambda v: isinstance(v, bool), "true or false"),
    "rollbacks": (lambda v: _int(v, 0), "a count"),
    "best": (_best, "{} or the best eval's key, value and step"),
}
"""The entries of ``state.pt`` besides ``step`` and ``config``: a check and what it expects."""


def check_state(state: dict[str, Any], ckpt: Path) -> None:
    """Check the entries of ``ckpt``'s ``state.pt`` (:data:`RESTORED_KEYS` present, each of the
    expected type, ``step`` that of the folder's name) before anything is restored from them.

    Raises:
        CheckpointReadError: one line naming ``state.pt`` and the first bad entry.
    """
    path = Path(ckpt) / ckpt_io.STATE_FILE
    bad = functools.partial(ckpt_io.damaged, path)
    missing = [k for k in RESTORED_KEYS if k not in state]
    if missing or not isinstance(state["config"], dict):
        raise bad(f"no {', '.join(repr(k) for k in missing or ['config'])}")
    if not isinstance(state["config"].get("model"), dict):
        raise bad("no 'config.model'")
    step = ckpt_io.checkpoint_step(Path(ckpt))
    if not _int(state["step"], 0, MAX_STEPS) or step >= 0 and state["step"] != step:
        where = f" {step}, as the folder's name says" if step >= 0 else " in 0..10**9"
        raise bad(f"'step' is {state['step']!r}; expected{where}")
    for key, (ok, expected) in _ENTRIES.items():
        if key in state and not ok(state[key]):
            raise bad(f"'{key}' is not {expected}")


@contextlib.contextmanager
def _entry(ckpt: Path, key: str) -> Iterator[None]:
    """Restoring entry ``key`` of ``state.pt``: what it does not fit is a one-line
    :class:`~gankit.checkpoint.CheckpointReadError` (e.g. moments of another model)."""
    try:
        yield
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, RuntimeError) as err:
        why = f"'{key}' does not fit this run: {ckpt_io.short_cause(err)}"
        raise ckpt_io.damaged(Path(ckpt) / ckpt_io.STATE_FILE, why) from err


def _check_moments(opt: torch.optim.Optimizer, saved: dict[str, Any], ckpt: Path, key: str) -> None:
    """Adam moments of ``saved`` with the shapes of ``opt``'s parameters (loading moments of
    other shapes is not checked by torch, and its fused Adam then reads out of bounds)."""
    params = [p for g in opt.param_groups for p in g["params"]]
    saved_ids = [i for g in saved["param_groups"] for i in g["params"]]
    with _entry(ckpt, key):
        if len(saved_ids) != len(params):
            raise ValueError(f"{len(saved_ids)} parameters saved, the model has {len(params)}")
        for i, p in zip(saved_ids, params):
            moments = saved["state"].get(i, {})
            for name, t in moments.items():
                if name != "step" and isinstance(t, torch.Tensor) and t.shape != p.shape:
                    raise ValueError(
                        f"{name} of parameter {i} is {tuple(t.shape)}, the parameter "
                        f"{tuple(p.shape)}"
                    )


def restore(trainer: Any, ckpt: Path) -> None:
    """Load weights and state of checkpoint directory ``ckpt`` into ``trainer`` (weights of
    another model are a one-line error naming the file: :func:`gankit.checkpoint.load_into`;
    a ``state.pt`` whose entries are damaged or do not fit the run: :func:`check_state`)."""
    state = ckpt_io.load_state(ckpt)
    check_state(state, ckpt)
    _check_moments(trainer.opt_G, state["opt_G"], ckpt, "opt_G")
    _check_moments(trainer.opt_D, state["opt_D"], ckpt, "opt_D")
    built_from = trainer.run.config_file if trainer.run is not None else None
    ckpt_io.load_into(trainer.G, ckpt, "G", trainer.device, built_from)
    ckpt_io.load_into(trainer.D, ckpt, "D", trainer.device, built_from)
    if trainer.ema is not None:
        ckpt_io.load_into(trainer.ema.module, ckpt, "G_ema", trainer.device, built_from)
    with _entry(ckpt, "sampler"):  # a GankitError if the data or world size changed
        trainer.batches.load_state_dict(state["sampler"])
    trainer.step = state["step"]
    with _entry(ckpt, "opt_G"):
        trainer.opt_G.load_state_dict(state["opt_G"])
    with _entry(ckpt, "opt_D"):
        trainer.opt_D.load_state_dict(state["opt_D"])
    with _entry(ckpt, "rng_torch"):
        torch.set_rng_state(state["rng_torch"])
    with _entry(ckpt, "rng_latents"):
        trainer.gen.set_state(state["rng_latents"][trainer.dist.rank])
    if "rng_cuda" in state and trainer.device.type == "cuda":
        with _entry(ckpt, "rng_cuda"):
            torch.cuda.set_rng_state(state["rng_cuda"], trainer.device)
    trainer.detector.load_state_dict(state["collapse"])
    if "lecam" in state:  # checkpoints written before LeCam existed never used it
        trainer.lecam.load_state_dict(state["lecam"])
    trainer.healthy, trainer.rollbacks, trainer.best = (
        state["healthy"],
        state["rollbacks"],
        state["best"],
    )
