"""Speed levers of the training step, each switched by a ``train.*`` flag (README "Performance").

- ``train.amp``: bf16 autocast on CUDA with fp32 master weights (the optimizers and the EMA see
  fp32 parameters; spectral norm's power iteration runs in fp32 outside autocast). fp32 on CPU,
  where bf16 matmuls are far slower than fp32.
- ``train.sdpa``: attention layers take the fused ``scaled_dot_product_attention`` path (else
  the explicit-softmax reference, which stores the ``N x M`` score matrix).
- ``train.channels_last``: weights and images in NHWC layout (oneDNN / cuDNN's fast layout), and
  compiled graphs forced to channels-last activations
  (:data:`gankit.training.compiled.FORCES_LAYOUT`).
- ``train.fused_optim``: Adam's ``fused=True`` kernel (one op per optimizer step, on CUDA and
  CPU); else the per-parameter for-loop (:func:`gankit.training.optim.adam`).
- ``train.fused_resample``: the ResNet blocks' "upsample, 3x3 conv" (G) and "3x3 conv, avg-pool"
  (D) run as one stride-2 (transposed) conv with a composed 4x4 kernel
  (:mod:`gankit.layers.resample_conv`): exact, ~2.2x fewer multiply-adds for those convs.
- ``train.checkpoint_activations`` (off by default: it costs one more forward of each block):
  the ResNet blocks of G and D keep only their inputs and recompute the rest in backward
  (:mod:`gankit.layers.recompute`), without a second SN power iteration or BN update; eager or
  compiled (the partitioner then recomputes the blocks' regions).
- ``train.activation_memory_budget`` (compiled step only; default 1): AOTAutograd's
  ``activation_memory_budget``, the fraction of the activations the min-cut partitioner may
  keep for backward, recomputing the rest (0: recompute everything it can). The backward graph
  recomputes inside itself, so within one network's graph the peak need not fall; checkpoint
  regions recompute block by block.
- ``train.cudnn_benchmark`` (CUDA only): cuDNN times the algorithms of each new convolution
  shape on its first call and keeps the fastest (``torch.backends.cudnn.benchmark``, a
  process-wide switch); otherwise its heuristics choose without timing.
- ``train.sn_once``: G's weights do not change during the D steps, so G's spectral-norm power
  iteration runs only in the first D step's fake forward; the other ``n_D - 1`` no-grad
  forwards reuse its ``u``, ``v`` (:meth:`gankit.layers.spectral_norm.SNLayers.frozen`).
  Exact for ``n_D = 1``; for ``n_D > 1`` G's ``u`` takes 2 instead of ``n_D + 1``
  power-iteration steps per G step (still at least SNGAN's one per update).
- ``train.sn_batched`` (eager only; ``"auto"`` = on CUDA, off on CPU): the spectral norms of G
  and D are computed in a few batched buckets per forward instead of layer by layer
  (:mod:`gankit.layers.spectral_norm_batched`); G's no-grad forwards of the later D steps reuse
  the first one's ``W / sigma`` (with ``sn_once`` G's weights and ``u``, ``v`` do not change).
  SN raw weights then stay in the plain layout (the stack is a view; the convs still get
  channels-last activations). On CPU (2 cores, ``cifar``) it cut the ops per iteration from
  3,488 to 1,565 but made the iteration slower (29.4–30.3 vs 26.6 s) and bigger (1.8 vs
  1.5 GiB peak RSS): the zero padding of the buckets costs arithmetic, which a CPU pays for and
  a launch-bound GPU does not notice; hence the device-dependent default.
- ``train.compile``: ``torch.compile`` of G and D (forward and, through AOTAutograd, backward):
  ``"auto"`` (compile on CUDA with the ``"default"`` mode, eager on CPU), ``true`` (=
  ``"default"``), ``false``, or a ``torch.compile`` mode name (``"reduce-overhead"``: CUDA
  graphs, ``"max-autotune"``, ``"max-autotune-no-cudagraphs"``). Each compiled call first runs
  the spectral norms' power iteration as a small compiled graph of its own, then the network
  with its SN layers frozen (:meth:`gankit.layers.spectral_norm.SNLayers.advance`): the same
  ``W / sigma``, with no buffer written inside the forward graph, so a backward that
  recomputes activations reads the ``u``, ``v`` its forward used. Each call's TorchDynamo
  cache and recompile limit are its own, with static shapes. Compiled artefacts are cached
  across runs under ``$GANKIT_CACHE/inductor`` (unless ``TORCHINDUCTOR_CACHE_DIR`` names
  another folder). If compiling a call (its forward, or its backward, which is compiled at the
  same time) fails, it warns once (one line) and runs eagerly. The machinery:
  :mod:`gankit.training.compiled`.
- ``train.cuda_graph`` (``"auto"`` = on CUDA where the run allows it): after a few eager
  iterations the D steps and the G step (Adam steps included) are captured as one CUDA graph
  and replayed, one launch per iteration; the EMA update follows outside the graph
  (:mod:`gankit.training.cuda_graph`). Not with
  DDP, lazy R1/R2, WGAN-GP or a ``train.compile`` mode that replays CUDA graphs itself
  (:func:`cuda_graph_blockers`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from gankit.config import TrainConfig
from gankit.errors import GankitError
from gankit.layers.batchnorm import can_chunk, chunked
from gankit.layers.spectral_norm_batched import sn_raw_weights
from gankit.training.compiled import (
    CUDA_GRAPH_MODES,
    CompileOrEager,
    compiled_power_iterations,
    unwrap_ddp,
)

__all__ = [
    "batched_fakes",
    "compile_mode",
    "configure_modules",
    "cuda_graph",
    "cuda_graph_blockers",
    "d_step_fakes",
    "flags",
    "sn_batched",
    "step_calls",
]


def compile_mode(t: TrainConfig, device: torch.device) -> str | None:
    """``train.compile`` → the ``torch.compile`` mode to use, or ``None`` for eager.

    ``"auto"``: ``"default"`` on CUDA, eager elsewhere; ``True``: ``"default"``; ``False``:
    eager; a name in :data:`gankit.config.COMPILE_MODES`: that mode.

    Raises:
        GankitError: ``train.activation_memory_budget`` below 1 with an eager step.
    """
    value = t.compile  # one of those (a rule of gankit.config.validate)
    if value == "auto":
        value = device.type == "cuda"
    if value is False:
        if t.activation_memory_budget < 1:
            raise GankitError(
                f"train.activation_memory_budget={t.activation_memory_budget:g} applies to a "
                f"compiled step, but train.compile={str(t.compile).lower()} runs eagerly on "
                f"{device.type}: set train.compile=true or the budget to 1"
            )
        return None
    return "default" if value is True else value


def sn_batched(t: TrainConfig, device: torch.device) -> bool:
    """Whether the eager step batches spectral norms (``train.sn_batched``: ``"auto"`` = on
    CUDA; not together with ``train.checkpoint_activations``, whose recomputation needs each
    layer's own SN graph)."""
    on = device.type == "cuda" if t.sn_batched == "auto" else bool(t.sn_batched)
    return on and not t.checkpoint_activations


def cuda_graph_blockers(t: TrainConfig, device: torch.device, distributed: bool) -> list[str]:
    """Why the iteration cannot be one CUDA graph here (empty: it can)."""
    blockers = []
    if device.type != "cuda":
        blockers.append(f"needs a CUDA device, not {device.type}")
    if distributed:
        blockers.append("not under DDP")
    if t.r1_gamma > 0 or t.r2_gamma > 0:
        blockers.append("lazy R1/R2 (train.r1_gamma/r2_gamma) change the iteration by step")
    if t.loss == "wgan-gp":
        blockers.append("not with train.loss=wgan-gp")
    mode = compile_mode(t, device)
    if mode in CUDA_GRAPH_MODES:
        blockers.append(f"train.compile={mode} replays CUDA graphs itself")
    return blockers


def cuda_graph(t: TrainConfig, device: torch.device, distributed: bool) -> bool:
    """Whether the iteration runs as one CUDA graph (``train.cuda_graph``; ``"auto"``: where
    :func:`cuda_graph_blockers` finds nothing).

    Raises:
        GankitError: ``train.cuda_graph=true`` where it cannot be used.
    """
    blockers = cuda_graph_blockers(t, device, distributed)
    if t.cuda_graph == "auto":
        return not blockers
    if t.cuda_graph and blockers:
        raise GankitError(f"train.cuda_graph=true: {'; '.join(blockers)}")
    return bool(t.cuda_graph)


def configure_modules(modules: Iterable[nn.Module], t: TrainConfig, device: torch.device) -> None:
    """Apply ``train.channels_last``, ``train.sdpa``, ``train.fused_resample``,
    ``train.checkpoint_activations`` and ``train.sn_batched`` (SN raw weights in the plain
    layout, see the module docstring) to G and D in place."""
    for module in modules:
        if t.channels_last:
            module.to(memory_format=torch.channels_last)
            if sn_batched(t, device):
                for w in sn_raw_weights(module):
                    w.data = w.data.contiguous()
        for m in module.modules():
            if hasattr(m, "fused") and isinstance(m.fused, bool):  # attention layers
                m.fused = t.sdpa
            if hasattr(m, "fused_resample"):  # ResNet blocks
                m.fused_resample = t.fused_resample
                m.checkpoint_activations = t.checkpoint_activations


def configure_backends(t: TrainConfig, device: torch.device) -> None:
    """Apply ``train.cudnn_benchmark`` on CUDA (process-wide; nothing on other devices)."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = t.cudnn_benchmark


def step_calls(
    G: nn.Module, D: nn.Module, t: TrainConfig, device: torch.device
) -> tuple[CompileOrEager, CompileOrEager, CompileOrEager, CompileOrEager]:
    """The four calls of the training step: ``(G_fn, D_fn, G_fake, D_frozen)`` = G and D
    trained (possibly DDP-wrapped, as passed), G producing the D steps' fakes (no grad; reuses
    ``W / sigma`` across frozen D steps) and D in the G step (unwrapped: D's DDP hooks stay
    out of it). Compiled, the four share one power-iteration graph per network."""
    mode, batch = compile_mode(t, device), sn_batched(t, device)
    power = compiled_power_iterations() if mode is not None else None
    kw = {
        "memory_budget": t.activation_memory_budget,
        "power_iterations": power,
        "channels_last": t.channels_last,
    }
    G_net, D_net = unwrap_ddp(G), unwrap_ddp(D)
    return (
        CompileOrEager(G, "G", mode, batch, **kw),
        CompileOrEager(D, "D", mode, batch, **kw),
        CompileOrEager(G_net, "G (fakes)", mode, batch, reuse_frozen=True, **kw),
        CompileOrEager(D_net, "D (G step)", mode, batch, **kw),
    )


def batched_fakes(t: TrainConfig, G: nn.Module) -> bool:
    """Whether the D steps' fakes come from one forward of G (``train.batched_fakes``): needs
    ``sn_once`` (one power iteration for all of them) and chunkable batch norms in G
    (:func:`gankit.layers.batchnorm.can_chunk`; not under DDP's cross-replica BN)."""
    return t.batched_fakes and t.sn_once and can_chunk(G)


@torch.no_grad()
def d_step_fakes(
    G_call: CompileOrEager,
    G: nn.Module,
    latents: list[tuple[torch.Tensor, torch.Tensor]],
    t: TrainConfig,
) -> list[torch.Tensor]:
    """The fake images of an iteration's D-step micro-batches, one per ``(z, y)`` of
    ``latents``, without grad.

    With :func:`batched_fakes`: one call of G on all latents stacked, each micro-batch's rows
    normalised with their own batch statistics (:func:`gankit.layers.batchnorm.chunked`), which
    equals separate calls. Otherwise one call per micro-batch, G's power iteration only in the
    first with ``sn_once``.
    """
    n = len(latents)
    if n > 1 and batched_fakes(t, G):
        z, y = (torch.cat(parts) for parts in zip(*latents))
        with chunked(G, n):
            return list(G_call(z, y).chunk(n))
    fakes = []
    for i, (z, y) in enumerate(latents):
        with G_call.layers.frozen(t.sn_once and i > 0):
            fakes.append(G_call(z, y))
    return fakes


def flags(
    t: TrainConfig,
    device: torch.device,
    amp: torch.dtype | None,
    graphed: bool = False,
    G: nn.Module | None = None,
) -> dict[str, Any]:
    """The levers in force, as reported by ``gankit bench`` (``flags`` key); ``graphed``:
    the iteration was replayed as a CUDA graph; ``G``: the trained generator (whether its
    batch norms can batch the fakes; ``batched_fakes`` is ``None`` without it)."""
    mode = compile_mode(t, device)
    return {
        "amp": "bf16" if amp == torch.bfloat16 else "fp32",
        "sdpa": t.sdpa,
        "channels_last": t.channels_last,
        "optimizer": "fused" if t.fused_optim else "for-loop",
        "sn_once": t.sn_once,
        "sn_batched": sn_batched(t, device) and mode is None,
        "batched_fakes": batched_fakes(t, G) if G is not None else None,
        "fused_resample": t.fused_resample,
        "checkpoint_activations": t.checkpoint_activations,
        "activation_memory_budget": t.activation_memory_budget if mode else None,
        "cudnn_benchmark": t.cudnn_benchmark and device.type == "cuda",
        "compile": mode or False,
        "cuda_graph": graphed,
        "num_threads": torch.get_num_threads(),
    }
